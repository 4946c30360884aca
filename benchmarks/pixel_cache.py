"""What the decoded-pixel cache saves a grid: one short run, cache on and off, interleaved.

On the CIFAR-10-LT split of ``effectiveness/cifar10_lt.py`` (IF 100: 12,356 training,
500 validation and 10,000 test images, 32 px), one run of ``small-cnn`` for one
epoch in memory mode, in this process; the cache is warmed by a first run, then the
runs alternate between the cache on and off (``$IMGBALANCE_PIXEL_CACHE_GB=0``), so
each "on" run reads what a grid's later runs read. The predictions of every run
are compared byte for byte. ``--data-mode stream --epochs 3`` measures the streamed
path instead: without the cache it decodes every image every epoch; the first run
with it fills the cache file as it decodes (its time is reported as ``filling``), the
later ones read every epoch from the memory-mapped file. Usage::

    python benchmarks/pixel_cache.py --work /tmp/pixel-cache \\
        --out benchmarks/results/pixel_cache.json
    python benchmarks/pixel_cache.py --work /tmp/pixel-cache --data-mode stream \\
        --epochs 3 --out benchmarks/results/pixel_cache_stream.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "effectiveness"))
import cifar10_lt

from imgbalance.experiments import RunConfig, run_training

from _harness import provenance, write_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archive", type=Path, default=cifar10_lt.ARCHIVE)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-mode", choices=["memory", "stream"], default="memory")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    raw = cifar10_lt.unpack(args.archive, args.work)
    split = args.work / "split-if100"
    if not (split / "test").is_dir():
        cifar10_lt.make_split(raw, split, 100, 50)
    os.environ["IMGBALANCE_CACHE_DIR"] = str(args.work / "cache")
    cfg = RunConfig.from_dict({"data": str(split), "model": "small-cnn", "image_size": 32,
                               "epochs": args.epochs, "batch_size": 128, "seed": 0,
                               "patience": 1000, "data_mode": args.data_mode})  # fmt: skip
    for old in (args.work / "cache" / "pixels").glob("*.npy"):
        old.unlink()  # the warm-up run fills the cache
    runs: dict[str, list[dict[str, float]]] = {"on": [], "off": [], "filling": []}
    outputs = []
    order = ["warm-up"] + ["on", "off"] * args.repeats
    for i, mode in enumerate(order):
        os.environ["IMGBALANCE_PIXEL_CACHE_GB"] = "0" if mode == "off" else "4"
        t0, c0 = time.perf_counter(), time.process_time()
        run_training(cfg, args.work / "runs" / f"{i}-{mode}")
        res = {"wall_s": round(time.perf_counter() - t0, 2),
               "cpu_s": round(time.process_time() - c0, 2)}  # fmt: skip
        outputs.append((args.work / "runs" / f"{i}-{mode}" / "predictions.csv").read_bytes())
        runs["filling" if mode == "warm-up" else mode].append(res)
        print(f"{mode}: {res}", flush=True)
    med = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in runs.items()}
    saved = med["off"]["wall_s"] - med["on"]["wall_s"]
    result = {
        **provenance(),
        "data_mode": args.data_mode,
        "epochs": args.epochs,
        "runs": runs,
        "median": med,
        "saved_per_run_s": round(saved, 2),
        "off_over_on_wall": round(med["off"]["wall_s"] / med["on"]["wall_s"], 3),
        "same_predictions": all(o == outputs[0] for o in outputs),
    }
    print(f"median: {json.dumps(med)}")
    print(f"saved per run: {saved:.1f} s; same predictions: {result['same_predictions']}")
    write_result(args.out, result)


if __name__ == "__main__":
    main()
