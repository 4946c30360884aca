"""Scan throughput of ``imgbalance.scan`` against what users run today, in one run.

Peers, each measured on the same files in the same process run:

* ``decode-loop``: the usual validation script - ``Image.open(p).convert("RGB")``
  plus a sha256 of the bytes, one file after another;
* ``pil-verify-loop``: ``Image.open(p).verify()`` plus sha256, one file after another.

Trees: a generated tree of small PNG and JPEG files (``--files``, default 20,000,
10 classes, long-tailed) and any real dataset folders given with ``--dataset``.
Each measurement is repeated ``--repeats`` times after one warm-up pass (so the
page cache is warm for every contender); the median is reported.

Usage::

    python benchmarks/scan_throughput.py --dataset ../shared/datasets/banana_leaf \
        --out benchmarks/results/scan_throughput.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

import imgbalance


def make_tree(root: Path, n_files: int, seed: int = 0) -> None:
    """Long-tailed tree of 32x32 images, 2/3 PNG and 1/3 JPEG."""
    rng = np.random.default_rng(seed)
    weights = 0.6 ** np.arange(10)
    counts = np.maximum(1, np.round(n_files * weights / weights.sum())).astype(int)
    counts[0] += n_files - counts.sum()
    base = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    i = 0
    for c, n in enumerate(counts):
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for _ in range(int(n)):
            arr = base[i % 64].copy()
            arr[0, 0] = [i % 256, (i // 256) % 256, (i // 65536) % 256]  # unique bytes
            im = Image.fromarray(arr)
            if i % 3 == 2:
                im.save(folder / f"img_{i:06d}.jpg", quality=90)
            else:
                im.save(folder / f"img_{i:06d}.png")
            i += 1


def files_of(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def decode_loop(root: Path) -> int:
    n = 0
    for p in files_of(root):
        hashlib.sha256(p.read_bytes()).hexdigest()
        with Image.open(p) as im:
            im.convert("RGB")
        n += 1
    return n


def verify_loop(root: Path) -> int:
    n = 0
    for p in files_of(root):
        hashlib.sha256(p.read_bytes()).hexdigest()
        with Image.open(p) as im:
            im.verify()
        n += 1
    return n


def timed(fn: Callable[[], int], repeats: int) -> dict[str, float]:
    fn()  # warm-up: page cache and imports
    times, n = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {
        "files": n,
        "median_s": round(med, 4),
        "files_per_s": round(n / med, 1),
        "runs_s": [round(t, 4) for t in times],
    }


def bench_tree(root: Path, repeats: int) -> dict[str, dict[str, float]]:
    def scan(**kw: object) -> Callable[[], int]:
        return lambda: len(imgbalance.scan(root, **kw).records)  # type: ignore[arg-type]

    cpus = os.cpu_count() or 1
    contenders: dict[str, Callable[[], int]] = {
        "imgbalance scan (1 process)": scan(workers=1),
        f"imgbalance scan ({cpus} processes)": scan(workers=cpus),
        f"imgbalance scan --verify ({cpus} processes)": scan(workers=cpus, verify=True),
        "peer: decode-loop (1 process)": lambda: decode_loop(root),
        "peer: pil-verify-loop (1 process)": lambda: verify_loop(root),
    }
    out = {}
    for name, fn in contenders.items():
        out[name] = timed(fn, repeats)
        print(
            f"  {name:45s} {out[name]['files_per_s']:>10,.0f} files/s "
            f"(median {out[name]['median_s']:.3f} s of {repeats})",
            flush=True,
        )
    peer = out["peer: decode-loop (1 process)"]["median_s"]
    for r in out.values():
        r["speedup_vs_decode_loop"] = round(peer / r["median_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dataset", action="append", default=[], type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results: dict[str, object] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.machine(),
        },
        "imgbalance": imgbalance.__version__,
        "pillow": Image.__version__,
        "repeats": args.repeats,
        "date": time.strftime("%Y-%m-%d"),
        "trees": {},
    }
    with tempfile.TemporaryDirectory(prefix="imgbalance-bench-") as tmp:
        gen = Path(tmp) / "generated"
        t0 = time.perf_counter()
        make_tree(gen, args.files)
        print(f"generated {args.files} files in {time.perf_counter() - t0:.1f} s")
        name = f"generated {args.files} files (32x32 PNG/JPEG, 10 classes)"
        print(name)
        results["trees"][name] = bench_tree(gen, args.repeats)  # type: ignore[index]
    for ds in args.dataset:
        name = f"{ds.name} ({len(files_of(ds))} files)"
        print(name)
        results["trees"][name] = bench_tree(ds, args.repeats)  # type: ignore[index]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
