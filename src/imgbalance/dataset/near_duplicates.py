"""Near duplicates: resized, re-encoded or slightly cropped copies of one picture.

A split with one copy in train and another in test measures memory, not
generalisation. Byte-identical files are joined by their sha256; this module
finds the other copies from their pixels, in two stages.

1. **Candidates.** Every image is decoded once (JPEGs in draft mode, at an
   eighth of their size or less) to a ``THUMB`` x ``THUMB`` grayscale
   thumbnail. Its 8x8 block means, centred and scaled to unit length, are a
   64-number perceptual key: a dHash without the one-bit rounding, which makes
   a 5 % crop flip up to 14 of dHash's 64 bits. All keys are compared with all,
   one matrix product per block of rows; each image keeps as candidates its
   ``NEIGHBOURS`` closest others with a key correlation of at least
   ``CANDIDATE_MIN`` and an aspect ratio within ``MAX_ASPECT`` of its own.
   (The scan's optional dHash is not used for this: it misses crops.)
2. **Confirmation.** Each candidate pair is aligned, then compared. Each of the
   four sides of the common window may be cut from either image by up to
   ``MAX_CROP`` of its size (a crop, a shifted crop, an added border); the cuts
   are searched one axis at a time over a grid, coarse at 16 px, then finer at
   32 px. The pair is a near duplicate when the Pearson correlation of the two
   aligned 32x32 thumbnails is at least ``THRESHOLD``; pixels dark in both
   (below ``_DARK`` of 255: the black around a scan) do not count, so that two
   slices are compared by what is inside the head, not by its outline. A flat
   image (no structure to compare) is nobody's near duplicate.

The thresholds come from 2,256 copies made of photographs of two real sets
(white blood cells, banana leaves) and of synthetic brain-like slices (one
silhouette on black, different inside), and from pairs of different images:

- resized to 50 %, or re-encoded at JPEG quality 40: 0.998 and more;
- cropped 3 % or 5 % (one side, centred, a corner): 0.970 and more (8 % off
  one side: 0.974);
- the same blood cell or leaf in two real files: 0.971 to 0.996;
- the closest different cells or leaves in those sets: 0.962 at most;
- different brain-like slices, 50,000 of them: 0.899 at most (0.969 with the
  black counted);

so ``THRESHOLD`` = 0.965. Those copies keep a key correlation of 0.79 or
more (``CANDIDATE_MIN`` = 0.70), and among 4,000 brain-like slices, which all
look alike at 8x8, a copy was its original's first neighbour every time
(``NEIGHBOURS`` = 5 leaves room for a few views of one scene). A pair below
``COARSE_MIN`` after the coarse search is not refined: no copy scored under
0.94 there. Mostly black images with different small bright spots, whose
dHashes differ in 4 bits, are not even candidates.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import partial

import numpy as np
from PIL import Image

from .._procs import process_pool
from .images import DEFAULT_MAX_PIXELS, load_image

__all__ = ["THRESHOLD", "candidate_pairs", "find_near_duplicates", "pair_similarity", "thumbnails"]

THUMB = 48  # side of the grayscale thumbnail kept per image (2.3 kB)
KEY = 8  # side of the candidate key
COARSE, FINE = 16, 32  # sides at which pairs are aligned
MAX_CROP = 0.10  # the most cut from one side of one image, as a fraction of its size
THRESHOLD = 0.965
CANDIDATE_MIN = 0.70
COARSE_MIN = 0.90
NEIGHBOURS = 5
MAX_ASPECT = 1.3
_FLAT = 0.5  # a thumbnail whose gray levels vary less than this (std) is flat
_DARK = 20.0  # gray level (of 255) below which a pixel dark in both images is background
_CHUNK = 64  # chunks of columns a row's closest keys are looked for in
_BLOCK_CELLS = 1 << 23  # key similarities computed at once (32 MB)
_PAIR_BATCH = 1024  # pairs aligned at once (coarse)
_FINE_BATCH = 256  # and refined at once
_PARALLEL_MIN_FILES = 256  # below this, starting processes costs more than it saves
_BATCH = 128  # files per task sent to a worker process
_COARSE_LEVELS = ((MAX_CROP, 5), (MAX_CROP / 4, 3))  # (step, points)
_FINE_LEVELS = ((MAX_CROP / 8, 3), (MAX_CROP / 20, 3))


def _thumbnail(path: str, max_pixels: int) -> tuple[np.ndarray, float] | None:
    try:
        im = load_image(path, max_pixels=max_pixels, draft=(2 * THUMB, 2 * THUMB))
    except Exception:  # the scan judges files; one that fails here is compared with none
        return None
    small = im.convert("L").resize((THUMB, THUMB), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.uint8), im.width / im.height


def _thumbnail_batch(paths: list[str], max_pixels: int) -> list[tuple[np.ndarray, float] | None]:
    return [_thumbnail(p, max_pixels) for p in paths]


def thumbnails(
    paths: Sequence[str], *, max_pixels: int = DEFAULT_MAX_PIXELS, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode each file once to a ``THUMB`` x ``THUMB`` grayscale thumbnail.

    Returns ``(thumbs, aspect)``: uint8 ``(n, THUMB, THUMB)`` and each image's
    width / height, NaN where the file could not be decoded (its thumbnail is 0).
    ``workers`` processes decode (default: the CPU count, at most 8).
    """
    work = partial(_thumbnail_batch, max_pixels=max_pixels)
    batches = [list(paths[i : i + _BATCH]) for i in range(0, len(paths), _BATCH)]
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    if workers <= 1 or len(paths) < _PARALLEL_MIN_FILES:
        results = [work(b) for b in batches]
    else:
        with process_pool(workers) as pool:
            results = list(pool.map(work, batches))
    thumbs = np.zeros((len(paths), THUMB, THUMB), dtype=np.uint8)
    aspect = np.full(len(paths), np.nan)
    for i, got in enumerate(t for batch in results for t in batch):
        if got is not None:
            thumbs[i], aspect[i] = got
    return thumbs, aspect


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Each image flattened, centred and scaled to unit length; flat ones all zero."""
    flat = x.reshape(len(x), -1).astype(np.float32)
    flat -= flat.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(flat, axis=1, keepdims=True)
    unit: np.ndarray = np.divide(
        flat, norm, out=np.zeros_like(flat), where=norm > _FLAT * math.sqrt(flat.shape[1])
    )
    return unit


def _shrink(thumbs: np.ndarray, side: int) -> np.ndarray:
    """Block means: ``(n, THUMB, THUMB)`` to ``(n, side, side)`` float32."""
    k = THUMB // side
    means: np.ndarray = thumbs.reshape(len(thumbs), side, k, side, k).mean(
        axis=(2, 4), dtype=np.float32
    )
    return means


def candidate_pairs(
    thumbs: np.ndarray,
    aspect: np.ndarray,
    *,
    neighbours: int = NEIGHBOURS,
    minimum: float = CANDIDATE_MIN,
) -> np.ndarray:
    """Index pairs ``(i, j)``, ``i < j``, sorted, worth confirming (see the module notes).

    Each block of rows is one matrix product with every key; a row's closest
    others are found among the ``neighbours`` chunks of its columns with the
    highest maxima (they hold them all), so no full row is ever sorted.
    """
    n, g = len(thumbs), _CHUNK
    width = -(-n // g) * g
    keys = np.zeros((width, KEY * KEY), dtype=np.float32)  # padding rows match nothing
    keys[:n] = _unit_rows(_shrink(thumbs, KEY))
    log_aspect = np.log(np.where(np.isnan(aspect), 1.0, aspect))
    far = math.log(MAX_ASPECT)
    mixed = n > 1 and float(np.ptp(log_aspect)) > far
    take = min(neighbours, width // g)
    found = [np.empty((0, 2), dtype=np.int64)]
    rows = max(1, _BLOCK_CELLS // width)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        b = stop - start
        sim = keys[start:stop] @ keys.T
        sim[np.arange(b), np.arange(start, stop)] = -1.0
        if mixed:
            sim[:, :n][np.abs(log_aspect[start:stop, None] - log_aspect[None, :]) > far] = -1.0
        chunks = sim.reshape(b, g, width // g)  # chunk c: the columns c, c + width/g, ...
        best = np.argpartition(chunks.max(axis=1), -take, axis=1)[:, -take:]
        pool = np.take_along_axis(chunks, best[:, None, :], axis=2).reshape(b, g * take)
        cols = (np.arange(g)[None, :, None] * (width // g) + best[:, None, :]).reshape(b, -1)
        top = np.argpartition(pool, -neighbours, axis=1)[:, -neighbours:]
        keep = np.take_along_axis(pool, top, axis=1) >= minimum
        j = np.take_along_axis(cols, top, axis=1)[keep]
        i = np.broadcast_to(np.arange(start, stop)[:, None], keep.shape)[keep]
        found.append(np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1))
    return np.unique(np.concatenate(found), axis=0)


def _resampler(lo: np.ndarray, hi: np.ndarray, n: int, m: int) -> np.ndarray:
    """``(P, n, m)`` linear interpolation: n samples over ``[lo, hi]`` of m pixels
    (outside ``[0, 1]`` the edge pixel repeats)."""
    u = lo[:, None] + (np.arange(n) + 0.5) / n * (hi - lo)[:, None]
    x = np.clip(u * m - 0.5, 0.0, m - 1.0)
    left = np.minimum(x.astype(np.int64), m - 2)
    frac = (x - left).astype(np.float32)
    out = np.zeros((len(lo), n, m), dtype=np.float32)
    p, r = np.arange(len(lo))[:, None], np.arange(n)[None, :]
    out[p, r, left] = 1.0 - frac
    out[p, r, left + 1] = frac
    return out


def _warp(x: np.ndarray, window: np.ndarray, size: int) -> np.ndarray:
    """``x`` ``(P, m, m)`` resampled to ``size`` px over ``window`` ``(P, 4)``."""
    m = x.shape[-1]
    rows = _resampler(window[:, 2], window[:, 3], size, m) @ x
    out: np.ndarray = rows @ _resampler(window[:, 0], window[:, 1], size, m).transpose(0, 2, 1)
    return out


def _search(
    a: np.ndarray,
    b: np.ndarray,
    window: np.ndarray,
    size: int,
    levels: Sequence[tuple[float, int]],
) -> np.ndarray:
    """The window of ``b`` that best shows all of ``a``, searched one axis at a time.

    ``window`` ``(P, 4)`` is x lo, x hi, y lo, y hi in ``b``'s coordinates (a
    window reaching outside ``b`` repeats its edge). At each ``(step, points)``
    level, x then y try every ``(lo + d, hi + e)`` with ``d`` and ``e`` among
    ``points`` values from ``-step`` to ``step``, at ``size`` px; the best stays.
    """
    p = len(a)
    whole = np.repeat(np.array([[0.0, 1.0, 0.0, 1.0]]), p, axis=0)
    a_unit = _unit_rows(_warp(a, whole, size))
    window = window.copy()
    pick = np.arange(p)
    for step, points in levels:
        for axis in (0, 1):
            now = window[:, 2 * axis : 2 * axis + 2]
            if (now == now[0]).all():  # the same for every pair (the first search): one
                now = now[:1]
            lo, hi = _grid(now[:, 0], now[:, 1], points, step)
            k, m = lo.shape[1], b.shape[-1]
            cand = _resampler(lo.ravel(), hi.ravel(), size, m).reshape(len(lo), k, size, m)
            if axis == 0:  # rows warped once, every column window tried
                rows = _resampler(window[:, 2], window[:, 3], size, m) @ b
                cols = cand.transpose(0, 3, 1, 2).reshape(len(lo), m, k * size)
                warped = (rows @ cols).reshape(p, size, k, size).transpose(0, 2, 1, 3)
            else:
                cols = b @ _resampler(window[:, 0], window[:, 1], size, m).transpose(0, 2, 1)
                warped = cand.reshape(len(lo), k * size, m) @ cols
            flat = np.ascontiguousarray(warped).reshape(p, k, size * size)  # (P, k, pixels)
            cross = (flat @ a_unit[:, :, None])[:, :, 0]
            total = flat.sum(axis=2)
            square = np.einsum("pkn,pkn->pk", flat, flat)
            var = np.maximum(square - total**2 / size**2, 0.0)
            sim = np.divide(cross, np.sqrt(var), out=np.zeros_like(cross), where=var > 0)
            best = sim.argmax(axis=1)
            lo, hi = np.broadcast_to(lo, (p, k)), np.broadcast_to(hi, (p, k))
            window[:, 2 * axis], window[:, 2 * axis + 1] = lo[pick, best], hi[pick, best]
    return window


def _grid(
    lo: np.ndarray, hi: np.ndarray, points: int, step: float
) -> tuple[np.ndarray, np.ndarray]:
    """Every ``(lo + d, hi + e)``, d and e from ``-step`` to ``step``, kept in range."""
    offsets = np.linspace(-step, step, points)
    d, e = np.repeat(offsets, points), np.tile(offsets, points)
    return (
        np.clip(lo[:, None] + d, -MAX_CROP, MAX_CROP),
        np.clip(hi[:, None] + e, 1 - MAX_CROP, 1 + MAX_CROP),
    )


def _aligned(a: np.ndarray, b: np.ndarray, window: np.ndarray, size: int) -> np.ndarray:
    """Correlation at ``size`` px of the parts of ``a`` and ``b`` that show the same
    scene when ``window`` (of ``b``, over all of ``a``) aligns them; pixels dark in
    both (the black around a scan) do not count."""
    lo, hi = window[:, 0::2], window[:, 1::2]  # (P, 2): x, y
    a_lo, a_hi = np.maximum(0.0, -lo / (hi - lo)), np.minimum(1.0, (1.0 - lo) / (hi - lo))
    b_lo, b_hi = np.maximum(0.0, lo), np.minimum(1.0, hi)
    wa = _warp(a, np.stack([a_lo[:, 0], a_hi[:, 0], a_lo[:, 1], a_hi[:, 1]], axis=1), size)
    wb = _warp(b, np.stack([b_lo[:, 0], b_hi[:, 0], b_lo[:, 1], b_hi[:, 1]], axis=1), size)
    x, y = wa.reshape(len(wa), -1), wb.reshape(len(wb), -1)
    lit = (np.maximum(x, y) > _DARK).astype(np.float32)
    count = np.maximum(lit.sum(axis=1, keepdims=True), 1.0)
    x = lit * (x - (lit * x).sum(axis=1, keepdims=True) / count)
    y = lit * (y - (lit * y).sum(axis=1, keepdims=True) / count)
    norm = np.sqrt((x * x).sum(axis=1, dtype=np.float64) * (y * y).sum(axis=1, dtype=np.float64))
    flat = norm <= (_FLAT**2) * count[:, 0]
    sim: np.ndarray = np.where(
        flat, 0.0, (x * y).sum(axis=1, dtype=np.float64) / np.maximum(norm, 1e-9)
    )
    return sim


def pair_similarity(thumbs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Aligned similarity (see the module notes) of each index pair of ``thumbs``."""
    out = np.zeros(len(pairs))
    small = _shrink(thumbs, THUMB // 2)
    for start in range(0, len(pairs), _PAIR_BATCH):
        chunk = pairs[start : start + _PAIR_BATCH]
        a, b = small[chunk[:, 0]], small[chunk[:, 1]]
        window = np.repeat(np.array([[0.0, 1.0, 0.0, 1.0]]), len(chunk), axis=0)
        window = _search(a, b, window, COARSE, _COARSE_LEVELS)
        score = _aligned(a, b, window, COARSE)
        alive = np.flatnonzero(score >= COARSE_MIN)
        for first in range(0, len(alive), _FINE_BATCH):
            part = alive[first : first + _FINE_BATCH]
            fa = thumbs[chunk[part, 0]].astype(np.float32)
            fb = thumbs[chunk[part, 1]].astype(np.float32)
            found = _search(fa, fb, window[part], FINE, _FINE_LEVELS)
            score[part] = _aligned(fa, fb, found, FINE)
        out[start : start + len(chunk)] = score
    return out


def find_near_duplicates(
    paths: Sequence[str],
    *,
    threshold: float = THRESHOLD,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
) -> tuple[list[tuple[int, int, float]], list[int]]:
    """Near-duplicate pairs among image files.

    Returns ``(pairs, undecodable)``: ``(i, j, similarity)`` with ``i < j``
    indices into ``paths``, sorted, and the indices of files that could not be
    decoded (compared with none).
    """
    thumbs, aspect = thumbnails(paths, max_pixels=max_pixels, workers=workers)
    cand = candidate_pairs(thumbs, aspect)
    sim = pair_similarity(thumbs, cand)
    keep = sim >= threshold
    pairs = [(int(i), int(j), float(s)) for (i, j), s in zip(cand[keep], sim[keep], strict=True)]
    return pairs, [int(i) for i in np.flatnonzero(np.isnan(aspect))]
