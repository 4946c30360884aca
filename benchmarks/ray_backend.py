"""The Ray backend against the local process pool, in one run on this machine.

1. Scheduling overhead: the wall time per trivial Ray task (submitted in batches
   and awaited), on the local instance the backend starts.
2. Rendering: ``imgbalance.render`` of one SMOTE plan of a generated RGB tree with
   ``backend="local"`` and ``backend="ray"`` (same plan, fresh output folder each
   time, ``--repeats`` alternating runs, medians), and a check that both trees are
   byte-identical.

Usage::

    python benchmarks/ray_backend.py --images 1000 --out benchmarks/results/ray_backend.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import imgbalance
from balance_throughput import make_tree


def digest(root: Path) -> dict[str, str]:
    skip = {"summary.json", "balance_summary.txt"}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import ray

    from imgbalance._cluster import ensure_ray

    t0 = time.perf_counter()
    ensure_ray(None)
    start_s = time.perf_counter() - t0

    @ray.remote(num_cpus=1)
    def noop(i: int) -> int:
        return i

    ray.get([noop.remote(i) for i in range(200)])  # warm the workers
    t0 = time.perf_counter()
    ray.get([noop.remote(i) for i in range(args.tasks)])
    per_task_ms = (time.perf_counter() - t0) / args.tasks * 1000
    print(f"ray start {start_s:.1f} s; {per_task_ms:.2f} ms per trivial task", flush=True)

    with tempfile.TemporaryDirectory(prefix="imgbalance-ray-") as tmp:
        src = Path(tmp) / "src"
        make_tree(src, args.images)
        os.environ["IMGBALANCE_CACHE_DIR"] = str(Path(tmp) / "cache")
        planned = imgbalance.plan(src, "smote", random_state=0)
        n_new = len(planned.plan.recipes)
        times: dict[str, list[float]] = {"local": [], "ray": []}
        digests = {}
        for _ in range(args.repeats):
            for backend in ("local", "ray"):
                out = Path(tmp) / f"out-{backend}"
                shutil.rmtree(out, ignore_errors=True)
                t0 = time.perf_counter()
                imgbalance.render(planned, out, plots=False, backend=backend)
                times[backend].append(time.perf_counter() - t0)
                digests[backend] = digest(out)
        identical = digests["local"] == digests["ray"]
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "machine": {"cpus": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d"),
        "input_images": args.images,
        "new_images": n_new,
        "ray_start_s": round(start_s, 2),
        "ms_per_trivial_task": round(per_task_ms, 3),
        "render_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "render_median_s": {k: round(v, 3) for k, v in med.items()},
        "images_per_s": {k: round(n_new / v, 1) for k, v in med.items()},
        "ray_over_local_throughput": round(med["local"] / med["ray"], 3),
        "byte_identical": identical,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
