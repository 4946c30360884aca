"""Decoding images the way every imgbalance command sees them.

Formats and extensions, what each Pillow mode becomes on load, EXIF-aware
normalised loading, and a perceptual hash. Header-only inspection of files
lives in :mod:`imgbalance.probe`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import ExifTags, Image, ImageOps

from ..errors import DatasetError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "dhash",
    "load_image",
    "mode_note",
    "no_pillow_pixel_limit",
]

#: torchvision's ``IMG_EXTENSIONS`` plus the other formats Pillow reads well.
IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".ppm",
        ".pgm",
        ".pbm",
        ".bmp",
        ".tif",
        ".tiff",
        ".webp",
        ".gif",
    }
)

#: Extensions that are expected for each Pillow format.
FORMAT_EXTENSIONS: dict[str, frozenset[str]] = {
    "JPEG": frozenset({".jpg", ".jpeg", ".jpe", ".jfif"}),
    "MPO": frozenset({".jpg", ".jpeg", ".jpe", ".mpo"}),
    "PNG": frozenset({".png"}),
    "PPM": frozenset({".ppm", ".pgm", ".pbm", ".pnm"}),
    "BMP": frozenset({".bmp", ".dib"}),
    "TIFF": frozenset({".tif", ".tiff"}),
    "WEBP": frozenset({".webp"}),
    "GIF": frozenset({".gif"}),
}

#: Pillow's own default limit (about 89.5 megapixels); beyond it Pillow warns,
#: beyond twice it refuses to open.
DEFAULT_MAX_PIXELS = 89_478_485

#: What ``load_image`` does to each mode that is not plain RGB or L.
_MODE_NOTES = {
    "1": "1-bit image: converted to 8-bit grayscale (L)",
    "P": "palette image: converted to RGB (transparent palette entries composited on white)",
    "PA": "palette image with alpha: converted to RGB, alpha composited on white",
    "RGBA": "RGBA image: alpha channel composited on white, giving RGB",
    "RGBa": "premultiplied RGBA image: alpha composited on white, giving RGB",
    "LA": "grayscale with alpha: alpha composited on white, giving L",
    "La": "grayscale with premultiplied alpha: alpha composited on white, giving L",
    "CMYK": "CMYK image (often print scans): converted to RGB without colour management",
    "YCbCr": "YCbCr image: converted to RGB",
    "LAB": "CIELAB image: converted to RGB",
    "HSV": "HSV image: converted to RGB",
    "I": "32-bit integer image: rescaled to 8-bit grayscale (precision reduced)",
    "F": "32-bit float image: rescaled to 8-bit grayscale (precision reduced)",
}
for _m in ("I;16", "I;16L", "I;16B", "I;16N"):
    _MODE_NOTES[_m] = "16-bit grayscale image: rescaled to 8-bit grayscale (precision reduced)"


def mode_note(mode: str) -> str | None:
    """Describe how a Pillow mode is converted on load; None for RGB and L."""
    if mode in ("RGB", "L"):
        return None
    return _MODE_NOTES.get(mode, f"mode {mode}: converted to RGB")


@contextlib.contextmanager
def no_pillow_pixel_limit() -> Iterator[None]:
    """Let Pillow open any header: the scan applies its own limit without decoding."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def load_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode an image the way every imgbalance command sees it.

    EXIF orientation is applied; the result is mode ``RGB`` or ``L`` (see
    :func:`mode_note` for each conversion). ``draft`` lets JPEG decode at a
    reduced scale when only a thumbnail of at least that size is needed.
    """
    with no_pillow_pixel_limit(), Image.open(path) as im:
        if im.width * im.height > max_pixels:
            raise DatasetError(f"{path}: {im.width}x{im.height} exceeds {max_pixels:,} pixels")
        if draft is not None and im.format in ("JPEG", "MPO"):
            im.draft(im.mode, draft)
        im.load()
        if im.getexif().get(ExifTags.Base.Orientation, 1) == 1:
            return _normalise(im)  # exif_transpose would return a copy: ~40% of a decode
        return _normalise(ImageOps.exif_transpose(im))


def _normalise(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode in ("RGB", "L"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("RGBA", "RGBa", "PA", "LA", "La"):
        gray = mode in ("LA", "La")
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out = Image.alpha_composite(white, rgba).convert("RGB")
        return out.convert("L") if gray else out
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        scaled = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L")
    return im.convert("RGB")


def dhash(im: Image.Image, size: int = 8) -> int:
    """64-bit difference hash of an image: approximate, robust to re-encoding."""
    small = im.convert("L").resize((size + 1, size), Image.Resampling.BILINEAR)
    arr = np.asarray(small, dtype=np.int16)
    bits = (arr[:, 1:] > arr[:, :-1]).ravel()
    return int(sum(1 << i for i, b in enumerate(bits) if b))
