"""Contact sheets (the preview of ``balance``, the samples of ``analyze``), drawn by Pillow."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

import imgbalance
from imgbalance.reports.sheet import Panel, contact_sheet, save_sheet

GREEN = np.array([85, 168, 104])


def _solid(colour: tuple[int, int, int], size: tuple[int, int]) -> Image.Image:
    return Image.new("RGB", size, colour)


def _greens(a: np.ndarray) -> int:
    return int((np.abs(a.astype(int) - GREEN).sum(-1) == 0).sum())


def test_panels_are_pasted_at_their_pixels_and_framed() -> None:
    red, blue = _solid((255, 0, 0), (40, 20)), _solid((0, 0, 255), (300, 150))
    sheet = contact_sheet([("a", [Panel(red, "w=0.70"), Panel(blue, "smote", framed=True)])], "t")
    a = np.asarray(sheet)
    assert sheet.mode == "RGB"
    assert (np.all(a == (255, 0, 0), axis=-1)).sum() == 120 * 60  # small: 3x, whole pixels
    assert (np.all(a == (0, 0, 255), axis=-1)).sum() == 128 * 64  # large: shrunk to fit
    ys, xs = np.nonzero(np.all(a == GREEN, axis=-1))
    by, bx = np.nonzero(np.all(a == (0, 0, 255), axis=-1))
    # a 3-pixel frame just outside the framed picture, and only there
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (
        bx.min() - 3, bx.max() + 3, by.min() - 3, by.max() + 3)  # fmt: skip
    assert _greens(a) == (128 + 6) * (64 + 6) - 128 * 64


def test_rows_missing_panels_unreadable_cells_and_unicode_labels() -> None:
    im = _solid((9, 9, 9), (32, 32))
    rows: list[tuple[str, list[Panel | None]]] = [
        ("Ünïcödé ;'\" класс", [Panel(im), None, Panel(None, "unreadable")]),
        ("b\n(3)", [Panel(im.convert("L"))]),
    ]
    one, two = contact_sheet(rows, "samples"), contact_sheet(rows, "samples")
    assert one.tobytes() == two.tobytes()  # same rows, same pixels
    taller = contact_sheet([*rows, ("c", [Panel(im)])], "samples")
    assert taller.width == one.width and taller.height > one.height
    assert _greens(np.asarray(one)) == 0


def test_save_sheet_is_a_lossless_png(tmp_path: Path) -> None:
    sheet = contact_sheet([("x", [Panel(_solid((1, 2, 3), (50, 60)), "cap")])], "title")
    save_sheet(sheet, tmp_path / "s.png")
    back = Image.open(tmp_path / "s.png")
    assert back.format == "PNG" and np.array_equal(np.asarray(back), np.asarray(sheet))
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]  # no temporary left


def test_balance_preview_frames_one_synthetic_per_pick(balanced_tree: Path, tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        imgbalance.balance(balanced_tree, tmp_path / name, "smote", random_state=4, workers=1)
        outs.append((tmp_path / name / "preview.png").read_bytes())
    assert outs[0] == outs[1]  # same seed, same bytes
    with open(tmp_path / "a" / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["origin"] == "synthetic" and r["op"] != "copy"]
    classes = {r["class"] for r in rows}
    per_class = {c: min(2, sum(r["class"] == c for r in rows)) for c in classes}
    a = np.asarray(Image.open(tmp_path / "a" / "preview.png").convert("RGB"))
    # one green frame per pick: count the frames' outer top-left corners
    green = np.zeros((a.shape[0] + 1, a.shape[1] + 1), bool)
    green[1:, 1:] = np.all(a == GREEN, axis=-1)
    corners = green[1:, 1:] & ~green[:-1, 1:] & ~green[1:, :-1]
    assert int(corners.sum()) == sum(per_class.values()) > 0
