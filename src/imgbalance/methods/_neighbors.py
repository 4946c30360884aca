"""Nearest neighbours and the rule for classes too small for k neighbours."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._options import option, option_name
from ..errors import ImgBalanceError
from ._hnsw import MIN_ROWS, ApproximateIndex, faiss_module, large_enough
from ._knn import SLACK, nearest
from ._knn import alive_neighbours as exact_alive_neighbours

FALLBACKS = ("adapt", "error", "random-over", "augment")
#: how the cleaners find neighbours: exactly (imbalanced-learn's answer; cost grows with
#: the square of the rows) or from an HNSW graph on large plans (:mod:`._hnsw`)
NEIGHBOR_SEARCH = ("exact", "approximate")


def neighbours(X_fit: np.ndarray, k: int, X_query: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` nearest rows of ``X_fit`` for each query row, self excluded.

    Like imbalanced-learn, asks for ``k + 1`` neighbours and drops the first (the
    sample itself, or an exact duplicate of it listed before it). The search is
    :func:`._knn.nearest`: exact, ties to the earlier row, scikit-learn's answer
    where there are no ties, and no scikit-learn import (~1.5 s) on the way.
    """
    query = None if X_query is None else np.asarray(X_query, dtype=np.float32)
    return nearest(np.asarray(X_fit, dtype=np.float32), k + 1, query)[:, 1:]


def class_neighbours(state: Any, rows: np.ndarray, k: int) -> np.ndarray:
    """:func:`neighbours` of the plan's feature rows ``rows`` among themselves, kept for
    the rest of the plan: STEM's SMOTE asks again in every iteration, for the same
    originals of each class (until a cleaner removes one)."""
    kept = state.cache.setdefault("class_neighbours", {})
    key = (k, len(rows), int(rows[0]) if len(rows) else -1)
    hit = kept.get(key)
    if hit is not None and np.array_equal(hit[0], rows):
        result: np.ndarray = hit[1]
        return result
    nns = neighbours(state.take(rows), k)
    kept[key] = (rows.copy(), nns)
    return nns


def alive_neighbours(state: Any, rows: np.ndarray, k: int, search: str = "exact") -> np.ndarray:
    """The k nearest other alive rows of ``rows`` (alive rows of the plan ``state``),
    nearest first, from the plan's shared index: exact, or with ``search="approximate"``
    and enough alive rows, from an HNSW graph (see :mod:`._hnsw`)."""
    if search == "approximate" and large_enough(int(state.alive.sum())):
        index = state.cache.get("neighbours:approximate")
        if index is None:
            state.notes.append(
                f"Cleaning found neighbours approximately (an HNSW graph, for {MIN_ROWS:,} or "
                "more rows): a few may differ from the exact ones; "
                f"{option('neighbor_search', 'exact')} gives imbalanced-learn's answer."
            )
        if index is None or index.width < k:
            index = ApproximateIndex(k + SLACK)
            state.cache["neighbours:approximate"] = index
        result: np.ndarray = index.neighbours(state, rows, k)
        return result
    return exact_alive_neighbours(state, rows, k)


def require_search(method: str, search: object) -> None:
    """Check a ``neighbor_search`` value; the approximate one needs faiss, asked for at
    once (not when a plan first grows large enough to use it)."""
    if search not in NEIGHBOR_SEARCH:
        raise ImgBalanceError(
            f"{method}: {option_name('neighbor_search')} must be one of "
            f"{', '.join(NEIGHBOR_SEARCH)}; "
            f"got {search!r}."
        )
    if search == "approximate":
        faiss_module()


def effective_k(method: str, class_name: str, n: int, k: int, fallback: str) -> int | None:
    """The k to use for a class of ``n`` samples, or None to use the fallback method
    (``random-over`` or ``augment``).

    Raises a clear error when the class is too small and no fallback is allowed (ask
    about the smallest class first: then every option the error names works for all).
    """
    if n >= k + 1:
        return k
    if fallback in ("random-over", "augment"):
        return None
    if fallback == "adapt":  # k adapts to the class; a class of one cannot interpolate
        return n - 1 if n >= 2 else None
    options = (
        f"let small classes fall back to copies ({option('small_class_fallback', 'random-over')})"
        f" or to augmented copies ({option('small_class_fallback', 'augment')}), or use "
        f"{option('method', 'random-over')} (copies, for every class; it "
        f"takes no {option_name('k_neighbors')} or {option_name('small_class_fallback')})"
    )
    if n >= 2:  # only then can fewer neighbours help
        options = f"lower k to {n - 1} or less ({option('k_neighbors', n - 1)}), or {options}"
    raise ImgBalanceError(
        f'Class "{class_name}" has {n} image(s); {method} needs k_neighbors + 1 = {k + 1}. '
        f"Options: {options}."
    )
