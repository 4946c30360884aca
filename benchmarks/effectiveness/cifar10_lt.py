"""CIFAR-10-LT, the long-tailed benchmark the literature has a table for, run through
``imgbalance experiment`` so that what is measured is what a user gets.

1. The archive (``../shared/datasets/cifar10/cifar10.tar.xz``: CIFAR-10 as 32x32 JPEG
   class folders) is checked against its sha256 and unpacked into ``--work`` with
   ``tarfile``'s ``data`` filter (no absolute paths, no ``..``, no links out, no devices).
2. The training part is cut long-tailed as Cao et al. 2019 cut it: class ``i`` of the
   usual order (airplane 0 ... truck 9) keeps ``int(5000 * IF ** (-i / 9))`` images, the
   first in file order. The validation part is held out of the *training* images only:
   the last ``--val-per-class`` files of every class (balanced), never among the
   long-tailed cut, so the head class keeps ``5000 - val`` images (4,950 by default,
   against the papers' 5,000; the papers select on the test set, which we never do). The
   test part is CIFAR-10's balanced 1,000 images a class, untouched.
3. The split is a ``train/ val/ test/`` tree of hard links (copies across file systems)
   and ``imgbalance experiment GRID --data SPLIT --out RUNS --jobs N`` runs the grid on it.
   Then the report is written and copied to ``--out`` with ``study.json`` (the counts, the
   protocol, the time) and ``table.md``: each arm's balanced test accuracy beside the
   published one and the gap of each to cross-entropy in both (:data:`PUBLISHED`).

Usage (the CPU grid, then the GPU one when a GPU is at hand)::

    python benchmarks/effectiveness/cifar10_lt.py --if 100 \\
        --grid benchmarks/effectiveness/cifar10_lt_cpu.yaml \\
        --work /tmp/cifar10-lt --out benchmarks/effectiveness/cifar10_lt --jobs 2
    python benchmarks/effectiveness/cifar10_lt.py --if 100 \\
        --grid benchmarks/effectiveness/cifar10_lt_gpu.yaml \\
        --work /tmp/cifar10-lt --out benchmarks/effectiveness/cifar10_lt_gpu_if100
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from _study import copy_report, run

from imgbalance._fs import file_sha256
from imgbalance.errors import ImgBalanceError

HERE = Path(__file__).resolve().parent
ARCHIVE = HERE.parents[1] / ".." / "shared" / "datasets" / "cifar10" / "cifar10.tar.xz"
SHA256 = "6254f53a1bc70afc08c46178959354e8597763b03706815cc50b5e2cdff16569"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")  # fmt: skip
PER_CLASS = 5000

#: balanced test accuracy (%) with ResNet-32 at IF 100, 200 epochs, as published (Cao et
#: al. 2019, Ren et al. 2020, Menon et al. 2021, Zhong et al. 2021, each range's middle);
#: arms of our grids are matched by name (``baseline`` is plain cross-entropy), an arm
#: without a published number gets none
PUBLISHED: dict[str, float] = {
    "baseline": 70.5, "focal": 69.0, "weighted-sampler": 70.0, "balanced-softmax": 76.0,
    "drw": 75.0, "ldam-drw": 77.5, "logit-adjusted": 78.5, "posthoc-la": 77.5,
    "mixup+balanced-softmax": 81.0, "mixup-drw": 82.0,
}  # fmt: skip


def lt_counts(imbalance: float, head: int) -> dict[str, int]:
    """Images kept per class: ``int(5000 * IF ** (-i / 9))``, at most ``head``."""
    return {c: min(int(PER_CLASS * imbalance ** (-i / (len(CLASSES) - 1))), head)
            for i, c in enumerate(CLASSES)}  # fmt: skip


def unpack(archive: Path, work: Path) -> Path:
    """The archive's ``train/`` and ``test/`` under ``work/cifar10`` (once: a marker file
    written last says the unpacking finished)."""
    dest = work / "cifar10"
    done = dest / ".unpacked"
    if done.is_file() and done.read_text() == SHA256:
        return dest
    got = file_sha256(archive)
    if got is None:
        raise ImgBalanceError(f'"{archive}" cannot be read: pass a readable --archive FILE.')
    if got != SHA256:
        raise ImgBalanceError(
            f'"{archive}" has sha256 {got}, not {SHA256}: it is not the archive this benchmark '
            "was written for. Fetch it again."
        )
    if dest.exists():
        shutil.rmtree(dest)
    tmp = work / ".cifar10-unpacking"
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")  # refuses absolute paths, .., links out, devices
    tmp.rename(dest)
    done.write_text(SHA256)
    return dest


def _place(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def make_split(raw: Path, out: Path, imbalance: float, val_per_class: int) -> dict[str, dict]:
    """The long-tailed ``train/ val/ test/`` tree (see the module doc); its counts."""
    head = PER_CLASS - val_per_class
    counts = {"train": lt_counts(imbalance, head), "val": {}, "test": {}}
    if out.exists():
        shutil.rmtree(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for c in CLASSES:
        files = sorted((raw / "train" / c).glob("*.jpg"))
        if len(files) != PER_CLASS:
            raise ImgBalanceError(f"{raw / 'train' / c} holds {len(files)} images, not 5000.")
        for f in files[: counts["train"][c]]:
            _place(f, tmp / "train" / c / f.name)
        val = files[PER_CLASS - val_per_class :] if val_per_class else []
        for f in val:
            _place(f, tmp / "val" / c / f.name)
        test = sorted((raw / "test" / c).glob("*.jpg"))
        for f in test:
            _place(f, tmp / "test" / c / f.name)
        counts["val"][c], counts["test"][c] = len(val), len(test)
    tmp.rename(out)
    return counts


def gap_table(results: Path) -> tuple[str, list[dict[str, object]]]:
    """Markdown: per arm, the median (and range over seeds) of balanced test accuracy,
    the published number, and each one's gap to cross-entropy; the post-hoc logit
    adjustment of the baseline's own runs (plain cross-entropy) is a row of its own
    (``posthoc-la``)."""
    rows = [r for r in csv.DictReader(results.open()) if r["status"] == "completed"]
    by_arm: dict[str, list[float]] = {}
    for r in rows:
        by_arm.setdefault(r["arm"], []).append(100 * float(r["balanced_accuracy"]))
        if r["arm"] == "baseline":
            by_arm.setdefault("posthoc-la", []).append(
                100 * float(r["posthoc_la_balanced_accuracy"])
            )
    if "baseline" not in by_arm:
        raise ImgBalanceError(f"{results} has no completed run of the arm baseline (CE).")
    ce = statistics.median(by_arm["baseline"])
    lines = [
        "| arm | ours: balanced acc. (median, min-max over seeds) | gap to CE, ours | "
        "published (ResNet-32, 200 epochs) | gap to CE, published |",
        "|---|---|---|---|---|",
    ]
    table = []
    for arm, values in by_arm.items():
        mid = statistics.median(values)
        pub = PUBLISHED.get(arm)
        pub_gap = "" if pub is None else f"{pub - PUBLISHED['baseline']:+.1f}"
        lines.append(
            f"| {arm} | {mid:.1f} ({min(values):.1f}-{max(values):.1f}, n={len(values)}) | "
            f"{mid - ce:+.1f} | {'' if pub is None else f'{pub:.1f}'} | {pub_gap} |"
        )
        table.append({"arm": arm, "ours": round(mid, 2), "gap": round(mid - ce, 2),
                      "published": pub, "runs": len(values)})  # fmt: skip
    return "\n".join(lines) + "\n", table


def run_seconds(runs: Path) -> float:
    """The runs' own wall times (``total_time_s`` of each run's summary), added up."""
    total = 0.0
    for summary in runs.glob("*/experiment_summary.json"):
        total += float(json.loads(summary.read_text()).get("total_time_s") or 0.0)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--if", dest="imbalance", type=float, default=100.0,
                    help="the imbalance factor: 100, 50 or 10")  # fmt: skip
    ap.add_argument("--grid", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True, help="the data and the runs go here")
    ap.add_argument("--out", type=Path, required=True, help="the report is copied here")
    ap.add_argument("--archive", type=Path, default=ARCHIVE)
    ap.add_argument("--val-per-class", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--prepare-only", action="store_true", help="cut the split and stop")
    args = ap.parse_args()
    if not args.archive.is_file():
        raise ImgBalanceError(f'No archive at "{args.archive}": pass --archive FILE.')
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    raw = unpack(args.archive, args.work)
    tag = f"if{args.imbalance:g}"
    split = args.work / tag / "split"
    record = args.work / tag / "counts.json"
    if split.is_dir() and record.is_file():
        counts = json.loads(record.read_text())
    else:
        counts = make_split(raw, split, args.imbalance, args.val_per_class)
        record.write_text(json.dumps(counts))
    print(f"CIFAR-10-LT IF {args.imbalance:g}: train {sum(counts['train'].values())} "
          f"{counts['train']}, val {sum(counts['val'].values())}, "
          f"test {sum(counts['test'].values())}", flush=True)  # fmt: skip
    if args.prepare_only:
        return
    runs = args.work / tag / f"runs-{args.grid.stem}"
    cmd = [sys.executable, "-m", "imgbalance", "experiment", str(args.grid), "--data",
           str(split), "--out", str(runs), "--jobs", str(args.jobs)]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd)
    if rc:
        raise SystemExit(rc)
    minutes = (time.perf_counter() - t0) / 60
    text, table = gap_table(runs / "results.csv")
    copy_report(
        runs,
        args.out,
        {
            "dataset": "CIFAR-10-LT",
            "imbalance_factor": args.imbalance,
            "archive_sha256": SHA256,
            "counts": counts,
            "grid": args.grid.name,
            "jobs": args.jobs,
            # this invocation's wall time (a resumed grid counts only the runs it ran) and
            # the runs' own times added up (each run's total_time_s)
            "wall_minutes": round(minutes, 1),
            "run_minutes": round(run_seconds(runs) / 60, 1),
            "table": table,
        },
        paths={str(args.work.resolve()): "WORK", str(args.work): "WORK"},
    )
    (args.out / "table.md").write_text(text)
    shutil.copy2(args.grid, args.out / args.grid.name)
    print(text)
    print(f"done in {minutes:.1f} min; report in {args.out}")


if __name__ == "__main__":
    run(main)
