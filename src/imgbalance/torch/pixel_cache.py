"""Decoded pixels kept on disk, so the runs of a grid decode each set of images once.

Every run of a grid trains or validates on the same splits: without a cache each run
decodes its validation and test images (and, for every technique that trains on the
split as it is, the training images) again. :func:`cached_pixels` is
:func:`~imgbalance.torch.data.load_pixels` with a cache under
``cache_dir()/pixels``: one ``.npy`` file of uint8 pixels per set of images, keyed by
the sha256 of every file's **content** (in order), the size and :data:`VERSION` of the
decoding rules. A file edited since, a copy of a split in another folder, a different
order: the key says. The pixels returned are the decoded ones, byte for byte.

A streamed set (too large for memory) uses the same files through
:func:`streamed_pixels`: a complete file is memory-mapped and its rows read as the
batches ask, and a missing one is filled by a :class:`PixelFiller` as the first epoch
decodes, so later epochs and later runs do not decode again.

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
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from .._fs import atomic_path, cache_dir, file_sha256, is_temporary
from .data import load_pixels

__all__ = [
    "VERSION",
    "CachedRows",
    "PixelFiller",
    "cached_pixels",
    "pixel_cache_budget",
    "pixel_set_key",
    "streamed_pixels",
]

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


def pixel_set_key(
    paths: Sequence[str], size: int, digests: Sequence[str] | None = None
) -> str | None:
    """The cache key of ``paths`` decoded at ``size``: None when a file cannot be read
    (decoding will name it). ``digests`` (each file's sha256, from the scan) spare
    reading the files again; one that is not a sha256 is read from its file."""
    h = hashlib.sha256(f"imgbalance-pixels-v{VERSION}:{size}:{len(paths)}\n".encode())
    for i, p in enumerate(paths):
        known = digests[i] if digests is not None else ""
        digest = known if re.fullmatch(r"[0-9a-f]{64}", known) else file_sha256(Path(p))
        if digest is None:
            return None
        h.update(bytes.fromhex(digest))
    return h.hexdigest()


def _read(path: Path, shape: tuple[int, ...], *, mapped: bool = False) -> np.ndarray | None:
    """The cached set at ``path`` if it has ``shape`` (memory-mapped with ``mapped``)."""
    try:
        arr: np.ndarray = np.load(path, mmap_mode="r" if mapped else None, allow_pickle=False)
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
        _evict(folder, path, budget)
    except OSError:
        pass  # best-effort: the run has its pixels; the next one decodes again


def _evict(folder: Path, keep: Path, budget: int) -> None:
    """Remove a killed writer's temporaries, then the least recently used sets but
    ``keep`` until the cache is within ``budget``."""
    now = time.time()
    for left in folder.glob(".*.tmp"):
        if is_temporary(left.name) and now - left.stat().st_mtime > _STALE_S:
            left.unlink(missing_ok=True)
    files = sorted(folder.glob("*.npy"), key=lambda f: f.stat().st_mtime_ns)
    total = sum(f.stat().st_size for f in files)
    for old in files:
        if total <= budget:
            break
        if old != keep:
            total -= old.stat().st_size
            old.unlink(missing_ok=True)


class PixelFiller:
    """A streamed set's cache file, written row by row as its images are first decoded
    (a memory-mapped ``.npy`` under a temporary name, its space allocated up front, so a
    full disk is an ``OSError`` here and never a SIGBUS later); complete and without a
    failed image, it is renamed into place."""

    def __init__(self, final: Path, shape: tuple[int, ...]) -> None:
        self.final = final
        self.tmp = final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.arr: np.ndarray = np.lib.format.open_memmap(
                self.tmp, mode="w+", dtype=np.uint8, shape=shape
            )
            fd = os.open(self.tmp, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
            finally:
                os.close(fd)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        self.filled = np.zeros(shape[0], dtype=bool)
        self.missing = shape[0]  # rows not written yet (asked per image: not filled.all())
        self.failed = False
        self.done = False

    @property
    def complete(self) -> bool:
        return not self.failed and self.missing == 0

    def put(self, row: int, pixels: np.ndarray) -> None:
        self.arr[row] = pixels
        if not self.filled[row]:
            self.filled[row] = True
            self.missing -= 1

    def finish(self, budget: int) -> None:
        """Rename a complete file into place (evicting older sets), else remove it; once."""
        if self.done:
            return
        self.done = True
        try:
            if self.complete:
                self.arr.flush()  # type: ignore[attr-defined]
                os.replace(self.tmp, self.final)
                _evict(self.final.parent, self.final, budget)
        except OSError:
            pass  # best-effort, as every write of the cache
        finally:
            self.tmp.unlink(missing_ok=True)


@dataclass
class CachedRows:
    """Where a streamed set's images come from besides their files: the rows of its
    cached pixels (``store``, memory-mapped: read as needed, never all in memory), or of
    the ``filler`` that writes them as they are first decoded. ``rows[i]`` is the cache
    row of the batches' image ``i`` (an ensemble member streams a subset of the set)."""

    store: np.ndarray | None
    filler: PixelFiller | None
    rows: np.ndarray

    def subset(self, idx: np.ndarray) -> CachedRows:
        return CachedRows(self.store, self.filler, self.rows[idx])

    def get(self, i: int) -> np.ndarray | None:
        """Image ``i``'s pixels from the cache, or None when it has to be decoded."""
        if self.store is None and self.filler is not None and self.filler.complete:
            self.store = self.filler.arr  # every row written: later epochs read, not decode
        return None if self.store is None else np.array(self.store[self.rows[i]])

    def put(self, i: int, pixels: np.ndarray | str) -> None:
        """Record image ``i`` as decoded (an error message: the set is not cached)."""
        if self.filler is None or self.filler.complete:
            return
        if isinstance(pixels, str):
            self.filler.failed = True
        else:
            self.filler.put(int(self.rows[i]), pixels)

    def finish(self) -> None:
        if self.filler is not None:
            self.filler.finish(pixel_cache_budget())


def streamed_pixels(
    paths: Sequence[str], size: int, digests: Sequence[str] | None = None
) -> CachedRows | None:
    """The pixel cache of a streamed set: its cached pixels memory-mapped, or a filler
    for them; None when the cache is off, the set exceeds its bound or cannot be keyed.
    ``digests`` (each file's sha256, from the scan) spare reading every file again."""
    shape = (len(paths), 3, size, size)
    budget = pixel_cache_budget()
    if not paths or int(np.prod(shape)) > budget:
        return None
    key = pixel_set_key(paths, size, digests)
    if key is None:
        return None
    path = cache_dir() / "pixels" / f"{key}.npy"
    rows = np.arange(len(paths))
    store = _read(path, shape, mapped=True)
    if store is not None:
        return CachedRows(store, None, rows)
    try:
        return CachedRows(None, PixelFiller(path, shape), rows)
    except OSError:  # a full disk, a read-only cache: the run decodes, as without one
        return None


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
