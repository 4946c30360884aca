"""Contact sheets: rows of thumbnails with captions, drawn with Pillow.

The preview of ``balance`` and the samples of ``analyze`` are grids of pictures, not
charts: drawn here, every thumbnail keeps its pixels (a small one is enlarged by a whole
factor). matplotlib resampled each into an axes of its own, and building, laying out
and saving 30 axes cost ~1 CPU-s, most of a 2,000-image job's plots. Text uses DejaVu
Sans, matplotlib's font (found without importing matplotlib), else Pillow's default font.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .._fs import atomic_write_bytes
from ..rendering.png import encode_png

__all__ = ["Panel", "contact_sheet", "save_sheet"]

_FRAME = (85, 168, 104)  # #55A868, the "after" green of the distribution chart
_INK = (0, 0, 0)
_GREY = (110, 110, 110)
_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class Panel:
    """One cell: a picture (None: ``caption`` is written in its place), framed or not."""

    image: Image.Image | None
    caption: str = ""
    framed: bool = False


@lru_cache(maxsize=8)
def _font(size: int) -> _Font:
    spec = importlib.util.find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder, "mpl-data", "fonts", "ttf", "DejaVuSans.ttf")
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


def _width(font: _Font, text: str) -> int:
    return int(np.ceil(font.getlength(text))) if text else 0


def contact_sheet(
    rows: list[tuple[str, list[Panel | None]]], title: str, thumb: int = 128
) -> Image.Image:
    """An RGB sheet: ``title`` on top, then one row per ``(label, panels)``, each panel's
    picture shrunk to fit ``thumb`` x ``thumb``, or a small one enlarged by a whole factor
    (nearest neighbour: its own pixels, only bigger), under its caption; a
    ``None`` panel leaves its cell empty. Same rows, same pixels."""
    small, label_font, title_font = _font(11), _font(12), _font(13)
    cols = max((len(p) for _, p in rows), default=0)
    label_w = max((_width(label_font, ln) for lab, _ in rows for ln in lab.split("\n")), default=0)
    pad, gap, title_h, frame = 10, 12, 34, 3
    cap_h = 16 if any(p and p.caption and p.image for _, ps in rows for p in ps) else 4
    left = pad + label_w + (gap if label_w else 0)
    cell_w, cell_h = thumb + gap, cap_h + thumb + gap
    size = (max(left + cols * cell_w - gap + pad, _width(title_font, title) + 2 * pad),
            title_h + len(rows) * cell_h + pad)  # fmt: skip
    sheet = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((size[0] // 2, pad), title, fill=_INK, font=title_font, anchor="mt")
    for r, (label, panels) in enumerate(rows):
        y = title_h + r * cell_h
        draw.multiline_text((left - gap, y + cap_h + thumb // 2), label, fill=_INK,
                            font=label_font, anchor="rm", align="right")  # fmt: skip
        for c, panel in enumerate(panels):
            if panel is None:
                continue
            x = left + c * cell_w
            cx = x + thumb // 2
            if panel.image is None:
                draw.text((cx, y + cap_h + thumb // 2), panel.caption, fill=_GREY, font=small,
                          anchor="mm")  # fmt: skip
                continue
            im = panel.image.convert("RGB")
            im.thumbnail((thumb, thumb))
            k = thumb // max(im.size)
            if k > 1:  # a small image (digits, CIFAR) grows by a whole factor, pixels kept
                im = im.resize((im.width * k, im.height * k), Image.Resampling.NEAREST)
            ix, iy = cx - im.width // 2, y + cap_h + (thumb - im.height) // 2
            sheet.paste(im, (ix, iy))
            if panel.framed:
                x1, y1 = ix + im.width - 1 + frame, iy + im.height - 1 + frame
                draw.rectangle((ix - frame, iy - frame, x1, y1), outline=_FRAME, width=frame)
            if panel.caption:
                draw.text((cx, iy - frame - 1), panel.caption, fill=_INK, font=small, anchor="mb")
    return sheet


def save_sheet(sheet: Image.Image, path: Path) -> None:
    """Write ``sheet`` as a PNG atomically (imgbalance's fast lossless writer)."""
    atomic_write_bytes(path, encode_png(np.asarray(sheet.convert("RGB"))))
