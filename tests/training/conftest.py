from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgtools import COLOURS, colour_image


@pytest.fixture
def split_tree(tmp_path: Path) -> Path:
    """A pre-split tree: train 24/8/3, val 4/3/1, test 4/3/0 (red absent from test)."""
    rng = np.random.default_rng(0)
    counts = {"train": (24, 8, 3), "val": (4, 3, 1), "test": (4, 3, 0)}
    root = tmp_path / "split"
    for split, ns in counts.items():
        for (name, colour), n in zip(COLOURS.items(), ns, strict=True):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                colour_image(rng, colour).save(folder / f"{name} {i}.png")
    return root
