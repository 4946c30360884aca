"""Time and memory of ``imgbalance balance --method smote`` against the number of images.

One long-tailed tree of ``--max`` RGB JPEGs (224 to 256 px) is generated once;
each size N is a proportional subset of it (hard links). Each run is one
process with a cold feature cache; memory is the peak summed PSS of the
process tree, CPU the kernel's account of it. ``--baseline-src`` runs the code
before a change just before the current code at each size. The tutorial approach
(imbalanced-learn SMOTE on flattened 224x224 arrays) runs up to ``--tutorial-max``
images, since its memory grows with N x pixels. Writes JSON and a PNG of both curves.

Usage::

    python benchmarks/balance_scaling.py --sizes 1000 2000 5000 10000 20000 \\
        --out benchmarks/results/balance_scaling.json
    # add one size to the committed results (the generated tree is that size)
    python benchmarks/balance_scaling.py --sizes 100000 --tutorial-max 0 --append \\
        --out benchmarks/results/balance_scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import imgbalance
from balance_throughput import BALANCE, TUTORIAL, make_tree

from _harness import run_measured

BEFORE = "imgbalance smote, code before"


def subset(src: Path, dst: Path, fraction: float) -> int:
    n = 0
    for folder in sorted(p for p in src.iterdir() if p.is_dir()):
        files = sorted(folder.iterdir())
        k = max(8, round(len(files) * fraction))
        (dst / folder.name).mkdir(parents=True)
        for f in files[:k]:
            os.link(f, dst / folder.name / f.name)
            n += 1
    return n


def plot(results: dict[str, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, rows in results.items():
        n = [r["n_images"] for r in rows]
        ax1.plot(n, [r["wall_s"] for r in rows], "o-", label=name)
        ax2.plot(n, [r["peak_rss_mib"] for r in rows], "o-", label=name)
    for ax, title in ((ax1, "wall time (s)"), (ax2, "peak memory, summed PSS (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("input images (long-tailed, 224-256 px RGB JPEG)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("balance to the majority count with SMOTE: scaling (2 CPUs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 10000, 20000])
    ap.add_argument("--tutorial-max", type=int, default=4000)
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--baseline-src",
        type=Path,
        help="also run imgbalance at each size with this src/ folder first on the path (the "
        "code before a change), as 'imgbalance smote, code before', just before the current one",
    )
    ap.add_argument(
        "--append",
        action="store_true",
        help="keep the other sizes already in --out (each size is still one fresh run)",
    )
    args = ap.parse_args()
    results: dict[str, list[dict[str, float]]] = {"imgbalance smote": [], "tutorial SMOTE": []}
    if args.baseline_src:
        results[BEFORE] = []
    dates: list[str] = []
    if args.append and args.out and args.out.exists():
        old = json.loads(args.out.read_text())
        dates = old.get("dates", [old.get("date")])
        for name, rows in old["results"].items():
            results[name] = [  # a size's subset can round to N +- 1% images
                r for r in rows if not any(abs(r["n_images"] - n) <= 0.01 * n for n in args.sizes)
            ]
    with tempfile.TemporaryDirectory(prefix="imgbalance-scale-") as tmp:
        full = Path(tmp) / "full"
        t0 = time.perf_counter()
        make_tree(full, max(args.sizes))
        print(f"generated {max(args.sizes)} images in {time.perf_counter() - t0:.0f} s", flush=True)
        for size in sorted(args.sizes):
            src = Path(tmp) / f"n{size}"
            n = subset(full, src, size / max(args.sizes))
            todo = [("imgbalance smote", BALANCE), ("tutorial SMOTE", TUTORIAL)]
            if args.baseline_src:
                todo.insert(0, (BEFORE, BALANCE))
            for name, template in todo:
                if name == "tutorial SMOTE" and n > args.tutorial_max:
                    continue
                out = Path(tmp) / f"out-{size}"
                code = template.replace("{method!r}", "'smote'").format(src=str(src), out=str(out))
                cache = Path(tmp) / f"c{size}-{len(results[name])}"  # cold for every run
                env = {"IMGBALANCE_CACHE_DIR": str(cache)}
                if name == BEFORE:
                    env["PYTHONPATH"] = str(args.baseline_src.resolve())
                r = run_measured(code, env=env)
                shutil.rmtree(out, ignore_errors=True)  # 100,000 images write ~4 GB
                shutil.rmtree(cache, ignore_errors=True)
                r["n_images"] = n
                r["original_features_mib"] = round(n * 16 * 16 * 3 * 4 / 2**20, 1)  # default spec
                results[name] = sorted([*results[name], r], key=lambda r: r["n_images"])
                print(f"{name} N={n}: {json.dumps(r)}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                    "imgbalance": imgbalance.__version__,
                    "date": time.strftime("%Y-%m-%d"),
                    "dates": sorted({*dates, time.strftime("%Y-%m-%d")} - {None}),
                    "results": results,
                },
                indent=2,
            )
            + "\n"
        )
        plot(results, args.out.with_suffix(".png"))
        print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
