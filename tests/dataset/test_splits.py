from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import pytest

import imgbalance
from imgbalance import DatasetError, OutputError
from imgbalance.dataset.splits import SPLITS

from conftest import tree_digest
from imgtools import jpeg_bytes, rgb, save, write


def expected(n: int, frac: float) -> float:
    return n * frac


def test_stratified_within_one_image(balanced_tree: Path) -> None:
    result = imgbalance.split(balanced_tree, val=0.15, test=0.15, random_state=42)
    counts = result.counts()
    for c, n in {"ants": 40, "bees": 20, "wasps": 7}.items():
        assert sum(counts[s][c] for s in SPLITS) == n
        for s in SPLITS:
            assert abs(counts[s][c] - expected(n, result.fractions[s])) <= 1, (s, c)
    assert result.warnings == []


@pytest.mark.parametrize(
    ("n", "val", "test"), [(100, 0.15, 0.15), (33, 0.2, 0.1), (9, 0.15, 0.15), (1000, 0.1, 0.25)]
)
def test_quota_rounding(n: int, val: float, test: float) -> None:
    from imgbalance.dataset.splits import _targets

    t = _targets(n, {"train": 1 - val - test, "val": val, "test": test})
    assert sum(t.values()) == n
    assert abs(t["val"] - n * val) <= 1 and abs(t["test"] - n * test) <= 1


def test_tiny_classes_get_one_image_per_split_when_possible() -> None:
    from imgbalance.dataset.splits import _targets

    f = {"train": 0.7, "val": 0.15, "test": 0.15}
    assert _targets(3, f) == {"train": 1, "val": 1, "test": 1}
    assert _targets(2, f) == {"train": 1, "val": 0, "test": 1}
    assert _targets(1, f) == {"train": 1, "val": 0, "test": 0}


def test_deterministic_and_seed_dependent(balanced_tree: Path) -> None:
    a = imgbalance.split(balanced_tree, random_state=7).rows
    b = imgbalance.split(balanced_tree, random_state=7).rows
    c = imgbalance.split(balanced_tree, random_state=8).rows
    assert a == b
    assert [r["split"] for r in a] != [r["split"] for r in c]


def test_groups_never_cross_splits(tmp_path: Path) -> None:
    root = tmp_path / "d"
    seed = 0
    for cls, patients in (("benign", 12), ("malignant", 6)):
        for p in range(patients):
            for k in range(1 + p % 3):
                seed += 1
                save(rgb(seed), root / cls / f"patient{cls[0]}{p:02d}_view{k}.png")
    result = imgbalance.split(root, group_by=r"patient(\w\d+)_", random_state=3)
    where: dict[str, set[str]] = {}
    for row in result.rows:
        where.setdefault(row["group"], set()).add(row["split"])
    assert len(where) == 18
    assert all(len(s) == 1 for s in where.values())
    counts = result.counts()
    assert all(counts[s]["malignant"] > 0 for s in SPLITS)


def test_groups_csv(tmp_path: Path, balanced_tree: Path) -> None:
    cat = imgbalance.scan(balanced_tree, workers=1)
    csv_path = tmp_path / "groups.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "group"])
        for r in cat.records:
            w.writerow([r.path, r.path.split("_")[1][:2]])  # 00x, 01x, ...: groups of ~10
    mapping = imgbalance.read_groups_csv(csv_path)
    result = imgbalance.split(cat, groups=mapping)
    where: dict[str, set[str]] = {}
    for row in result.rows:
        where.setdefault(row["group"], set()).add(row["split"])
    assert all(len(s) == 1 for s in where.values())
    del mapping[cat.records[0].path]
    with pytest.raises(DatasetError, match="no row for"):
        imgbalance.split(cat, groups=mapping)


def test_group_pattern_must_match(balanced_tree: Path) -> None:
    with pytest.raises(DatasetError, match="does not match"):
        imgbalance.split(balanced_tree, group_by=r"patient(\d+)")
    with pytest.raises(DatasetError, match="not a valid regular expression"):
        imgbalance.split(balanced_tree, group_by=r"(unclosed")


def test_duplicates_never_cross_splits(tmp_path: Path) -> None:
    root = tmp_path / "d"
    for i in range(30):
        write(root / "a" / f"img{i:02d}.jpg", jpeg_bytes(i % 10))  # each image 3 times
        write(root / "b" / f"img{i:02d}.jpg", jpeg_bytes(100 + i))
    write(root / "b" / "conflict.jpg", jpeg_bytes(1))  # same as a/img01, a/img11, a/img21
    result = imgbalance.split(root, random_state=1)
    by_hash: dict[str, set[str]] = {}
    for row in result.rows:
        by_hash.setdefault(row["sha256"], set()).add(row["split"])
    assert all(len(s) == 1 for s in by_hash.values())
    assert len(by_hash) == 40


def test_small_class_warning_names_missing_split(tmp_path: Path, balanced_tree: Path) -> None:
    save(rgb(999), balanced_tree / "rare" / "only.png")
    save(rgb(998), balanced_tree / "pair" / "one.png")
    save(rgb(997), balanced_tree / "pair" / "two.png")
    result = imgbalance.split(balanced_tree)
    text = "\n".join(result.warnings)
    assert re.search(r'"rare" has 1 image\(s\) and is missing from val and test', text)
    assert re.search(r'"pair" has 2 image\(s\) and is missing from val', text)


def test_unreadable_files_are_excluded(messy: Path) -> None:
    result = imgbalance.split(messy)
    paths = {r["path"] for r in result.rows}
    assert "cats/truncated.jpg" not in paths and "cats/a.jpg" in paths
    assert "cats/truncated.jpg" in result.excluded
    assert any("unreadable" in w for w in result.warnings)


def test_no_readable_images_is_an_error(balanced_tree: Path) -> None:
    cat = imgbalance.scan(balanced_tree, max_pixels=10, workers=1)
    with pytest.raises(DatasetError, match="no readable images"):
        imgbalance.split(cat)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"val": 0.6, "test": 0.5}, "leave images"),
        ({"val": -0.1}, "val must be"),
        ({"test": 1.0}, "test must be"),
    ],
)
def test_bad_fractions(balanced_tree: Path, kw: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        imgbalance.split(balanced_tree, **kw)


def test_write_split_materialize(tmp_path: Path, messy: Path) -> None:
    before = tree_digest(messy)
    result = imgbalance.split(messy, random_state=5)
    out = tmp_path / "out"
    summary = imgbalance.write_split(result, out, materialize="link")
    assert tree_digest(messy) == before
    rows = list(csv.DictReader((out / "splits.csv").open(encoding="utf-8")))
    assert [r["path"] for r in rows] == sorted(r["path"] for r in result.rows)
    assert {"path", "class", "split", "group"} <= set(rows[0])
    for r in rows:
        copy = out / r["split"] / r["path"]
        assert copy.read_bytes() == (messy / r["path"]).read_bytes()
        assert os.stat(copy).st_ino == os.stat(messy / r["path"]).st_ino  # a hard link
    for s in SPLITS:  # every class folder exists in every split: one class_to_idx
        assert sorted(p.name for p in (out / s).iterdir()) == result.catalog.classes
    saved = json.loads((out / "split_summary.json").read_text(encoding="utf-8"))
    assert saved["counts"] == summary["counts"] == result.counts()
    assert saved["near_duplicates"]["enabled"] is True  # on by default; messy has none
    assert saved["near_duplicates"]["pairs"] == 0
    pairs = (out / "near_duplicates.csv").read_text(encoding="utf-8")
    assert pairs == "a,b,similarity,same_class\n"
    assert summary["materialized"]["linked"] == len(rows)
    assert not list(out.glob(".imgbalance-staging-*"))


def test_write_split_copy_and_overwrite(tmp_path: Path, balanced_tree: Path) -> None:
    result = imgbalance.split(balanced_tree)
    out = tmp_path / "out"
    imgbalance.write_split(result, out, materialize="copy")
    first = tree_digest(out)
    p = out / result.rows[0]["split"] / result.rows[0]["path"]
    assert os.stat(p).st_ino != os.stat(balanced_tree / result.rows[0]["path"]).st_ino
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(OutputError, match="already exists and is not empty"):
        imgbalance.write_split(result, out)
    imgbalance.write_split(result, out, materialize="copy", overwrite=True)
    assert (out / "mine.txt").read_text() == "keep me"
    again = tree_digest(out)
    del again["mine.txt"]
    assert again == first


def test_write_split_refuses_output_inside_input(balanced_tree: Path) -> None:
    before = tree_digest(balanced_tree)
    result = imgbalance.split(balanced_tree)
    for out in (balanced_tree / "splits", balanced_tree / "ants" / "x", balanced_tree):
        with pytest.raises(OutputError, match="inside the input folder"):
            imgbalance.write_split(result, out, materialize="copy")
    assert tree_digest(balanced_tree) == before


def test_overwrite_never_replaces_the_input(tmp_path: Path) -> None:
    root = tmp_path / "proj" / "train"
    save(rgb(1), root / "a" / "x.png")
    save(rgb(2), root / "a" / "y.png")
    before = tree_digest(root)
    result = imgbalance.split(root)
    with pytest.raises(OutputError, match="would replace the input folder"):
        imgbalance.write_split(result, tmp_path / "proj", materialize="link", overwrite=True)
    assert tree_digest(root) == before
