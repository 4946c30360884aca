"""Approximate nearest neighbours of a plan's alive rows, for cleaning at scale.

The exact search of :mod:`._knn` measures every alive row against every other:
at 50,000 rows of 768 numbers that is 2.5 billion distances per ENN pass, and
its cost grows with the square of the rows. With
``neighbor_search="approximate"`` the cleaners instead ask a graph index
(faiss's HNSW, the ``ann`` extra), whose cost grows about as n log n, for
candidates, and order the candidates by their exact float64 distance in the full
feature space, ties to the earlier row, as the exact search does.

The graph holds the rows projected on their first principal axes, as many as
keep :data:`_VARIANCE` of the variance (fitted once per plan, on up to
:data:`_FIT_ROWS` of its first rows; a feature space whose variance is spread
evenly goes in as it is): a graph of 54 numbers per row costs a fraction of one
of 768, and as every candidate is measured again in full, the projection only
decides which rows are looked at (on CIFAR-10's thumbnails it found more of the
true neighbours, at less than half the cost, than a graph of the full rows, or
of 105 axes). A true neighbour that is not among a row's :data:`_CANDIDATES`
candidates is missed; the benchmark ``cleaning_scaling.py`` measures how often
(the share of lists equal to the exact ones, and of ENN's decisions).

Below :data:`MIN_ROWS` alive rows the exact search answers even then (there it
is as fast). Like :class:`._knn.NeighbourIndex`, the index lives for a whole
plan: STEM's iterations add their new rows to the graph, search only those, and
offer each new row to the lists of the old rows among its :data:`_REACH`
nearest (a neighbour relation is mostly mutual); a row whose list lost too many
entries to removals is searched again.

Reproducible: the graph is built on one thread, in row order, with faiss's fixed
seed, so one seed gives the same plan on the same machine and library versions
(float32 rounding can differ across CPU instruction sets and BLAS builds, which
may change which candidates the graph finds; the exact search has no such
caveat).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._optional import require
from ._knn import exact_pairs, first_alive, merge_lists, top_per_row

__all__ = ["MIN_ROWS", "ApproximateIndex", "faiss_module", "large_enough"]

#: alive rows below which the approximate search uses the exact one
MIN_ROWS = 10_000
#: the graph holds the fewest principal axes that keep _VARIANCE of the variance (at
#: least _MIN_DIM; 54 of 768 for CIFAR-10's thumbnails), or the rows as they are when
#: that is over _MAX_SHARE of their numbers; at most _FIT_ROWS rows fit the axes
_VARIANCE = 0.9
_MIN_DIM = 32
_MAX_SHARE = 0.75
_FIT_ROWS = 10_000
#: HNSW's graph degree, build and search breadth
_M = 32
_EF_CONSTRUCTION = 40
_EF_SEARCH = 48
#: candidates per searched row, each measured again exactly in the full space
_CANDIDATES = 24
#: a new row is offered to the lists of the old rows among its _REACH nearest: it
#: belongs in an old row's list mostly when that row is near it, and the wider reach
#: catches new rows in dense regions
_REACH = 48


def large_enough(n_alive: int) -> bool:
    """Whether a plan of ``n_alive`` rows uses the graph (else the exact search)."""
    return n_alive >= MIN_ROWS


def faiss_module() -> Any:
    return require(
        "faiss",
        "ann",
        'neighbor_search="approximate"',
        'or keep the default neighbor_search="exact"',
    )


class ApproximateIndex:
    """The ``width`` nearest alive rows of every alive row, from an HNSW graph of every
    row the plan has had (dead rows are filtered out of each search)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.nb = np.zeros((0, width), dtype=np.int64)
        self.dd = np.zeros((0, width), dtype=np.float64)
        self.known = 0  # rows below this index are in the graph (alive ones have lists)
        self.searches = 0  # rows searched in the graph (for tests, benchmarks)
        self._graph: Any = None
        self._mean: np.ndarray | None = None
        self._axes: np.ndarray | None = None  # (d, axes), or None: rows go in as they are

    def neighbours(self, state: Any, rows: np.ndarray, k: int) -> np.ndarray:
        """``(len(rows), k)`` row indices of the (approximately) k nearest other alive
        rows of ``rows``, nearest first; k <= width, k < number alive."""
        self._update(state, k)
        return first_alive(self.nb[rows], state.alive, k)

    def _update(self, state: Any, k: int) -> None:
        faiss = faiss_module()
        n = len(state.alive)
        grow = n - len(self.nb)
        if grow > 0:
            self.nb = np.concatenate([self.nb, np.full((grow, self.width), -1, np.int64)])
            self.dd = np.concatenate([self.dd, np.full((grow, self.width), np.inf)])
        if n > self.known:
            self._add(faiss, state.take(np.arange(self.known, n)))
        alive = np.flatnonzero(state.alive)
        new = alive[alive >= self.known]
        old = alive[alive < self.known]
        if len(old):
            nb = self.nb[old]
            live = ((nb >= 0) & state.alive[np.maximum(nb, 0)]).sum(axis=1)
            short = old[live < min(k, len(alive) - 1)]
        else:
            short = old
        before, self.known = self.known, n
        found = self._search(faiss, state, new, _REACH if len(old) else 0)
        self._offer(state, found, before)
        if len(short):
            self._search(faiss, state, short)

    def _project(self, X: np.ndarray) -> np.ndarray:
        if self._mean is None:  # fitted once, on the plan's first rows
            self._mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
            if X.shape[1] > _MIN_DIM / _MAX_SHARE and len(X) > X.shape[1]:
                sample = X[:: -(-len(X) // _FIT_ROWS)].astype(np.float64) - self._mean
                values, vectors = np.linalg.eigh(sample.T @ sample)
                values, vectors = values[::-1], vectors[:, ::-1]  # largest first
                held = np.cumsum(values) / max(float(values.sum()), 1e-300)
                dim = max(_MIN_DIM, int(np.searchsorted(held, _VARIANCE)) + 1)
                if dim <= _MAX_SHARE * X.shape[1]:  # else the projection saves little
                    self._axes = np.ascontiguousarray(vectors[:, :dim], dtype=np.float32)
        if self._axes is None:
            return np.ascontiguousarray(X, dtype=np.float32)
        return np.ascontiguousarray((X - self._mean) @ self._axes)

    def _add(self, faiss: Any, X: np.ndarray) -> None:
        P = self._project(X)
        if self._graph is None:
            self._graph = faiss.IndexHNSWFlat(P.shape[1], _M)
            self._graph.hnsw.efConstruction = _EF_CONSTRUCTION
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # one thread: the same graph every time
        try:
            self._graph.add(P)
        finally:
            faiss.omp_set_num_threads(threads)

    def _search(
        self, faiss: Any, state: Any, rows: np.ndarray, reach: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Store the lists of ``rows`` from the graph's candidates, measured exactly;
        return the (row, candidate, exact distance) pairs."""
        if not len(rows):
            e = np.zeros(0, dtype=np.int64)
            return e, e, np.zeros(0)
        n = len(state.alive)
        bits = np.packbits(state.alive, bitorder="little")
        params = faiss.SearchParametersHNSW()
        found = max(reach, _CANDIDATES, self.width) + 1
        params.efSearch = max(_EF_SEARCH, found)
        params.sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
        X = state.X
        _, cand = self._graph.search(self._project(X[rows]), found, params=params)
        r, c = np.nonzero((cand >= 0) & (cand != rows[:, None]))  # never itself
        cols = cand[r, c]
        dist = exact_pairs(X, X, rows[r], cols)
        nb, dd, _ = top_per_row(r, cols, dist, len(rows), self.width)
        self.nb[rows] = nb
        self.dd[rows] = dd
        self.searches += len(rows)
        return rows[r], cols, dist

    def _offer(
        self, state: Any, pairs: tuple[np.ndarray, np.ndarray, np.ndarray], before: int
    ) -> None:
        """Offer each new row to the list of each old row (below ``before``) it found
        (new rows have fresh lists of their own)."""
        q, o, dist = pairs
        older = o < before
        q, o, dist = q[older], o[older], dist[older]
        if not len(o):
            return
        touched, local = np.unique(o, return_inverse=True)
        nb, dd, _ = merge_lists(
            self.nb[touched], self.dd[touched], state.alive, local, q, dist, self.width
        )
        self.nb[touched] = nb
        self.dd[touched] = dd
