"""One effectiveness study on a real dataset folder, with one command.

Splits the dataset (stratified, 70/15/15, seed 42: the test split keeps the
natural distribution and is never balanced), runs the grid files into one runs
folder, writes the report and copies it to ``--out`` with a ``study.json`` (the
split's counts, the grids, the time it took and the date). The same as running
``imgbalance split``, ``imgbalance experiment`` per grid and ``imgbalance
report`` by hand.

Usage::

    python benchmarks/effectiveness/real_dataset.py ../shared/datasets/bccd_wbc \\
        --grid benchmarks/effectiveness/bccd_wbc_cpu.yaml \\
        --grid benchmarks/effectiveness/long_tailed_linear.yaml \\
        --work /tmp/bccd --out benchmarks/effectiveness/bccd_wbc_cpu --jobs 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _study import copy_report, run

import imgbalance
from imgbalance.experiments.grid import load_grid, run_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", type=Path, help="a folder with one sub-folder per class")
    ap.add_argument("--grid", action="append", required=True, help="a grid file (repeatable)")
    ap.add_argument("--work", type=Path, required=True, help="the split and the runs go here")
    ap.add_argument("--out", type=Path, required=True, help="the report is copied here")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--split-seed", type=int, default=42)
    args = ap.parse_args()

    t0 = time.perf_counter()
    split_dir, runs = args.work / "split", args.work / "runs"
    result = imgbalance.split(args.dataset, val=0.15, test=0.15, random_state=args.split_seed)
    if not (split_dir / "splits.csv").is_file():  # an earlier, interrupted run's split is reused
        imgbalance.write_split(result, split_dir)
    for warning in result.warnings:  # unreadable files left out, classes missing from a split
        print(f"Warning: {warning}", file=sys.stderr, flush=True)
    counts = result.counts()
    for grid_file in args.grid:
        grid = load_grid(grid_file, data=split_dir)
        status = run_grid(grid, runs, jobs=args.jobs, log=lambda m: print(m, flush=True))
        print(f"{grid_file}: {status}", flush=True)
    minutes = (time.perf_counter() - t0) / 60
    copy_report(
        runs,
        args.out,
        {
            "dataset": args.dataset.name,
            "split_seed": args.split_seed,
            "counts": counts,
            "grids": [Path(g).name for g in args.grid],
            "jobs": args.jobs,
            "minutes": round(minutes, 1),
        },
    )
    print(f"done in {minutes:.1f} min; report in {args.out}")


if __name__ == "__main__":
    run(main)
