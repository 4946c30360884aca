"""Near duplicates: resized, re-encoded and cropped copies stay in one split; look-alikes don't."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

import imgbalance
from imgbalance.dataset.images import dhash, load_image
from imgbalance.dataset.near_duplicates import (
    THRESHOLD,
    candidate_pairs,
    find_near_duplicates,
    thumbnails,
)
from imgbalance.dataset.splits import SPLIT_OUTPUTS

from imgtools import save, write

SEEDS = range(10)


def scene(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A photo-like picture: a smooth colour field with a few shapes on it."""
    rng = np.random.default_rng(seed)
    field = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    im = Image.fromarray(field, "RGB").resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(8):
        x, y = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
        w, h = (int(v) for v in rng.integers(10, 50, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=colour)
    return im


def brain_slice(seed: int, n: int = 96) -> Image.Image:
    """An MRI-like slice: one head silhouette on black, different structures inside."""
    rng = np.random.default_rng(seed)
    im = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(im)
    c = n / 2
    rx, ry = n * 0.36 * (1 + rng.normal(0, 0.02)), n * 0.42 * (1 + rng.normal(0, 0.02))
    draw.ellipse((c - rx, c - ry, c + rx, c + ry), fill=110)
    draw.ellipse((c - 0.9 * rx, c - 0.9 * ry, c + 0.9 * rx, c + 0.9 * ry), fill=75)
    for _ in range(25):
        x, y = c + rng.normal(0, rx * 0.4), c + rng.normal(0, ry * 0.4)
        s = rng.uniform(2, 8)
        draw.ellipse((x - s, y - s, x + s, y + s), fill=int(rng.integers(20, 220)))
    return im.filter(ImageFilter.GaussianBlur(1.2))


def spots(seed: int, n: int = 64) -> Image.Image:
    """Black, with three small bright spots: dHash sees almost nothing."""
    rng = np.random.default_rng(seed)
    arr = np.zeros((n, n), dtype=np.uint8)
    for _ in range(3):
        x, y = rng.integers(4, n - 4, 2)
        arr[y - 2 : y + 2, x - 2 : x + 2] = 255
    return Image.fromarray(arr, "L")


def jpeg(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


COPIES = {  # copy: original
    "cats/copy_resized.png": "cats/c00.png",
    "cats/copy_quality45.jpg": "cats/c01.jpg",
    "cats/copy_cropped.png": "cats/c02.png",
}


@pytest.fixture
def copies(tmp_path: Path) -> Path:
    """Two classes of 12 different scenes, and three copies of cats' first three."""
    root = tmp_path / "data"
    for i in range(12):
        ext = "jpg" if i == 1 else "png"
        if ext == "jpg":
            write(root / "cats" / f"c{i:02d}.jpg", jpeg(scene(i), 92))
        else:
            save(scene(i), root / "cats" / f"c{i:02d}.png")
        save(scene(100 + i), root / "dogs" / f"d{i:02d}.png")
    save(scene(0).resize((80, 60), Image.Resampling.LANCZOS), root / "cats/copy_resized.png")
    with Image.open(root / "cats" / "c01.jpg") as im:
        write(root / "cats/copy_quality45.jpg", jpeg(im, 45))
    w, h = 160, 120  # 4 % off the left, 1 % off the right, 3 % off the top and bottom
    save(scene(2).crop((6, 4, w - 2, h - 4)), root / "cats/copy_cropped.png")
    return root


def where(result: imgbalance.SplitResult) -> dict[str, str]:
    return {row["path"]: row["split"] for row in result.rows}


def test_copies_land_in_the_split_of_their_original(copies: Path) -> None:
    catalog = imgbalance.scan(copies, workers=1)  # no perceptual hashes: split decodes
    assert all(r.dhash is None for r in catalog.records)
    apart_without = 0
    for seed in SEEDS:
        result = imgbalance.split(catalog, random_state=seed)
        at = where(result)
        for copy, original in COPIES.items():
            assert at[copy] == at[original], (seed, copy)
        plain = where(imgbalance.split(catalog, random_state=seed, near_duplicates=False))
        apart_without += sum(plain[c] != plain[o] for c, o in COPIES.items())
    assert apart_without > 0  # without the check, the copies do cross splits
    summary = result.summary()["near_duplicates"]
    assert summary == {
        "enabled": True,
        "threshold": THRESHOLD,
        "pairs": 3,
        "cross_class_pairs": 0,
        "groups_merged": 3,
        "undecodable": 0,
    }
    pairs = {(row["a"], row["b"]) for row in result.near_duplicates.rows}
    assert pairs == {tuple(sorted(p)) for p in COPIES.items()}
    assert all(float(row["similarity"]) >= THRESHOLD for row in result.near_duplicates.rows)
    assert result.warnings == []


def test_a_catalog_with_perceptual_hashes_gives_the_same_split(copies: Path) -> None:
    hashed = imgbalance.scan(copies, workers=1, near_duplicates=True)
    plain = imgbalance.scan(copies, workers=1)
    assert (
        imgbalance.split(hashed, random_state=3).rows
        == imgbalance.split(plain, random_state=3).rows
    )


def test_copy_in_another_class_is_kept_together_and_named(copies: Path) -> None:
    save(scene(105).resize((120, 90)), copies / "cats" / "looks_like_a_dog.png")
    catalog = imgbalance.scan(copies, workers=1)
    for seed in SEEDS:
        result = imgbalance.split(catalog, random_state=seed)
        at = where(result)
        assert at["cats/looks_like_a_dog.png"] == at["dogs/d05.png"]
    summary = result.summary()["near_duplicates"]
    assert summary["pairs"] == 4 and summary["cross_class_pairs"] == 1
    warning = next(w for w in result.warnings if "different classes" in w)
    assert '"cats/looks_like_a_dog.png" (cats)' in warning
    assert '"dogs/d05.png" (dogs)' in warning


def test_look_alike_slices_are_not_merged(tmp_path: Path) -> None:
    root = tmp_path / "mri"
    for i in range(30):
        save(brain_slice(i), root / ("tumour" if i % 3 == 0 else "healthy") / f"s{i:02d}.png")
    for i in range(20):
        save(spots(i), root / "healthy" / f"spots{i:02d}.png")
    slices = [load_image(p) for p in sorted(root.rglob("s[0-9]*.png"))]
    dots = [load_image(p) for p in sorted(root.rglob("spots*.png"))]
    for group in (slices, dots):  # the cheap hash calls many of them near duplicates
        close = [
            bin(dhash(a) ^ dhash(b)).count("1") <= 10 for a, b in itertools.combinations(group, 2)
        ]
        assert sum(close) >= 3
    paths = [str(p) for p in sorted(root.rglob("*.png"))]
    thumbs, aspect = thumbnails(paths, workers=1)
    assert len(candidate_pairs(thumbs, aspect)) >= 30  # candidates, and the pixels say no
    assert find_near_duplicates(paths, workers=1) == ([], [])
    result = imgbalance.split(root, random_state=0)
    assert result.summary()["near_duplicates"]["pairs"] == 0
    assert len({row["group"] for row in result.rows}) == 50


def test_switched_off_is_the_split_of_before(copies: Path, balanced_tree: Path) -> None:
    catalog = imgbalance.scan(copies, workers=1)
    off = imgbalance.split(catalog, random_state=1, near_duplicates=False)
    assert off.summary()["near_duplicates"] == {"enabled": False}
    groups = {row["path"]: row["group"] for row in off.rows}
    assert len(set(groups.values())) == len(groups)  # every file a unit of its own
    assert off.near_duplicates.rows == [] and off.warnings == []
    # where nothing is a near duplicate, the check changes nothing
    plain = imgbalance.scan(balanced_tree, workers=1)
    assert (
        imgbalance.split(plain, random_state=4).rows
        == imgbalance.split(plain, random_state=4, near_duplicates=False).rows
    )


def test_write_split_writes_the_pairs_and_repeats_its_bytes(tmp_path: Path, copies: Path) -> None:
    assert "near_duplicates.csv" in SPLIT_OUTPUTS
    catalog = imgbalance.scan(copies, workers=1)
    outputs = []
    for name in ("one", "two"):
        out = tmp_path / name
        summary = imgbalance.write_split(imgbalance.split(catalog, random_state=2), out)
        outputs.append({f: (out / f).read_bytes() for f in ("splits.csv", "near_duplicates.csv")})
        outputs[-1]["summary"] = (out / "split_summary.json").read_bytes()
    assert outputs[0] == outputs[1]
    assert summary["near_duplicates"]["pairs"] == 3
    rows = list(csv.DictReader(io.StringIO(outputs[0]["near_duplicates.csv"].decode())))
    assert [list(r) for r in rows[:1]] == [["a", "b", "similarity", "same_class"]]
    assert {(r["a"], r["b"]) for r in rows} == {tuple(sorted(p)) for p in COPIES.items()}
    off = imgbalance.split(catalog, random_state=2, near_duplicates=False)
    imgbalance.write_split(off, tmp_path / "one", overwrite=True)  # replaces its own pairs file
    assert (tmp_path / "one" / "near_duplicates.csv").read_text() == "a,b,similarity,same_class\n"
    saved = json.loads((tmp_path / "one" / "split_summary.json").read_text(encoding="utf-8"))
    assert saved["near_duplicates"] == {"enabled": False}


def test_an_undecodable_file_is_left_out_of_every_split(tmp_path: Path, copies: Path) -> None:
    """Its header opens, its pixels do not: it was kept in the split (and failed training
    later). The near-duplicate check decodes it anyway, so it is left out and named."""
    from imgtools import body_corrupt_jpeg

    write(copies / "dogs" / "broken_body.jpg", body_corrupt_jpeg())  # the header opens
    write(copies / "cats" / "broken_copy.jpg", body_corrupt_jpeg())  # same bytes, other name
    result = imgbalance.split(copies, random_state=0)
    assert result.summary()["near_duplicates"]["undecodable"] == 1  # one decode per content
    assert result.excluded == ["cats/broken_copy.jpg", "dogs/broken_body.jpg"]
    assert any("could not be decoded" in w and "dogs/broken_body.jpg" in w and "left out" in w
               for w in result.warnings)  # fmt: skip
    assert not [r for r in result.rows if "broken" in r["path"]]
    assert result.summary()["near_duplicates"]["pairs"] == 3
    clean = imgbalance.split(copies, random_state=0, near_duplicates=False)  # kept unchecked
    assert len(clean.rows) == len(result.rows) + 2


def test_thumbnails_in_worker_processes_match(copies: Path) -> None:
    paths = [str(p) for p in sorted(copies.rglob("*.*"))] * 10  # past the parallel minimum
    one, aspect_one = thumbnails(paths, workers=1)
    two, aspect_two = thumbnails(paths, workers=2)
    assert np.array_equal(one, two) and np.array_equal(aspect_one, aspect_two)


def test_cli_switch(tmp_path: Path, copies: Path) -> None:
    script = Path(sys.executable).parent / "imgbalance"
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "imgbalance"]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    for flag, pairs in (("--near-duplicates", 3), ("--no-near-duplicates", 0)):
        out = tmp_path / flag
        r = subprocess.run(
            [*entry, "split", str(copies), "--out", str(out), flag],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert r.returncode == 0, r.stderr
        summary = json.loads((out / "split_summary.json").read_text(encoding="utf-8"))
        assert summary["near_duplicates"]["enabled"] is (pairs > 0)
        rows = list(csv.DictReader((out / "near_duplicates.csv").open(encoding="utf-8")))
        assert len(rows) == pairs
        assert ("3 near-duplicate pair(s)" in r.stdout) is (pairs > 0)
