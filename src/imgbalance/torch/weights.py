"""Per-class loss weights from the *original* training counts (torch-free: the linear
model uses them too).

``@CLASS_WEIGHTS.register("name")`` adds a scheme: a function from the counts of the
classes present (float64) and ``beta`` to their raw weights; :func:`class_weights`
normalises them to mean 1 and gives absent classes weight 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import ConfigError
from ..registry import Registry

__all__ = ["CLASS_WEIGHTS", "class_weights", "list_class_weights"]

WeightFn = Callable[[np.ndarray, float], np.ndarray]
#: class-weight schemes, by name (``class_weights`` of a run)
CLASS_WEIGHTS: Registry[WeightFn] = Registry(
    "class-weight scheme", "See `imgbalance list class-weights`."
)


@CLASS_WEIGHTS.register("none", help="every class 1")
def _none(n: np.ndarray, beta: float) -> np.ndarray:
    return np.ones_like(n)


@CLASS_WEIGHTS.register("inverse", help="1 / n_c")
def _inverse(n: np.ndarray, beta: float) -> np.ndarray:
    out: np.ndarray = 1.0 / n
    return out


@CLASS_WEIGHTS.register("sqrt", help="1 / sqrt(n_c)")
def _sqrt(n: np.ndarray, beta: float) -> np.ndarray:
    out: np.ndarray = 1.0 / np.sqrt(n)
    return out


@CLASS_WEIGHTS.register("effective", help="(1 - beta) / (1 - beta^n_c), Cui et al. 2019")
def _effective(n: np.ndarray, beta: float) -> np.ndarray:
    if not 0 <= beta < 1:
        raise ConfigError(f"beta must be in [0, 1), got {beta}")
    out: np.ndarray = (1.0 - beta) / (1.0 - np.power(beta, n))
    return out


def list_class_weights() -> list[str]:
    """Names of the class-weight schemes."""
    return CLASS_WEIGHTS.names()


def class_weights(counts: Sequence[int], kind: str, beta: float = 0.999) -> np.ndarray:
    """Per-class weights from *original* training counts, normalised to mean 1.

    ``inverse``: 1 / n_c; ``sqrt``: 1 / sqrt(n_c); ``effective``: (1 - beta) /
    (1 - beta ** n_c) (Cui et al., 2019); ``none``: ones. A class with no
    training image gets weight 0 (it cannot be learnt; it is never predicted
    for a reason, and a weight would only divide by zero).
    """
    scheme = CLASS_WEIGHTS.get(kind)
    n = np.asarray(counts, dtype=np.float64)
    present = n > 0
    w = np.zeros_like(n)
    w[present] = scheme(n[present], beta)
    if present.any():
        w[present] *= present.sum() / w[present].sum()
    return w
