"""Batch samplers for training: which training images each epoch draws (torch-free
weights; the loop draws with ``torch.multinomial`` from the run's generator).

``@SAMPLERS.register("name")`` adds a sampler: a function from the per-class counts
(float64, absent classes 0) to per-class drawing weights. ``none`` (the default, not
registered) is a plain shuffle.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..registry import Registry

__all__ = ["SAMPLERS", "list_samplers", "sample_weights"]

SamplerFn = Callable[[np.ndarray], np.ndarray]
#: weighted samplers, by name (``sampler`` of a run; ``none`` is a plain shuffle)
SAMPLERS: Registry[SamplerFn] = Registry("sampler", "See `imgbalance list samplers`.")


def _power(counts: np.ndarray, power: float) -> np.ndarray:
    per_class = np.zeros_like(counts)
    present = counts > 0
    per_class[present] = 1.0 / counts[present] ** power
    return per_class


@SAMPLERS.register("class-balanced", help="1 / n_c per image: every class drawn equally often")
def _class_balanced(counts: np.ndarray) -> np.ndarray:
    return _power(counts, 1.0)


@SAMPLERS.register("sqrt", help="1 / sqrt(n_c) per image: halfway to uniform")
def _sqrt(counts: np.ndarray) -> np.ndarray:
    return _power(counts, 0.5)


def list_samplers() -> list[str]:
    """Names of the weighted samplers (``none``, a plain shuffle, besides)."""
    return SAMPLERS.names()


def sample_weights(labels: np.ndarray, kind: str) -> np.ndarray:
    """Per-sample drawing weights of the weighted random sampler ``kind``.

    ``class-balanced``: 1 / n_c, so every class is drawn equally often;
    ``sqrt``: 1 / sqrt(n_c), halfway between the data's frequencies and uniform.
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels).astype(np.float64)
    out: np.ndarray = SAMPLERS.get(kind)(counts)[labels]
    return out
