from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

import imgbalance
from imgbalance import Catalog, DatasetError

from conftest import tree_digest
from imgtools import rgb, save, write


def by_path(cat: Catalog) -> dict[str, imgbalance.ImageRecord]:
    return {r.path: r for r in cat.records}


def codes(cat: Catalog, path: str) -> set[str]:
    return {p.code for p in by_path(cat)[path].problems}


@pytest.fixture
def messy_catalog(messy: Path) -> Catalog:
    return imgbalance.scan(messy, workers=1)


def test_classes_sorted_hidden_skipped(messy_catalog: Catalog) -> None:
    assert messy_catalog.classes == ["cats", "dögs with space", "empty_class", "one"]
    assert messy_catalog.class_to_idx == {
        "cats": 0,
        "dögs with space": 1,
        "empty_class": 2,
        "one": 3,
    }
    skipped = {s.path: s.reason for s in messy_catalog.skipped}
    assert skipped[".hidden_class"] == "hidden"
    assert skipped["cats/.DS_Store"] == "hidden"
    assert skipped["empty_class/.keep"] == "hidden"
    assert skipped["README.txt"] == "not inside a class folder"
    assert skipped["cats/notes.txt"].startswith("not an image")


def test_nested_files_belong_to_their_class(messy_catalog: Catalog) -> None:
    rec = by_path(messy_catalog)["cats/nested/deeper/deep.png"]
    assert rec.class_name == "cats" and rec.label == 0 and rec.readable


def test_format_decided_by_content(messy_catalog: Catalog) -> None:
    rec = by_path(messy_catalog)["cats/png_as_jpg.jpg"]
    assert rec.format == "PNG" and rec.readable
    assert codes(messy_catalog, "cats/png_as_jpg.jpg") == {"extension-mismatch"}
    # A text file named .png is a problem, a text file named .txt is skipped.
    assert codes(messy_catalog, "cats/notes.png") == {"unreadable"}
    assert "cats/notes.txt" not in by_path(messy_catalog)


@pytest.mark.parametrize(
    ("path", "mode", "needle"),
    [
        ("cats/palette.png", "P", "palette"),
        ("cats/rgba.png", "RGBA", "alpha"),
        ("cats/la.png", "LA", "alpha"),
        ("cats/gray16.png", "I;16", "16-bit"),
        ("cats/rgb16.png", "RGB", "16-bit colour"),
        ("cats/cmyk.jpg", "CMYK", "CMYK"),
    ],
)
def test_modes_are_reported_not_crashed_on(
    messy_catalog: Catalog, path: str, mode: str, needle: str
) -> None:
    rec = by_path(messy_catalog)[path]
    assert rec.mode == mode and rec.readable
    (p,) = [p for p in rec.problems if p.code == "mode"]
    assert p.severity == "warning" and needle in p.message


def test_exif_rotation_reports_displayed_size(messy_catalog: Catalog) -> None:
    rec = by_path(messy_catalog)["cats/rotated.jpg"]
    assert (rec.width, rec.height, rec.orientation) == (20, 40, 6)


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("cats/truncated.jpg", "truncated"),
        ("cats/truncated_head.jpg", "truncated"),
        ("cats/truncated.png", "truncated"),
        ("cats/garbage.jpg", "unreadable"),
        ("cats/empty.jpg", "zero-byte"),
        ("cats/broken.jpg", "broken-link"),
        ("cats/bomb.png", "decompression-bomb"),
    ],
)
def test_unusable_files_are_errors(messy_catalog: Catalog, path: str, code: str) -> None:
    rec = by_path(messy_catalog)[path]
    assert code in codes(messy_catalog, path)
    assert not rec.readable
    p = next(p for p in rec.problems if p.code == code)
    assert p.severity == "error" and p.fix and p.path == path


def test_bomb_dimensions_read_without_allocating(messy_catalog: Catalog) -> None:
    rec = by_path(messy_catalog)["cats/bomb.png"]
    assert (rec.width, rec.height) == (100_000, 100_000)
    assert "10,000,000,000 pixels" in rec.problems[0].message


def test_max_pixels_is_configurable(balanced_tree: Path) -> None:
    cat = imgbalance.scan(balanced_tree, max_pixels=100, workers=1)
    assert all("decompression-bomb" in {p.code for p in r.problems} for r in cat.records)
    assert cat.usable() == [] and cat.balance_ratio is None
    assert {p.code for p in cat.class_problems} == {"empty-class"}
    with pytest.raises(ValueError, match="max_pixels"):
        imgbalance.scan(balanced_tree, max_pixels=0)


def test_body_corruption_needs_verify(messy: Path) -> None:
    quick = imgbalance.scan(messy, workers=1)
    assert codes(quick, "cats/body_corrupt.jpg") == set()
    full = imgbalance.scan(messy, workers=1, verify=True)
    assert codes(full, "cats/body_corrupt.jpg") == {"corrupt"}
    assert not by_path(full)["cats/body_corrupt.jpg"].readable
    # Verification decodes every other readable image without complaint.
    assert by_path(full)["cats/cmyk.jpg"].readable


def test_duplicates_within_and_across_classes(messy_catalog: Catalog) -> None:
    assert "duplicate" in codes(messy_catalog, "cats/a.jpg")
    assert "duplicate" in codes(messy_catalog, "cats/dup_of_a.jpg")
    assert "label-conflict" in codes(messy_catalog, "cats/b.jpg")
    conflict = next(
        p
        for p in by_path(messy_catalog)["dögs with space/conflict.jpg"].problems
        if p.code == "label-conflict"
    )
    assert "cats/b.jpg" in conflict.message and conflict.severity == "error"
    # A label conflict is a labelling error; the pixels are still readable.
    assert by_path(messy_catalog)["cats/b.jpg"].readable


def test_counts_ratios_and_class_problems(messy_catalog: Catalog) -> None:
    counts = messy_catalog.counts()
    # readable cats: a, b, dup, png_as_jpg, palette, rgba, la, gray16, rgb16, cmyk, rotated,
    # body_corrupt (header-only scan), deep
    assert counts == {"cats": 13, "dögs with space": 3, "empty_class": 0, "one": 1}
    assert messy_catalog.balance_ratio == pytest.approx(1 / 13)
    assert messy_catalog.imbalance_ratio == pytest.approx(13.0)
    class_codes = {(p.path, p.code) for p in messy_catalog.class_problems}
    assert class_codes == {("empty_class", "empty-class"), ("one", "single-image-class")}


def test_sha256_and_sizes(messy: Path, messy_catalog: Catalog) -> None:
    import hashlib

    rec = by_path(messy_catalog)["dögs with space/hünd 1.png"]
    data = (messy / rec.path).read_bytes()
    assert rec.sha256 == hashlib.sha256(data).hexdigest()
    assert rec.size_bytes == len(data) and (rec.width, rec.height) == (24, 16)


def test_to_dict_is_complete(messy_catalog: Catalog) -> None:
    d = messy_catalog.to_dict()
    assert d["imbalance_ratio"] == pytest.approx(13.0)
    assert d["empty_classes"] == ["empty_class"]
    assert d["majority_class"] == "cats"
    assert {f["path"] for f in d["files"]} == set(by_path(messy_catalog))
    assert d["problem_counts"]["label-conflict"] == 2
    per_class = {row["class"]: row for row in d["per_class"]}
    assert per_class["cats"]["formats"]["PNG"] >= 5


def test_parallel_scan_equals_serial(balanced_tree: Path, messy: Path) -> None:
    for root in (balanced_tree, messy):
        serial = imgbalance.scan(root, workers=1).to_dict()
        # Force the process pool even for a small tree.
        import imgbalance.dataset.scanner as catalog_mod

        old = catalog_mod._PARALLEL_MIN_FILES
        catalog_mod._PARALLEL_MIN_FILES = 0
        try:
            parallel = imgbalance.scan(root, workers=2).to_dict()
        finally:
            catalog_mod._PARALLEL_MIN_FILES = old
        assert parallel == serial


def test_progress_callback(balanced_tree: Path) -> None:
    seen: list[tuple[int, int]] = []
    imgbalance.scan(balanced_tree, workers=1, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (67, 67)


def test_scan_never_writes(messy: Path) -> None:
    before = tree_digest(messy)
    imgbalance.scan(messy, workers=1, verify=True, near_duplicates=True)
    assert tree_digest(messy) == before


def test_near_duplicates_are_approximate_and_separate(tmp_path: Path) -> None:
    root = tmp_path / "d"
    im = rgb(1, (64, 64))
    save(im, root / "a" / "orig.png")
    save(im, root / "a" / "reencoded.jpg", "JPEG", quality=70)
    save(rgb(2, (64, 64)), root / "b" / "other.png")
    cat = imgbalance.scan(root, workers=1, near_duplicates=True)
    assert cat.near_duplicates is not None
    pairs = {(p["a"], p["b"]) for p in cat.near_duplicates}
    assert pairs == {("a/orig.png", "a/reencoded.jpg")}
    assert all(not p.code.startswith("near") for p in cat.problems)
    assert imgbalance.scan(root, workers=1).near_duplicates is None


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: write(p, b"x"), "is a file"),
        (lambda p: p.mkdir(), "no class folders"),
        (lambda p: write(p / "img.png", b"x"), "no class folders.*1 file"),
        (lambda p: (p / "a").mkdir(parents=True), "no images in them"),
        (lambda p: write(p / "a" / "notes.txt", b"text"), "no images in them"),
    ],
)
def test_dataset_errors(tmp_path: Path, setup, match: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    setup(root)
    with pytest.raises(DatasetError, match=match):
        imgbalance.scan(root)


def test_symlink_loop_does_not_hang(tmp_path: Path) -> None:
    root = tmp_path / "d"
    save(rgb(1), root / "a" / "x.png")
    os.symlink("..", root / "a" / "loop")
    cat = imgbalance.scan(root, workers=1)
    assert cat.counts()["a"] >= 1


def test_default_scan_never_decodes_pixels(messy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import ImageFile

    def refuse(self: object) -> None:
        raise AssertionError("pixel decode during a header-only scan")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    cat = imgbalance.scan(messy, workers=1)
    assert by_path(cat)["cats/rotated.jpg"].height == 40


def test_links_out_of_the_tree_are_not_followed_unless_asked(tmp_path: Path) -> None:
    """A class folder linked to /etc must not scan (and hash) the machine's files."""
    elsewhere = tmp_path / "elsewhere"
    save(rgb(7), elsewhere / "secret" / "s.png")
    save(rgb(8), elsewhere / "loose.png")
    root = tmp_path / "data"
    save(rgb(1), root / "cats" / "a.png")
    save(rgb(2), root / "cats" / "b.png")
    save(rgb(3), root / "dogs" / "d.png")
    os.symlink(elsewhere / "secret", root / "linked-class")  # a class folder out of the tree
    os.symlink(elsewhere / "secret", root / "cats" / "sub")  # a sub-folder out of the tree
    os.symlink(elsewhere / "loose.png", root / "dogs" / "out.png")  # a file out of the tree
    os.symlink(root / "cats" / "a.png", root / "dogs" / "in.png")  # a link inside: followed
    cat = imgbalance.scan(root, workers=1)
    assert cat.classes == ["cats", "dogs"]
    assert sorted(r.path for r in cat.records) == ["cats/a.png", "cats/b.png", "dogs/d.png",
                                                   "dogs/in.png"]  # fmt: skip
    reasons = {s.path: s.reason for s in cat.skipped}
    for path in ("linked-class", "cats/sub", "dogs/out.png"):
        assert "outside the dataset: not followed" in reasons[path]
        assert "--follow-links" in reasons[path]
    assert str(elsewhere / "secret") in reasons["linked-class"]  # the target is named
    analysis = json.dumps(cat.to_dict())
    secret = hashlib.sha256((elsewhere / "secret" / "s.png").read_bytes()).hexdigest()
    assert secret not in analysis  # nothing from outside was read
    followed = imgbalance.scan(root, workers=1, follow_links=True)
    assert followed.classes == ["cats", "dogs", "linked-class"]
    assert {"cats/sub/s.png", "dogs/out.png", "linked-class/s.png"} <= {
        r.path for r in followed.records
    }
    # a split remembers how its images were found, and reading it finds them again
    from imgbalance.experiments.data import load_split

    imgbalance.write_split(imgbalance.split(followed, near_duplicates=False), tmp_path / "sp")
    summary = json.loads((tmp_path / "sp" / "split_summary.json").read_text())
    assert summary["follow_links"] is True
    assert sum(len(v) for v in load_split(tmp_path / "sp").rows.values()) == len(followed.records)


def test_follow_links_on_the_command_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from imgbalance.cli import app

    save(rgb(7), tmp_path / "elsewhere" / "x.png")
    root = tmp_path / "data"
    save(rgb(1), root / "cats" / "a.png")
    os.symlink(tmp_path / "elsewhere", root / "dogs")
    res = CliRunner().invoke(app, ["analyze", str(root), "--json"])
    assert res.exit_code == 0 and '"dogs"' not in json.dumps(json.loads(res.stdout)["classes"])
    res = CliRunner().invoke(app, ["analyze", str(root), "--json", "--follow-links"])
    assert res.exit_code == 0 and json.loads(res.stdout)["classes"] == ["cats", "dogs"]
