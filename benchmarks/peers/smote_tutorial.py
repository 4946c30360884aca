"""What common tutorials show: every image resized to 224x224, flattened into one array,
imbalanced-learn ``SMOTE().fit_resample``, each synthetic row saved as a JPEG.
NOT imgbalance code; a peer for ``balance_floor.py``.

``--dtype float32`` is the correct version. ``--dtype uint8`` is the pitfall many
tutorials fall into: imbalanced-learn computes ``X[nn] - X[row]`` in the array's own
dtype, so differences below zero wrap around and many synthetic pixels come out wrong.
``--save-raw FILE`` keeps a run's synthetic pixels (before the JPEG encode) and
``--compare FILE`` measures another run against them: the share of pixels more than
40 levels apart (both runs draw the same neighbours and gaps). Usage::

    python benchmarks/peers/smote_tutorial.py SRC OUT [--dtype float32|uint8]
        [--save-raw FILE | --compare FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from imblearn.over_sampling import SMOTE
from PIL import Image

SIZE = 224


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--dtype", choices=("float32", "uint8"), default="float32")
    ap.add_argument("--save-raw", type=Path, help="write the synthetic pixels here (.npy)")
    ap.add_argument("--compare", type=Path, help="a --save-raw file to compare with")
    args = ap.parse_args()
    paths = sorted(args.src.glob("*/*.jpg"))
    classes = sorted({p.parent.name for p in paths})
    X = np.array(
        [np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE))) for p in paths],
        dtype=args.dtype,
    )
    y = np.array([classes.index(p.parent.name) for p in paths])
    n = len(X)
    X_res, y_res = SMOTE(random_state=0).fit_resample(X.reshape(n, -1), y)
    new = np.clip(np.rint(X_res[n:].astype(np.float32)), 0, 255).astype(np.uint8)
    for i, (row, label) in enumerate(zip(new, y_res[n:], strict=True)):
        d = args.out / classes[label]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(row.reshape(SIZE, SIZE, 3)).save(d / f"smote_{i:06d}.jpg", quality=95)
    extra = ""
    if args.compare is not None:
        ref = np.load(args.compare, mmap_mode="r")
        off = np.abs(new.astype(np.int16) - ref.astype(np.int16)) > 40
        extra = f" pixels_off_by_40={off.mean():.4f}"
    if args.save_raw is not None:
        np.save(args.save_raw, new)
    print(f"images={len(new)}{extra}")


if __name__ == "__main__":
    main()
