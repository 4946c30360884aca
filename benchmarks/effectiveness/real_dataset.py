"""One effectiveness study on a real dataset folder, with one command: ``imgbalance
compare`` over every technique it knows, and the report copied into the repository.

The protocol is the product's (see ``imgbalance compare``): classes under 10 images
left out, repeated near-duplicate-safe stratified splits, one selection rule (the
class-balanced validation loss) and one budget in optimiser steps for every arm,
paired differences per split with intervals, the corrected resampled t-test and
Holm's correction. The runs stay in ``--work``; ``--out`` gets results.csv, the
report, its plots, ``verdict.json``, ``compare.json`` and ``study.json``.

Usage::

    python benchmarks/effectiveness/real_dataset.py ../shared/datasets/bccd_wbc \\
        --work /tmp/bccd --out benchmarks/effectiveness/bccd_wbc_cpu --jobs 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _study import copy_report, run

from imgbalance.experiments.compare import compare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", type=Path, help="a folder with one sub-folder per class")
    ap.add_argument("--work", type=Path, required=True, help="the splits and the runs go here")
    ap.add_argument("--out", type=Path, required=True, help="the report is copied here")
    ap.add_argument("--techniques", default="all", help="comma-separated, or all")
    ap.add_argument("--model", default="small-cnn")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="the first split's seed")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()

    t0 = time.perf_counter()
    runs = args.work / "runs"
    verdict = compare(
        args.dataset,
        runs,
        techniques=[t.strip() for t in args.techniques.split(",") if t.strip()],
        model=args.model,
        repeats=args.repeats,
        seed=args.seed,
        jobs=args.jobs,
        log=lambda m: print(m, flush=True),
    )
    minutes = (time.perf_counter() - t0) / 60
    copy_report(
        runs,
        args.out,
        {
            "dataset": args.dataset.name,
            "protocol": "imgbalance compare",
            "plan": verdict["plan"],
            "jobs": args.jobs,
            "minutes": round(minutes, 1),
        },
        extra=("verdict.json", "compare.json"),
        paths={str(args.dataset.resolve().parent): "DATASETS"},
    )
    print("\n".join(verdict["verdict"]))
    print(f"done in {minutes:.1f} min; report in {args.out}")


if __name__ == "__main__":
    run(main)
