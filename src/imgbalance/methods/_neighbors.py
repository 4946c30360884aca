"""Nearest neighbours and the rule for classes too small for k neighbours."""

from __future__ import annotations

import numpy as np

from .._options import option, option_name
from ..errors import ImgBalanceError
from ._knn import nearest

FALLBACKS = ("adapt", "error", "random-over", "augment")


def neighbours(X_fit: np.ndarray, k: int, X_query: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` nearest rows of ``X_fit`` for each query row, self excluded.

    Like imbalanced-learn, asks for ``k + 1`` neighbours and drops the first (the
    sample itself, or an exact duplicate of it listed before it). The search is
    :func:`._knn.nearest`: exact, ties to the earlier row, scikit-learn's answer
    where there are no ties, and no scikit-learn import (~1.5 s) on the way.
    """
    query = None if X_query is None else np.asarray(X_query, dtype=np.float32)
    return nearest(np.asarray(X_fit, dtype=np.float32), k + 1, query)[:, 1:]


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
        f" or to augmented copies ({option('small_class_fallback', 'augment')}, the torch "
        f"extra), or use {option('method', 'random-over')} (copies, for every class; it "
        f"takes no {option_name('k_neighbors')} or {option_name('small_class_fallback')})"
    )
    if n >= 2:  # only then can fewer neighbours help
        options = f"lower k to {n - 1} or less ({option('k_neighbors', n - 1)}), or {options}"
    raise ImgBalanceError(
        f'Class "{class_name}" has {n} image(s); {method} needs k_neighbors + 1 = {k + 1}. '
        f"Options: {options}."
    )
