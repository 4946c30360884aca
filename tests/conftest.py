from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

from imgtools import (
    COLOURS,
    body_corrupt_jpeg,
    colour_image,
    exif_rotated_jpeg,
    jpeg_bytes,
    png16_rgb,
    raw_png,
    rgb,
    save,
    write,
)


@pytest.fixture(autouse=True)
def _feature_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep feature caches out of the home folder during tests."""
    monkeypatch.setenv("IMGBALANCE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """A dataset with one of every problem the scanner must report."""
    root = tmp_path / "data"
    cats = root / "cats"
    write(cats / "a.jpg", jpeg_bytes(1))
    write(cats / "b.jpg", jpeg_bytes(2))
    write(cats / "dup_of_a.jpg", jpeg_bytes(1))
    save(rgb(3), cats / "png_as_jpg.jpg", "PNG")
    save(rgb(4).convert("P"), cats / "palette.png")
    save(rgb(5).convert("RGBA"), cats / "rgba.png")
    save(rgb(6).convert("LA"), cats / "la.png")
    save(Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)), cats / "gray16.png")
    write(cats / "rgb16.png", png16_rgb())
    save(rgb(8).convert("CMYK"), cats / "cmyk.jpg", "JPEG")
    exif_rotated_jpeg(cats / "rotated.jpg")
    full = jpeg_bytes(9, (64, 64))
    write(cats / "truncated.jpg", full[: len(full) * 2 // 3])
    write(cats / "truncated_head.jpg", full[:150])
    png = (cats / "palette.png").read_bytes()
    write(cats / "truncated.png", png[: len(png) - 20])
    write(cats / "garbage.jpg", os.urandom(300))
    write(cats / "empty.jpg", b"")
    write(cats / "notes.png", b"this is text, not a picture\n")
    write(cats / "notes.txt", b"labelling notes\n")
    write(cats / ".DS_Store", b"\x00\x01")
    write(cats / "bomb.png", raw_png(100_000, 100_000, 8, 0))
    write(cats / "body_corrupt.jpg", body_corrupt_jpeg())
    save(rgb(10), cats / "nested" / "deeper" / "deep.png")
    os.symlink("does-not-exist.jpg", cats / "broken.jpg")
    dogs = root / "dögs with space"
    save(rgb(11), dogs / "hünd 1.png")
    save(rgb(12), dogs / "hünd 2.png")
    write(dogs / "conflict.jpg", jpeg_bytes(2))  # same bytes as cats/b.jpg
    (root / "empty_class").mkdir()
    write(root / "empty_class" / ".keep", b"")
    save(rgb(13), root / "one" / "single.png")
    save(rgb(14), root / ".hidden_class" / "x.png")
    write(root / "README.txt", b"top-level file\n")
    return root


@pytest.fixture
def balanced_tree(tmp_path: Path) -> Path:
    """Three clean classes of 40, 20 and 7 small PNGs."""
    root = tmp_path / "clean"
    seed = 100
    for name, n in (("ants", 40), ("bees", 20), ("wasps", 7)):
        for i in range(n):
            seed += 1
            save(rgb(seed, (12, 10)), root / name / f"{name}_{i:03d}.png")
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file (and link target) below root, to prove nothing changed."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "link->" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


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


@pytest.fixture
def small_disk(tmp_path: Path) -> object:
    """A real 400 KiB tmpfs (root only; skipped where mounting is not allowed)."""
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
