"""Peak memory and speed of training on a set larger than the in-memory budget.

Generates N real JPEGs (random noise with a class colour, 224 px by default) as a
pre-split tree outside the repository, then trains ``small-cnn`` at 224 px for a fixed
number of optimiser steps with ``data_mode=stream`` in a child process. The peer is the
decoded size the in-memory path would have to hold (it is refused on a machine that
cannot hold it: that is the point of streaming). Peak memory is the kernel's own
high-water mark of the training process (``ru_maxrss`` of the child), so nothing
samples the measured job.

    python benchmarks/stream_memory.py --images 50000 --steps 60 --work /tmp/stream50k
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (40, 200, 200)]


def split_sizes(n: int) -> dict[str, int]:
    """Images per split of the generated tree: ``n`` to train on, 1% each to score."""
    return {"train": n, "val": max(50, n // 100), "test": max(50, n // 100)}


def make_tree(root: Path, n: int, size: int, seed: int = 0) -> None:
    if (root / "done").is_file():
        return
    rng = np.random.default_rng(seed)
    for split, total in split_sizes(n).items():
        for k in range(total):
            c = k % len(COLOURS)
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            noise = rng.integers(-60, 60, (size, size, 3))
            arr = np.clip(np.array(COLOURS[c]) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(folder / f"{k:06d}.jpg", quality=90)
    (root / "done").write_text("ok")


CHILD = """
import json, resource, sys, time
from imgbalance.experiments import RunConfig, run_training
cfg = json.loads(sys.argv[1])
t = time.perf_counter()
s = run_training(RunConfig.from_dict(cfg), sys.argv[2])
r = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": time.perf_counter() - t, "mode": s["data"]["mode"],
                  "why": s["data"]["why"], "train_s": s["training_time_s"],
                  "peak_kib": r.ru_maxrss, "cpu_s": r.ru_utime + r.ru_stime}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--modes", default="stream,memory", help="data modes, one child each")
    ap.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "stream_memory.json"
    )
    args = ap.parse_args()
    data = args.work / "data"
    t = time.perf_counter()
    make_tree(data, args.images, args.size)
    print(
        f"dataset: {args.images} training JPEGs at {args.size} px ({time.perf_counter() - t:.0f} s)"
    )
    decoded = sum(split_sizes(args.images).values()) * 3 * args.size**2 / 2**30
    seen = args.steps * args.batch_size
    results: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv), "images": args.images,
        "image_size": args.size, "steps": args.steps, "batch_size": args.batch_size,
        "decoded_set_gib": round(decoded, 2),
    }  # fmt: skip
    for mode in args.modes.split(","):
        cfg = {"data": str(data), "image_size": args.size, "epochs": 1, "max_steps": args.steps,
               "batch_size": args.batch_size, "data_mode": mode, "augment": "none"}  # fmt: skip
        cmd = [sys.executable, "-c", CHILD, json.dumps(cfg), str(args.work / f"run-{mode}")]
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if r.returncode:
            sys.exit(r.stderr[-3000:])
        res = json.loads(r.stdout.strip().splitlines()[-1])
        peak = res["peak_kib"] / 2**20  # KiB -> GiB: the child's own high-water mark
        results[mode] = {
            "mode": res["mode"], "peak_rss_gib": round(peak, 2),
            "ratio_decoded_to_peak": round(decoded / peak, 2),
            "train_images_per_s": round(seen / res["train_s"], 1),
            "run_wall_s": round(res["seconds"], 1), "cpu_s": round(res["cpu_s"], 1),
            "why": res["why"],
        }  # fmt: skip
        print(json.dumps({mode: results[mode]}, indent=2), flush=True)
    if "stream" in results and "memory" in results:
        m, st = results["memory"], results["stream"]
        results["ratio_memory_peak_to_stream_peak"] = round(
            m["peak_rss_gib"] / st["peak_rss_gib"], 2
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
