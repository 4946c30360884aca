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

from .._options import option
from ..dataset.images import load_image
from ..errors import DatasetError
from .png import encode_png

__all__ = ["RenderJob", "RenderOptions", "output_extension", "render_recipe"]

_FORMAT_EXT = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png"}
#: decoded parents kept per worker process: a class of ~750 parents of 240 px RGB
_CACHE_BYTES = 32 << 20
_RESIZED_BYTES = 8 << 20


@dataclass(frozen=True)
class RenderOptions:
    """How synthetic images are encoded."""

    format: str = "keep"  # keep | png | jpg | webp (lossless, smaller files than png)
    jpeg_quality: int = 95
    #: "fast" (imgbalance's writer, :mod:`.png`) or a zlib level 0-9 for Pillow's encoder
    png_compress_level: int | str = "fast"
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
    if opts.format == "webp":
        return ".webp"
    return _FORMAT_EXT.get(base_format or "", ".png")


#: (path, modification time, size in bytes, mode): a file changed since it was cached (a
#: notebook that re-balances after editing images) has another key and is read again
FileKey = tuple[str, int, int, str]


def _file_key(path: str, mode: str) -> FileKey:
    st = os.stat(path)
    return (path, st.st_mtime_ns, st.st_size, mode)


class _PixelCache:
    """Least-recently-used decoded parents, bounded in bytes (one per worker process).

    :data:`_CACHE` is keyed by the file (and, with ``image_size``, that one fixed size):
    a parent is decoded once and serves every recipe that needs it while it stays in
    the cache. Neighbours resized to a base parent's size live in their own small
    cache (:data:`_RESIZED`): kept with the decoded files, they evicted them (1,341
    decodes of 811 distinct parents in one process on a 2,000-image SMOTE job, against
    975 now, counted by :attr:`decodes`).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.items: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self.bytes = 0
        self.decodes = 0  # files decoded by this process (read by the benchmarks)

    def _hit(self, key: tuple[Any, ...]) -> np.ndarray | None:
        arr = self.items.get(key)
        if arr is not None:
            self.items.move_to_end(key)
        return arr

    def _keep(self, key: tuple[Any, ...], arr: np.ndarray) -> np.ndarray:
        arr.flags.writeable = False  # shared by later recipes
        self.items[key] = arr
        self.bytes += arr.nbytes
        while self.bytes > self.max_bytes and len(self.items) > 1:
            _, old = self.items.popitem(last=False)
            self.bytes -= old.nbytes
        return arr

    def get(self, file: FileKey, size: tuple[int, int] | None = None) -> np.ndarray:
        """Pixels of ``file`` in its mode, at native size or resized to the fixed ``size``."""
        key = (*file, size)
        arr = self._hit(key)
        if arr is None:
            path, _, _, mode = file
            try:
                image = load_image(path).convert(mode)
            except FileNotFoundError:
                raise  # balance names a file that vanished since the plan
            except (OSError, SyntaxError, ValueError) as exc:  # Pillow: truncated, corrupt
                raise DatasetError(
                    f'"{path}" was decoded when the plan was made and cannot be now ({exc}): '
                    f"it changed since. Restore it, or plan again (run it again; with "
                    f"{option('overwrite', True)} if the output exists)."
                ) from None
            self.decodes += 1
            if size is not None and image.size != size:
                image = image.resize(size, Image.Resampling.BILINEAR)
            arr = self._keep(key, np.asarray(image))
        return arr

    def resized(self, file: FileKey, size: tuple[int, int], native: np.ndarray) -> np.ndarray:
        """``native`` (the pixels of ``file``) resized to ``size``, bilinear."""
        key = (*file, size)
        arr = self._hit(key)
        if arr is None:
            image = Image.fromarray(native).resize(size, Image.Resampling.BILINEAR)
            arr = self._keep(key, np.asarray(image))
        return arr


_CACHE = _PixelCache(_CACHE_BYTES)


#: neighbours resized to a base parent's size: jobs run sorted by their parents, so the
#: recipes that repeat a (base, neighbour) pair are next to each other and a few suffice
_RESIZED = _PixelCache(_RESIZED_BYTES)


def _parent(path: str, mode: str, size: tuple[int, int], opts: RenderOptions) -> np.ndarray:
    """A parent's pixels at ``size``: decoded once (the cache of files), resized to the
    base parent's size when that differs (bilinear) and kept apart, so resized copies
    never evict decoded parents."""
    file = _file_key(path, mode)
    if opts.image_size is not None:
        return _CACHE.get(file, opts.image_size)
    native = _CACHE.get(file)
    if native.shape[1::-1] == size:  # (h, w[, c]) -> (w, h)
        return native
    return _RESIZED.resized(file, size, native)


def render_recipe(job: RenderJob, opts: RenderOptions) -> bytes:
    """Bytes of the image ``job`` describes (pure: same job, same files, same bytes)."""
    if job.op == "copy" and opts.image_size is None:
        with open(job.parents[0], "rb") as fh:
            return fh.read()
    if opts.image_size is None:
        base = _CACHE.get(_file_key(job.parents[0], job.mode))
        size = (base.shape[1], base.shape[0])
    else:
        size = opts.image_size
    if job.op == "augment":
        if job.augment is None:
            raise ValueError(f"augment recipe for {job.out} has no parameters")
        from ..planning.augment import apply_augment

        parent = Image.fromarray(_parent(job.parents[0], job.mode, size, opts))
        return _encode(apply_augment(parent, job.augment), job.out, opts)
    acc: np.ndarray | None = None
    term: np.ndarray | None = None
    for path, weight in zip(job.parents, job.weights, strict=True):
        pixels8 = _parent(path, job.mode, size, opts)  # uint8: into float32 directly is ~9x faster
        if acc is None:
            acc = np.multiply(pixels8, np.float32(weight), dtype=np.float32)
            term = np.empty_like(acc)
        else:
            np.multiply(pixels8, np.float32(weight), out=term, dtype=np.float32)
            acc += term
    if acc is None:
        raise ValueError(f"recipe for {job.out} has no parents")
    np.rint(acc, out=acc)  # round to nearest (half to even), never truncate
    if not _convex(job.weights):  # a convex blend of uint8 stays within [0, 255]
        np.clip(acc, 0, 255, out=acc)
    return _encode(acc.astype(np.uint8), job.out, opts)


def _convex(weights: tuple[float, ...]) -> bool:
    """True when a blend of uint8 pixels cannot leave [0, 255]: no negative weight and a
    float32 sum of at most 1.001 (255 * 1.001 < 255.5, so the rounded value is at most
    255). Every method's recipes are convex; skipping the clip saves one of the blend's
    six passes over the pixels."""
    return min(weights) >= 0 and sum(np.float32(w) for w in weights) <= 1.001


def _encode(picture: Image.Image | np.ndarray, out: str, opts: RenderOptions) -> bytes:
    # RGB or L (the kernel converts every parent); a palette's indices are not grey
    fast = opts.png_compress_level == "fast" and out.endswith(".png")
    if fast and (not isinstance(picture, Image.Image) or picture.mode in ("RGB", "L")):
        pixels = np.asarray(picture)
        if pixels.dtype == np.uint8 and (pixels.ndim == 2 or pixels.shape[-1] == 3):
            return encode_png(pixels)
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    buf = io.BytesIO()
    if out.endswith(".jpg"):
        image.save(buf, format="JPEG", quality=opts.jpeg_quality)
    elif out.endswith(".webp"):
        # lossless, fastest method: files 15-25% smaller than the fast PNG writer's, up to
        # ~3x slower to write (benchmarks/README.md); a gray image is stored as equal RGB
        image.save(buf, format="WEBP", lossless=True, method=0)
    else:
        level = opts.png_compress_level
        image.save(buf, format="PNG", compress_level=level if isinstance(level, int) else 1)
    return buf.getvalue()
