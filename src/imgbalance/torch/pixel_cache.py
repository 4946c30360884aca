"""Decoded pixels kept on disk, so the runs of a grid decode each set of images once.

Every run of a grid trains or validates on the same splits: without a cache each run
decodes its validation and test images (and, for every technique that trains on the
split as it is, the training images) again. :func:`cached_pixels` is
:func:`~imgbalance.torch.data.load_pixels` with a cache under
``cache_dir()/pixels``: one ``.npy`` file of uint8 pixels per set of images, keyed by
the sha256 of every file's **content** (in order), the size and :data:`VERSION` of the
decoding rules. A file edited since, a copy of a split in another folder, a different
order: the key says. The pixels returned are the decoded ones, byte for byte.

The cache is bounded (``$IMGBALANCE_PIXEL_CACHE_GB``, default 4; ``0`` turns it off):
a set larger than the bound is not stored, and the least recently used files are
removed to stay under it. It is best-effort: a cache file that cannot be read (cut
short, another version) is decoded again and replaced, and a cache that cannot be
written (disk full, read-only) leaves the run as it would be without one. Files are
written through a temporary name; one left by a killed run is removed after an hour.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from .._fs import atomic_path, cache_dir, file_sha256, is_temporary
from .data import load_pixels

__all__ = ["VERSION", "cached_pixels", "pixel_cache_budget", "pixel_set_key"]

#: the decoding rules the cached pixels follow (pixels_of: EXIF, RGB, bilinear squash)
VERSION = 1
_DEFAULT_GB = 4.0
#: a temporary file older than this was left by a writer that was killed (a write takes
#: seconds; a younger one may belong to a run of the same grid writing right now)
_STALE_S = 3600


def pixel_cache_budget() -> int:
    """Bytes the cache may hold (``$IMGBALANCE_PIXEL_CACHE_GB``; 0: no cache)."""
    raw = os.environ.get("IMGBALANCE_PIXEL_CACHE_GB", "")
    try:
        gb = float(raw) if raw.strip() else _DEFAULT_GB
    except ValueError:
        gb = _DEFAULT_GB  # an unreadable setting must not stop a run; the default holds
    return max(0, int(gb * 2**30))


def pixel_set_key(paths: Sequence[str], size: int) -> str | None:
    """The cache key of ``paths`` decoded at ``size``: None when a file cannot be read
    (decoding will name it)."""
    h = hashlib.sha256(f"imgbalance-pixels-v{VERSION}:{size}:{len(paths)}\n".encode())
    for p in paths:
        digest = file_sha256(Path(p))
        if digest is None:
            return None
        h.update(bytes.fromhex(digest))
    return h.hexdigest()


def _read(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        arr: np.ndarray = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if arr.dtype != np.uint8 or arr.shape != shape:
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # most recently used
    return arr


def _store(folder: Path, path: Path, pixels: np.ndarray, budget: int) -> None:
    try:
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            np.save(fh, pixels, allow_pickle=False)
        now = time.time()
        for left in folder.glob(".*.tmp"):
            if is_temporary(left.name) and now - left.stat().st_mtime > _STALE_S:
                left.unlink(missing_ok=True)
        files = sorted(folder.glob("*.npy"), key=lambda f: f.stat().st_mtime_ns)
        total = sum(f.stat().st_size for f in files)
        for old in files:
            if total <= budget:
                break
            if old != path:
                total -= old.stat().st_size
                old.unlink(missing_ok=True)
    except OSError:
        pass  # best-effort: the run has its pixels; the next one decodes again


def cached_pixels(
    paths: Sequence[str],
    size: int,
    *,
    max_bytes: int | None = None,
    threads: int = 2,
    failed: dict[int, str] | None = None,
) -> np.ndarray:
    """:func:`~imgbalance.torch.data.load_pixels`, from the cache when it holds the set.

    With ``failed`` (a dict to fill), a file that cannot be decoded gets a row of zeros
    and ``failed[index] = why`` instead of an error; such a set is not cached."""
    shape = (len(paths), 3, size, size)
    need = int(np.prod(shape))
    budget = pixel_cache_budget()
    load = partial(load_pixels, paths, size, max_bytes=max_bytes, threads=threads, failed=failed)
    if not paths or need > budget or (max_bytes is not None and need > max_bytes):
        return load()
    key = pixel_set_key(paths, size)
    if key is None:
        return load()
    folder = cache_dir() / "pixels"
    path = folder / f"{key}.npy"
    hit = _read(path, shape)
    if hit is not None:
        return hit
    pixels = load()
    if not failed:
        _store(folder, path, pixels, budget)
    return pixels
