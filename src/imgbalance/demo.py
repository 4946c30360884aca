"""The built-in demo dataset: real handwritten digits with a long-tailed profile.

scikit-learn ships 1,797 real 8x8 scans of handwritten digits (the UCI
"optdigits" test set) inside the package, so the demo needs no download.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from ._fs import atomic_path
from .errors import OutputError

__all__ = ["DEMO_MARKER", "long_tail_counts", "make_demo_dataset"]

DEMO_MARKER = ".imgbalance-demo"


def long_tail_counts(n_max: int, n_classes: int, imbalance_ratio: float) -> list[int]:
    """Exponential profile from ``n_max`` down to ``n_max / imbalance_ratio`` (at least 1)."""
    if n_classes == 1:
        return [n_max]
    return [
        max(1, round(n_max * imbalance_ratio ** (-k / (n_classes - 1)))) for k in range(n_classes)
    ]


def make_demo_dataset(
    out: str | os.PathLike[str],
    *,
    imbalance_ratio: float = 30.0,
    size: int = 64,
    seed: int = 0,
) -> dict[str, int]:
    """Write the digits as ``out/digit-<d>/<index>.png``, long-tailed, and return the counts.

    Digit 0 keeps 170 images and digit 9 about ``170 / imbalance_ratio``; the
    choice of images is drawn from ``seed``. Images are upscaled to
    ``size`` x ``size`` grayscale PNG, dark ink on white.

    Examples
    --------
    >>> make_demo_dataset("demo-data")  # doctest: +SKIP
    {'digit-0': 170, 'digit-1': 116, ...}
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise OutputError(f'Destination path "{out}" already exists and is not empty.')
    rng = np.random.default_rng(seed)
    targets = long_tail_counts(170, 10, imbalance_ratio)
    counts: dict[str, int] = {}
    for digit, n in enumerate(targets):
        idx = np.flatnonzero(digits.target == digit)
        chosen = np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False))
        name = f"digit-{digit}"
        (out / name).mkdir(parents=True, exist_ok=True)
        for i in chosen:
            pixels = (255 - digits.images[i] * (255 / 16)).round().astype(np.uint8)
            im = Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.BICUBIC)
            with atomic_path(out / name / f"{int(i):04d}.png") as tmp:
                im.save(tmp, format="PNG")
        counts[name] = len(chosen)
    return counts


def prepare_demo_dir(out: Path) -> None:
    """Create ``out`` for the demo, replacing an earlier demo there, refusing anything else."""
    if out.exists():
        if not out.is_dir():
            raise OutputError(f'Demo output "{out}" exists and is a file. Pass --out elsewhere.')
        if any(out.iterdir()) and not (out / DEMO_MARKER).exists():
            raise OutputError(
                f'Destination path "{out}" already exists and was not made by '
                "`imgbalance demo`. Pass --out with a new folder."
            )
        for child in out.iterdir():
            if child.name != DEMO_MARKER:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text("made by imgbalance demo; safe to delete\n")


def demo_grid(split_dir: Path) -> dict[str, object]:
    """A small comparison on the demo split: linear and small CNN, five techniques, 3 seeds."""
    return {
        "name": "demo: long-tailed digits",
        "data": str(split_dir.resolve()),
        "seeds": [0, 1, 2],
        "models": ["linear", "small-cnn"],
        "defaults": {"image_size": 32, "epochs": 15, "patience": 4, "batch_size": 32},
        "arms": {
            "baseline": {},
            "random-over": {"technique": "random-over"},
            "smote": {"technique": "smote"},
            "weighted-ce": {"loss": "weighted-ce"},
            "focal": {"model": "small-cnn", "loss": "focal", "class_weights": "inverse"},
            "balanced-softmax": {"model": "small-cnn", "loss": "balanced-softmax"},
        },
    }
