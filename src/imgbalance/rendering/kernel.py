"""Rendering recipes at full resolution.

``render_recipe`` is a pure function of a recipe and its parent files: parents
are decoded (EXIF orientation applied), converted to the class's mode (RGB or
L, see :func:`imgbalance.images.load_image` for alpha, palette and 16-bit),
resized to the base parent's size (or ``image_size``; bilinear), blended in
float32 and rounded to the nearest integer. ``copy`` recipes return the parent's bytes
unchanged. The local pool (:mod:`.pool`) and Ray (:mod:`.ray`) both run this kernel.
"""

from __future__ import annotations

import io
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..dataset.images import load_image

__all__ = ["RenderJob", "RenderOptions", "output_extension", "render_recipe"]

_FORMAT_EXT = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png"}
_CACHE_BYTES = 32 << 20  # decoded parents kept per worker (parents repeat across recipes)


@dataclass(frozen=True)
class RenderOptions:
    """How synthetic images are encoded."""

    format: str = "keep"  # keep | png | jpg
    jpeg_quality: int = 95
    png_compress_level: int = 1  # Pillow's default 6 is ~4x slower for ~10% smaller files
    image_size: tuple[int, int] | None = None  # (width, height); None keeps native size


@dataclass(frozen=True)
class RenderJob:
    """One output file: where it goes and how to make it."""

    index: int
    out: str  # path relative to the output root
    op: str
    parents: tuple[str, ...]  # absolute paths of the original files
    weights: tuple[float, ...]
    mode: str  # RGB or L
    augment: dict[str, Any] | None = None  # drawn parameters of an ``augment`` recipe


def output_extension(base_format: str | None, opts: RenderOptions) -> str:
    """File extension of a rendered image whose base parent has ``base_format``."""
    if opts.format == "png":
        return ".png"
    if opts.format == "jpg":
        return ".jpg"
    return _FORMAT_EXT.get(base_format or "", ".png")


class _PixelCache:
    """Least-recently-used parent pixels, bounded in bytes (one per worker process)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.items: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self.bytes = 0

    def get(self, path: str, mode: str, size: tuple[int, int] | None) -> np.ndarray:
        """Pixels of ``path`` in ``mode``, resized to ``size`` (None: native size).

        The key holds the file's size and modification time, so a file changed since it
        was cached (a notebook that re-balances after editing images) is decoded again.
        """
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size, mode, size)
        arr = self.items.get(key)
        if arr is not None:
            self.items.move_to_end(key)
            return arr
        if size is None:
            arr = np.asarray(load_image(path).convert(mode))
        else:
            native = self.get(path, mode, None)
            if native.shape[1::-1] == size:  # (h, w[, c]) -> (w, h)
                return native
            resized = Image.fromarray(native).resize(size, Image.Resampling.BILINEAR)
            arr = np.asarray(resized)
        arr.flags.writeable = False  # shared by later recipes
        self.items[key] = arr
        self.bytes += arr.nbytes
        while self.bytes > self.max_bytes and len(self.items) > 1:
            _, old = self.items.popitem(last=False)
            self.bytes -= old.nbytes
        return arr


_CACHE = _PixelCache(_CACHE_BYTES)


def render_recipe(job: RenderJob, opts: RenderOptions) -> bytes:
    """Bytes of the image ``job`` describes (pure: same job, same files, same bytes)."""
    if job.op == "copy" and opts.image_size is None:
        with open(job.parents[0], "rb") as fh:
            return fh.read()
    base = _CACHE.get(job.parents[0], job.mode, None)
    size = opts.image_size or (base.shape[1], base.shape[0])
    if job.op == "augment":
        if job.augment is None:
            raise ValueError(f"augment recipe for {job.out} has no parameters")
        from ..planning.augment import apply_augment

        parent = Image.fromarray(_CACHE.get(job.parents[0], job.mode, size))
        return _encode(apply_augment(parent, job.augment), job.out, opts)
    acc: np.ndarray | None = None
    term: np.ndarray | None = None
    for path, weight in zip(job.parents, job.weights, strict=True):
        pixels8 = _CACHE.get(path, job.mode, size)  # uint8: into float32 directly is ~9x faster
        if acc is None:
            acc = np.multiply(pixels8, np.float32(weight), dtype=np.float32)
            term = np.empty_like(acc)
        else:
            np.multiply(pixels8, np.float32(weight), out=term, dtype=np.float32)
            acc += term
    if acc is None:
        raise ValueError(f"recipe for {job.out} has no parents")
    np.rint(acc, out=acc)  # round to nearest (half to even), never truncate
    np.clip(acc, 0, 255, out=acc)
    pixels = acc.astype(np.uint8)
    return _encode(Image.fromarray(pixels), job.out, opts)


def _encode(image: Image.Image, out: str, opts: RenderOptions) -> bytes:
    buf = io.BytesIO()
    if out.endswith(".jpg"):
        image.save(buf, format="JPEG", quality=opts.jpeg_quality)
    else:
        image.save(buf, format="PNG", compress_level=opts.png_compress_level)
    return buf.getvalue()
