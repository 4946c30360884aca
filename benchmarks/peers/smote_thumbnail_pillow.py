"""What a careful user writes instead of imgbalance: SMOTE planned on thumbnails, blended
by Pillow at full resolution. NOT imgbalance code; a peer for ``balance_floor.py``.

- every image decoded once at reduced size (JPEG draft) to a 16x16 RGB thumbnail;
- per minority class, scikit-learn's NearestNeighbors (k = 5) and SMOTE's own draws
  (a random base, one of its k neighbours, a gap in [0, 1)), up to the largest class;
- each synthetic image: the base decoded at full size, the neighbour resized to it
  (bilinear), ``Image.blend``, JPEG quality 95, written through a temporary name;
- originals hard-linked, a ``parents.csv`` with each output's parents, gap and sha256;
- rendered by a pool of ``--workers`` processes.

It does not check files (corrupt, truncated, EXIF rotation, modes), find duplicates,
resume, or keep a class's mode; imgbalance does. Usage::

    python benchmarks/peers/smote_thumbnail_pillow.py SRC OUT [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.neighbors import NearestNeighbors

K = 5
THUMB = 16


def thumbnail(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im.draft("RGB", (THUMB * 2, THUMB * 2))  # decode at 1/2, 1/4 or 1/8 scale
        small = im.convert("RGB").resize((THUMB, THUMB), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float32).ravel()


def render(task: tuple[str, str, str, float]) -> tuple[str, str]:
    base_path, nb_path, out, gap = task
    base = Image.open(base_path).convert("RGB")
    nb = Image.open(nb_path).convert("RGB")
    if nb.size != base.size:
        nb = nb.resize(base.size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    Image.blend(base, nb, gap).save(buf, format="JPEG", quality=95)
    data = buf.getvalue()
    tmp = f"{out}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, out)
    return out, hashlib.sha256(data).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    classes = {d.name: sorted(d.glob("*.jpg")) for d in sorted(args.src.iterdir()) if d.is_dir()}
    largest = max(len(v) for v in classes.values())
    tasks: list[tuple[str, str, str, float]] = []
    for name, files in classes.items():
        (args.out / name).mkdir(parents=True, exist_ok=True)
        for f in files:
            os.link(f, args.out / name / f.name)
        need = largest - len(files)
        if need <= 0 or len(files) < 2:
            continue
        X = np.stack([thumbnail(f) for f in files])
        k = min(K, len(files) - 1)
        nn = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X, return_distance=False)
        rows = rng.integers(0, len(files), need)
        cols = rng.integers(1, k + 1, need)
        gaps = rng.random(need)
        for i, (r, c, g) in enumerate(zip(rows, cols, gaps, strict=True)):
            out = args.out / name / f"smote_{i:06d}.jpg"
            tasks.append((str(files[r]), str(files[nn[r, c]]), str(out), float(g)))
    with ProcessPoolExecutor(args.workers) as pool:
        done = dict(pool.map(render, tasks, chunksize=8))
    with open(args.out / "parents.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "base", "neighbour", "gap", "sha256"])
        for base, nb, out, gap in tasks:
            w.writerow([out, base, nb, f"{gap:.6f}", done[out]])
    print(f"images={len(tasks)}")


if __name__ == "__main__":
    main()
