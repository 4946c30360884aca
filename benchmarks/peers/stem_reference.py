"""A re-implementation of the public STEM reference (SMOTE-ENN iterations, then Mixup),
written from its public description for comparison only. It is NOT imgbalance code and
keeps the reference's documented behaviour on purpose:

- every image is loaded as 256x256 grayscale float32 and flattened;
- SMOTE generates one sample at a time, querying the nearest neighbours of one
  sample per call;
- ENN queries the neighbours of one sample per call and removes every
  misclassified sample, genuine minority images included;
- Mixup appends each new sample with ``np.vstack``;
- the result is written as grayscale PNGs at 256x256.

Usage: python benchmarks/peers/stem_reference.py SRC OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.neighbors import NearestNeighbors

IMAGE_SIZE = (256, 256)
TARGET_RATIO = 0.7
K_NEIGHBORS = 4
MAX_ITERATIONS = 30
MIN_IMPROVEMENT = 5
MIXUP_ALPHA = 0.4
MIXUP_FRACTION = 0.5


def load(src: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    classes = sorted(p.name for p in src.iterdir() if p.is_dir())
    X, y = [], []
    for label, name in enumerate(classes):
        for f in sorted((src / name).iterdir()):
            im = Image.open(f).convert("L").resize(IMAGE_SIZE)
            X.append(np.asarray(im, dtype=np.float32).ravel() / 255.0)
            y.append(label)
    return np.array(X), np.array(y), classes


def smote(X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(y)
    top = counts.max()
    new_X, new_y = [X], [y]
    for label, n in enumerate(counts):
        rows = X[y == label]
        if n >= top or n < 2:
            continue
        k = min(K_NEIGHBORS, n - 1)
        nn = NearestNeighbors(n_neighbors=k + 1).fit(rows)
        for _ in range(top - n):  # one sample, one neighbour query at a time
            i = rng.integers(n)
            idx = nn.kneighbors(rows[i : i + 1], return_distance=False)[0, 1:]
            j = rng.choice(idx)
            lam = rng.random()
            new_X.append((rows[i] + lam * (rows[j] - rows[i]))[None])
            new_y.append(np.array([label]))
    return np.vstack(new_X), np.concatenate(new_y)


def enn(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nn = NearestNeighbors(n_neighbors=4).fit(X)
    keep = []
    for i in range(len(X)):  # one query per sample
        idx = nn.kneighbors(X[i : i + 1], return_distance=False)[0, 1:]
        votes = np.bincount(y[idx], minlength=y.max() + 1)
        keep.append(votes.argmax() == y[i])
    mask = np.array(keep)
    return X[mask], y[mask]


def main() -> None:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    rng = np.random.default_rng(0)
    X, y, classes = load(src)
    for _ in range(MAX_ITERATIONS):
        counts = np.bincount(y, minlength=len(classes))
        if counts.min() / counts.max() >= TARGET_RATIO:
            break
        before = len(X)
        X, y = enn(*smote(X, y, rng))
        if len(X) - before < MIN_IMPROVEMENT:
            break
    for label in range(len(classes)):
        rows = np.flatnonzero(y == label)
        for _ in range(int(MIXUP_FRACTION * len(rows))):
            a, b = rng.choice(rows, 2, replace=False)
            lam = rng.beta(MIXUP_ALPHA, MIXUP_ALPHA)
            X = np.vstack([X, (lam * X[a] + (1 - lam) * X[b])[None]])  # grows every time
            y = np.append(y, label)
    for i, (row, label) in enumerate(zip(X, y, strict=True)):
        d = out / classes[label]
        d.mkdir(parents=True, exist_ok=True)
        img = (np.clip(row, 0, 1) * 255).astype(np.uint8).reshape(IMAGE_SIZE[::-1])
        Image.fromarray(img).save(d / f"{i:06d}.png")
    print(f"images={len(X)}")


if __name__ == "__main__":
    main()
