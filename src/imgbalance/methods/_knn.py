"""Exact nearest neighbours of a plan's alive rows, kept up to date across its steps.

ENN and Tomek links ask, for every alive row, for its k nearest other alive rows.
STEM asks again after each of its SMOTE-ENN iterations, when a few thousand
rows were added and a few hundred removed; a fresh search each time costs the
whole n x n distance matrix again. :class:`NeighbourIndex` keeps each row's
``width`` nearest rows and, after an edit, computes distances only from the
new rows to the alive ones (and lists again the rare row whose list lost too
many entries to removals), so an iteration costs new x alive instead of
alive x alive.

The search is exact. Distances come from one float32 matrix product per chunk
of queries; every row within a proven bound of that product's rounding error
(:func:`_error_bound`) of the k-th is then measured again as
``sum((a - b) ** 2)`` in float64 (the differences and squares of float32 values
are exact there; only the sum rounds, some 1e-13 relative), so the float32
rounding can never change a result. Neighbours are ordered by that distance,
then by row index: ties (duplicate images, integer-valued thumbnails) go to the
earlier row, and a search from scratch and an updated one give the same lists.
In the index a row is never its own neighbour (an exact duplicate of it is, at
distance 0); :func:`nearest` lists every row of the fitted matrix, and SMOTE's
caller drops the first of k + 1, as imbalanced-learn does. Without ties these
are scikit-learn's neighbours.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = [
    "SLACK",
    "NeighbourIndex",
    "alive_neighbours",
    "exact_pairs",
    "first_alive",
    "merge_lists",
    "nearest",
    "top_per_row",
]

#: float32 distances computed at once (MiB): one chunk of queries x all alive rows
_CHUNK_MIB = 32
#: candidate pairs listed at once (a few per query unless the space is degenerate)
_MAX_PAIRS = 1 << 20
#: pairs measured exactly at once (float64 differences: _PAIRS x d x 8 bytes)
_PAIRS = 4096
#: rows kept per list beyond the k asked for, so that removals rarely force a new search
SLACK = 5
_U32 = float(np.finfo(np.float32).eps) / 2  # unit roundoff of float32


def _error_bound(d: int) -> float:
    """c with |computed - exact| <= c (|a|^2 + |b|^2) for the float32 squared distance
    |a|^2 + |b|^2 - 2 a.b of d-dimensional rows (any summation order: gamma_d bounds the
    dot product, the norms and the two additions add a few unit roundoffs), with room."""
    return 2.5 * (d + 4) * _U32


def _sq_norms(X: np.ndarray) -> np.ndarray:
    """Squared norms of the rows, accumulated in float64."""
    out: np.ndarray = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    return out


def exact_pairs(XQ: np.ndarray, XF: np.ndarray, q: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Exact squared distances of the pairs of rows (XQ[q], XF[f]), in float64, in slices
    (float32 values: their differences and squares are exact in float64)."""
    out = np.empty(len(q), dtype=np.float64)
    for s in range(0, len(q), _PAIRS):
        diff = XF[f[s : s + _PAIRS]].astype(np.float64)
        diff -= XQ[q[s : s + _PAIRS]]
        np.square(diff, out=diff)
        out[s : s + _PAIRS] = diff.sum(axis=1)
    return out


def _where(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a 2-D mask that is almost all False, 8 entries per step."""
    flat = np.zeros(-(-mask.size // 8) * 8, dtype=bool)
    flat[: mask.size] = mask.ravel()
    words = np.flatnonzero(flat.view(np.uint64))
    idx = (words[:, None] * 8 + np.arange(8)).ravel()
    idx = idx[flat[idx]]
    r, col = np.divmod(idx, mask.shape[1])
    return r, col


def top_per_row(
    rows: np.ndarray, cols: np.ndarray, dist: np.ndarray, n_rows: int, width: int
) -> Any:
    """Per row (0..n_rows-1), the first ``width`` (dist, col) pairs in order, as padded
    arrays (col -1, dist inf), and how many each row had before truncation."""
    order = np.lexsort((cols, dist, rows))
    rows, cols, dist = rows[order], cols[order], dist[order]
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < width
    nb = np.full((n_rows, width), -1, dtype=np.int64)
    dd = np.full((n_rows, width), np.inf, dtype=np.float64)
    nb[rows[keep], rank[keep]] = cols[keep]
    dd[rows[keep], rank[keep]] = dist[keep]
    return nb, dd, counts


def _chunks(
    XQ: np.ndarray,
    XF: np.ndarray,
    width: int,
    exclude: np.ndarray | None,
    norms: tuple[np.ndarray, np.ndarray] | None = None,
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The ``width`` nearest rows of ``XF`` to each row of ``XQ``, exactly, chunk by chunk.

    Yields ``(lo, hi, prod, nb, dd, counts)`` for queries ``lo:hi``: ``prod`` is the
    float32 ``|f|^2 - 2 q.f`` block (``|q|^2`` left out), ``nb`` / ``dd`` the lists
    (positions in ``XF``, exact squared distances; padded with -1 / inf) and ``counts``
    the candidates each query had (``>= width`` means the list is full). ``exclude[i]``
    is a position of ``XF`` query i may not list (itself), or -1. ``norms`` are the
    rows' float64 squared norms (queries', fitted rows'), when the caller has them.
    """
    n_fit, d = XF.shape
    c = _error_bound(d)
    if norms is None:
        norms = (_sq_norms(XQ), _sq_norms(XF))
    sq_q, sq_f = norms
    sq_max = float(sq_f.max()) if n_fit else 0.0
    sq32 = sq_f.astype(np.float32)
    chunk = max(1, (_CHUNK_MIB << 20) // (4 * max(n_fit, 1)))
    for lo in range(0, len(XQ), chunk):
        hi = min(lo + chunk, len(XQ))
        # |f|^2 - 2 q.f: the query's own |q|^2 does not change its order (the -2 is exact)
        prod = (XQ[lo:hi] * np.float32(-2)) @ XF.T
        prod += sq32[None, :]
        if exclude is not None:
            own = exclude[lo:hi]
            prod[np.flatnonzero(own >= 0), own[own >= 0]] = np.inf
        kth = np.partition(prod, width - 1, axis=1)[:, width - 1]
        limit = kth + 2 * c * (sq_q[lo:hi] + sq_max)
        mask = prod <= limit[:, None]
        # queries with many candidates (duplicates, a degenerate feature space) are
        # measured in groups of at most _MAX_PAIRS candidates
        ends = np.cumsum(mask.sum(axis=1))
        cuts = np.searchsorted(ends, np.arange(_MAX_PAIRS, int(ends[-1]), _MAX_PAIRS), "right")
        parts = []
        for a, b in zip(np.r_[0, cuts].tolist(), np.r_[cuts, hi - lo].tolist(), strict=True):
            if b > a:
                r, col = _where(mask[a:b])
                dist = exact_pairs(XQ, XF, lo + a + r, col)
                parts.append(top_per_row(r, col, dist, b - a, width))
        nb, dd, counts = (np.concatenate(x) for x in zip(*parts, strict=True))
        yield lo, hi, prod, nb, dd, counts


def nearest(XF: np.ndarray, k: int, XQ: np.ndarray | None = None) -> np.ndarray:
    """Row indices of the ``k`` nearest rows of ``XF`` to each row of ``XQ`` (``XF`` itself
    when None), nearest first, ties to the earlier row; exact, as scikit-learn's brute
    search is where there are no ties, without importing it."""
    query = XF if XQ is None else XQ
    out = np.empty((len(query), k), dtype=np.int64)
    for lo, hi, _, nb, _, _ in _chunks(query, XF, k, None):
        out[lo:hi] = nb
    return out


class NeighbourIndex:
    """The ``width`` nearest alive rows of every alive row of a :class:`PlanState`.

    Invariant: row i's list holds, in order, every alive row whose (distance, index)
    key is at most ``bound[i]`` (the key of the list's last entry when it was full;
    infinite when the list held every other row). Removals keep it (dead entries
    are skipped); additions merge in the new rows below the bound.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.nb = np.zeros((0, width), dtype=np.int64)
        self.dd = np.zeros((0, width), dtype=np.float64)
        self.bound_d = np.zeros(0, dtype=np.float64)
        self.bound_i = np.zeros(0, dtype=np.int64)
        self.known = 0  # rows below this index have been seen (alive ones have lists)
        self.searches = 0  # rows searched against every alive row (for tests, benchmarks)

    def neighbours(self, state: Any, rows: np.ndarray, k: int) -> np.ndarray:
        """``(len(rows), k)`` row indices of the k nearest other alive rows of ``rows``
        (alive rows of ``state``), nearest first; k <= width, k < number alive."""
        self._update(state, k)
        return first_alive(self.nb[rows], state.alive, k)

    # -- maintenance -------------------------------------------------------------
    def _update(self, state: Any, k: int) -> None:
        n = len(state.alive)
        alive = np.flatnonzero(state.alive)
        grow = n - len(self.nb)
        if grow > 0:
            self.nb = np.concatenate([self.nb, np.full((grow, self.width), -1, np.int64)])
            self.dd = np.concatenate([self.dd, np.full((grow, self.width), np.inf)])
            self.bound_d = np.concatenate([self.bound_d, np.full(grow, np.inf)])
            self.bound_i = np.concatenate([self.bound_i, np.full(grow, -1, np.int64)])
        new = alive[alive >= self.known]
        old = alive[alive < self.known]
        # an old row whose list kept fewer than k alive entries is searched again
        if len(old):
            nb = self.nb[old]
            live = (state.alive[np.maximum(nb, 0)] & (nb >= 0)).sum(axis=1)
            short = live < np.minimum(k, len(alive) - 1)
        else:
            short = np.zeros(0, dtype=bool)
        XA = state.take(alive)
        pos = np.full(n, -1, dtype=np.int64)
        pos[alive] = np.arange(len(alive))
        merges = self._search(XA, pos[new], pos[old], old, alive)
        self._merge(old, merges, state.alive)
        again = old[short]
        if len(again):
            self._search(XA, pos[again], np.zeros(0, np.int64), again, alive)
        self.known = n

    def _search(
        self,
        XA: np.ndarray,
        queries: np.ndarray,
        others: np.ndarray,
        others_rows: np.ndarray,
        alive: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Search ``queries`` (positions in ``alive``) against every alive row and store
        their lists; return the pairs (other row, query row, distance) that may enter
        the lists of ``others`` (positions of rows with lists, not searched again)."""
        width = min(self.width, len(XA) - 1)
        if width < 1 or not len(queries):
            return _empty_pairs()
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        sq = _sq_norms(XA)  # once, for the search and for the others' bound
        bound = None
        if len(others):
            c = _error_bound(XA.shape[1])
            # |q|^2 left out of the product, so out of the bound too
            bound = self.bound_d[others_rows] + c * (sq[others] + sq.max())
            sq_q32 = sq[queries].astype(np.float32)
        chunks = _chunks(XA[queries], XA, width, queries, (sq[queries], sq))
        for lo, hi, prod, nb, dd, counts in chunks:
            rows = alive[queries[lo:hi]]
            self._store(rows, alive[np.where(nb >= 0, nb, 0)], nb >= 0, dd, counts, width)
            if bound is not None:
                r, o = _where(prod[:, others] + sq_q32[lo:hi, None] <= bound[None, :])
                if len(r):
                    dist = exact_pairs(XA, XA, queries[lo + r], others[o])
                    found.append((o, alive[queries[lo + r]], dist))
        self.searches += len(queries)
        if not found:
            return _empty_pairs()
        return tuple(np.concatenate(p) for p in zip(*found, strict=True))  # type: ignore[return-value]

    def _store(
        self,
        rows: np.ndarray,
        nb: np.ndarray,
        valid: np.ndarray,
        dd: np.ndarray,
        counts: np.ndarray,
        width: int,
    ) -> None:
        self.nb[rows] = -1
        self.dd[rows] = np.inf
        self.nb[rows, :width] = np.where(valid, nb, -1)
        self.dd[rows, :width] = dd
        full = counts >= self.width  # the list stops at its last entry's key
        last = np.clip(counts - 1, 0, width - 1)
        self.bound_d[rows] = np.where(full, dd[np.arange(len(rows)), last], np.inf)
        self.bound_i[rows] = np.where(full, nb[np.arange(len(rows)), last], -1)

    def _merge(
        self, old: np.ndarray, pairs: tuple[np.ndarray, np.ndarray, np.ndarray], alive: np.ndarray
    ) -> None:
        """Merge new rows into old rows' lists where their key is within the bound."""
        o, j, dist = pairs
        if not len(o):
            return
        rows = old[o]
        bd, bi = self.bound_d[rows], self.bound_i[rows]
        inside = (dist < bd) | ((dist == bd) & (j <= bi)) | np.isinf(bd)
        rows, j, dist = rows[inside], j[inside], dist[inside]
        touched, local = np.unique(rows, return_inverse=True)
        nb, dd, counts = merge_lists(
            self.nb[touched], self.dd[touched], alive, local, j, dist, self.width
        )
        self.nb[touched] = nb
        self.dd[touched] = dd
        cut = counts > self.width  # truncated: the bound moves down to the last kept entry
        self.bound_d[touched[cut]] = dd[cut, -1]
        self.bound_i[touched[cut]] = nb[cut, -1]


def first_alive(nb: np.ndarray, alive: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` alive entries of each list ``nb`` (padded with -1), in order."""
    ok = alive[np.maximum(nb, 0)] & (nb >= 0)
    # alive entries first, in order: a stable sort on "is dead" keeps the order
    order = np.argsort(~ok, axis=1, kind="stable")
    return np.take_along_axis(nb, order, axis=1)[:, :k]


def merge_lists(
    nb: np.ndarray,
    dd: np.ndarray,
    alive: np.ndarray,
    local: np.ndarray,
    cols: np.ndarray,
    dist: np.ndarray,
    width: int,
) -> Any:
    """The alive entries of lists ``nb`` / ``dd`` with new entries (list ``local``, row
    ``cols``, distance ``dist``), the first ``width`` of each, as :func:`top_per_row`
    gives them."""
    er, ec = np.nonzero((nb >= 0) & alive[np.maximum(nb, 0)])
    all_r = np.concatenate([er, local])
    all_c = np.concatenate([nb[er, ec], cols])
    all_d = np.concatenate([dd[er, ec], dist])
    return top_per_row(all_r, all_c, all_d, len(nb), width)


def _empty_pairs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    e = np.zeros(0, dtype=np.int64)
    return e, e, np.zeros(0, dtype=np.float64)


def alive_neighbours(state: Any, rows: np.ndarray, k: int) -> np.ndarray:
    """The k nearest other alive rows of ``rows``, from the plan's shared index (made on
    first use, as wide as k plus some slack; made again wider when a step asks for more)."""
    index = state.cache.get("neighbours")
    if index is None or index.width < k:
        index = state.cache["neighbours"] = NeighbourIndex(k + SLACK)
    result: np.ndarray = index.neighbours(state, rows, k)
    return result
