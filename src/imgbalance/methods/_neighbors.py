"""Nearest neighbours and the rule for classes too small for k neighbours."""

from __future__ import annotations

import numpy as np

from ..errors import ImgBalanceError

FALLBACKS = ("adapt", "error", "random-over", "augment")
_WORKING_MEMORY_MIB = 64


def neighbours(X_fit: np.ndarray, k: int, X_query: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` nearest rows of ``X_fit`` for each query row, self excluded.

    Like imbalanced-learn, asks for ``k + 1`` neighbours and drops the first
    (the sample itself, or an exact duplicate of it).
    """
    # scikit-learn is imported here, not at the top: it costs ~1.5 s, and `analyze`,
    # `split` and `--help` import the methods without ever asking for neighbours.
    from sklearn import config_context
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1).fit(X_fit)
    query = X_fit if X_query is None else X_query
    # Distances are computed in chunks of this many MiB (scikit-learn's default is 1 GiB).
    with config_context(working_memory=_WORKING_MEMORY_MIB):
        return np.asarray(nn.kneighbors(query, return_distance=False)[:, 1:])


def effective_k(method: str, class_name: str, n: int, k: int, fallback: str) -> int | None:
    """The k to use for a class of ``n`` samples, or None to use the fallback method
    (``random-over`` or ``augment``).

    Raises a clear error when the class is too small and no fallback is allowed.
    """
    if n >= k + 1:
        return k
    options = (
        "use --small-class-fallback random-over (copies) or augment (augmented copies), "
        "or --method random-over"
    )
    if n >= 2:  # only then can fewer neighbours help
        options = f"lower --k-neighbors to {n - 1} or less, or " + options
    if fallback in ("random-over", "augment"):
        return None
    if fallback == "adapt":  # k adapts to the class; a class of one cannot interpolate
        return n - 1 if n >= 2 else None
    need = "at least 2" if fallback == "adapt" else f"k_neighbors + 1 = {k + 1}"
    raise ImgBalanceError(
        f'Class "{class_name}" has {n} image(s); {method} needs {need}. Options: {options}.'
    )
