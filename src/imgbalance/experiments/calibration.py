"""Post-hoc recalibration: fitted on the validation split only, applied to test.

Resampling the training set changes the class prior a model learns, and with it
the meaning of its probabilities. Two corrections leave the model as it is and
rewrite its probabilities:

* **temperature scaling** (Guo et al., 2017): one scalar ``T > 0`` divides the
  log-probabilities, chosen to minimise the validation negative log-likelihood;
  it changes confidence, never the predicted class;
* **prior correction** (Saerens et al., 2002): ``p'(y|x) ∝ p(y|x) · π_orig(y) /
  π_trained(y)``, where ``π_trained`` is the class distribution of the training set
  the model saw (after balancing) and ``π_orig`` the original training split's.

:func:`posthoc_variants` computes every post-hoc variant of a run (these two, and
logit adjustment and threshold moving from :mod:`.metrics`) and their test metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ImgBalanceError
from .metrics import (
    apply_offsets,
    classification_metrics,
    logit_adjusted,
    tune_class_offsets,
)

__all__ = [
    "SUMMARY_KEYS",
    "VARIANTS",
    "Posthoc",
    "fit_temperature",
    "posthoc_probabilities",
    "posthoc_variants",
    "prior_corrected",
    "prior_weights",
    "probability_rows",
    "temperature_scaled",
]

#: the metrics of each post-hoc variant that ``experiment_summary.json`` keeps
SUMMARY_KEYS = ("macro_f1", "balanced_accuracy", "accuracy", "gmean", "nll", "brier", "ece")

#: the NLL clips each true-class probability to [eps, 1 - eps], as scikit-learn's log_loss
_EPS = float(np.finfo(np.float64).eps)


def _log_proba(proba: np.ndarray) -> np.ndarray:
    """Log-probabilities, exact: a probability of 0 stays impossible (-inf) at every T
    (a floor would hand such a class probability once softened)."""
    with np.errstate(divide="ignore"):
        out: np.ndarray = np.log(np.clip(np.asarray(proba, dtype=np.float64), 0.0, 1.0))
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    top = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - np.where(np.isfinite(top), top, 0.0))
    s = e.sum(axis=1, keepdims=True)
    out: np.ndarray = np.where(s > 0, e / np.where(s > 0, s, 1.0), 0.0)
    return out


def _check_labels(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.int64)
    if proba.ndim != 2 or len(y) != len(proba):
        raise ImgBalanceError(
            f"Labels ({len(y)}) and probabilities (shape {proba.shape}) do not match: pass "
            "one probability row per label, one column per class."
        )
    if len(y) and (y.min() < 0 or y.max() >= proba.shape[1]):
        raise ImgBalanceError(
            f"Label {int(y.max()) if y.max() >= proba.shape[1] else int(y.min())} is not a "
            f"class index: labels must lie in 0..{proba.shape[1] - 1}, one per column."
        )
    return y


def temperature_scaled(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Divide the log-probabilities by ``temperature`` and renormalise.

    Parameters
    ----------
    proba : numpy.ndarray
        Class probabilities, shape ``(n_samples, n_classes)``.
    temperature : float
        ``T > 0``: above 1 softens (less confident), below 1 sharpens.

    Returns
    -------
    numpy.ndarray
        ``softmax(log(proba) / T)``; ``T = 1`` returns an unchanged copy. A
        probability of 0 stays 0, and the predicted class never changes.
    """
    if not (np.isfinite(temperature) and temperature > 0):
        raise ImgBalanceError(
            f"Temperature {temperature!r} is not valid: it must be a finite number > 0 "
            "(1 leaves the probabilities unchanged)."
        )
    proba = np.asarray(proba, dtype=np.float64)
    if temperature == 1.0 or len(proba) == 0:
        same: np.ndarray = proba.copy()
        return same
    return _softmax(_log_proba(proba) / temperature)


def fit_temperature(
    y: Sequence[int] | np.ndarray,
    proba: np.ndarray,
    *,
    bounds: tuple[float, float] = (0.01, 100.0),
) -> float:
    """The temperature that minimises the negative log-likelihood of ``(y, proba)``.

    Parameters
    ----------
    y : array-like of int
        True class indices of the validation split.
    proba : numpy.ndarray
        The model's validation probabilities, shape ``(n_samples, n_classes)``.
    bounds : tuple of float, optional
        The search interval of ``T`` (``0 < low < 1 < high``).

    Returns
    -------
    float
        ``T`` found by a bounded scalar search over ``log T``
        (``scipy.optimize.minimize_scalar``) of the NLL as scikit-learn's ``log_loss``
        computes it (true-class probabilities clipped to ``[eps, 1 - eps]``). It is
        never worse than no scaling: when the optimum does not lower the NLL, the split
        is empty, or every image of it is classified right (the NLL then has no
        minimum: it falls as T -> 0), ``1.0``.
    """
    from scipy.optimize import minimize_scalar

    proba = np.asarray(proba, dtype=np.float64)
    y = _check_labels(np.asarray(y), proba)
    low, high = bounds
    if not (0 < low < 1 < high and np.isfinite(high)):
        raise ImgBalanceError(
            f"Temperature bounds {bounds!r} are not valid: they must satisfy "
            "0 < low < 1 < high, such as (0.01, 100)."
        )
    if len(y) == 0:
        return 1.0
    logp = _log_proba(proba)
    rows = np.arange(len(y))
    if (logp.argmax(axis=1) == y).all():
        # every validation image right: the NLL falls as T -> 0 without limit, so any
        # fitted T would only be the search's lower bound (and test probabilities 0 / 1)
        return 1.0

    top = logp.max(axis=1, keepdims=True)
    logp = logp - np.where(np.isfinite(top), top, 0.0)  # the largest is 0 (shift-invariant)
    low_log, high_log = np.log(_EPS), np.log1p(-_EPS)

    def nll(log_t: float) -> float:
        z = logp / np.exp(log_t)
        with np.errstate(divide="ignore"):
            lse = np.log(np.exp(z).sum(axis=1))
        return float(-np.clip(z[rows, y] - lse, low_log, high_log).mean())

    res = minimize_scalar(
        nll, bounds=(np.log(low), np.log(high)), method="bounded", options={"xatol": 1e-8}
    )
    log_t = float(res.x)
    return float(np.exp(log_t)) if nll(log_t) < nll(0.0) else 1.0


def _prior(counts: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or not np.isfinite(c).all() or (c < 0).any() or c.sum() <= 0:
        raise ImgBalanceError(
            f"{name} {c.tolist()} are not class counts: they must be one count >= 0 per "
            "class, with at least one above 0."
        )
    out: np.ndarray = c / c.sum()
    return out


def prior_weights(
    original_counts: Sequence[int] | np.ndarray, trained_counts: Sequence[int] | np.ndarray
) -> np.ndarray:
    """Per-class factors ``π_orig(y) / π_trained(y)`` of :func:`prior_corrected`.

    Parameters
    ----------
    original_counts : array-like of int
        Class counts of the original training split (before any balancing).
    trained_counts : array-like of int
        Class counts of the training set the model was trained on (after balancing).

    Returns
    -------
    numpy.ndarray
        One factor per class; a class the model never saw (``π_trained = 0``) keeps
        the factor 1 (there is no learnt prior to divide out).
    """
    orig = _prior(original_counts, "original_counts")
    trained = _prior(trained_counts, "trained_counts")
    if orig.shape != trained.shape:
        raise ImgBalanceError(
            f"original_counts has {len(orig)} classes and trained_counts {len(trained)}: "
            "pass one count per class, in the same class order, for both."
        )
    w = np.ones_like(orig)
    seen = trained > 0
    w[seen] = orig[seen] / trained[seen]
    return w


def prior_corrected(
    proba: np.ndarray,
    original_counts: Sequence[int] | np.ndarray,
    trained_counts: Sequence[int] | np.ndarray,
) -> np.ndarray:
    """Move probabilities learnt under the trained prior back to the original one.

    Parameters
    ----------
    proba : numpy.ndarray
        Class probabilities, shape ``(n_samples, n_classes)``.
    original_counts, trained_counts : array-like of int
        As in :func:`prior_weights`.

    Returns
    -------
    numpy.ndarray
        ``p'(y|x) = p(y|x) w(y) / sum_k p(k|x) w(k)`` with ``w`` from
        :func:`prior_weights`. A row whose weighted sum is 0 is left as it was.
    """
    proba = np.asarray(proba, dtype=np.float64)
    w = prior_weights(original_counts, trained_counts)
    if proba.ndim != 2 or proba.shape[1] != len(w):
        raise ImgBalanceError(
            f"Probabilities of shape {proba.shape} do not match {len(w)} class counts: "
            "pass one column per class."
        )
    q = proba * w
    s = q.sum(axis=1, keepdims=True)
    out: np.ndarray = np.where(s > 0, q / np.where(s > 0, s, 1.0), proba)
    return out


@dataclass(frozen=True)
class Posthoc:
    """Every post-hoc variant of a run: its test metrics and what was fitted."""

    #: variant name -> :func:`~.metrics.classification_metrics` on the test split
    metrics: dict[str, dict[str, Any]]
    #: the temperature fitted on validation
    temperature: float
    #: threshold moving's per-class offsets, fitted on validation
    offsets: np.ndarray
    #: prior correction's per-class factors
    prior_weights: np.ndarray

    def summary(self) -> dict[str, dict[str, Any]]:
        """The ``posthoc`` entry of ``experiment_summary.json``: :data:`SUMMARY_KEYS`."""
        return {name: {k: m[k] for k in SUMMARY_KEYS} for name, m in self.metrics.items()}


def posthoc_variants(
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    classes: list[str],
    original_counts: Sequence[int] | np.ndarray,
    trained_counts: Sequence[int] | np.ndarray,
) -> Posthoc:
    """Fit every post-hoc variant on ``val`` (labels, probabilities) and score it on ``test``.

    Parameters
    ----------
    val, test : tuple of numpy.ndarray
        ``(labels, probabilities)`` of the validation and the test split.
    classes : list of str
        The class names, in column order.
    original_counts, trained_counts : array-like of int
        Training class counts before and after balancing.

    Returns
    -------
    Posthoc
        Test metrics of ``logit_adjustment`` (``softmax(log p - log π_orig)``, which
        targets the balanced error: read its balanced accuracy), ``threshold_moving``
        (offsets maximising validation macro-F1), ``temperature`` and
        ``prior_correction``.
    """
    val_y, val_p = val
    test_y, test_p = test
    offsets = tune_class_offsets(val_y, val_p) if len(val_y) else np.zeros(len(classes))
    temperature = fit_temperature(val_y, val_p)
    variants = posthoc_probabilities(test_p, temperature, offsets, original_counts, trained_counts)
    return Posthoc(
        metrics={k: classification_metrics(test_y, p, classes) for k, p in variants.items()},
        temperature=temperature,
        offsets=offsets,
        prior_weights=prior_weights(original_counts, trained_counts),
    )


#: the post-hoc variants, in the order ``test_metrics.csv`` lists them
VARIANTS = ("logit_adjustment", "threshold_moving", "temperature", "prior_correction")


def posthoc_probabilities(
    proba: np.ndarray,
    temperature: float,
    offsets: Sequence[float] | np.ndarray,
    original_counts: Sequence[int] | np.ndarray,
    trained_counts: Sequence[int] | np.ndarray,
) -> dict[str, np.ndarray]:
    """Every post-hoc variant of ``proba``, from what was fitted on validation.

    The one place the variants are computed: a run's ``test_metrics.csv`` and
    ``imgbalance predict`` both call it, so a prediction reproduces the run's numbers.
    """
    prior = _prior(original_counts, "original_counts")
    return {
        "logit_adjustment": logit_adjusted(proba, prior),
        "threshold_moving": apply_offsets(proba, np.asarray(offsets, dtype=np.float64)),
        "temperature": temperature_scaled(proba, temperature),
        "prior_correction": prior_corrected(proba, original_counts, trained_counts),
    }


def probability_rows(proba: np.ndarray) -> np.ndarray:
    """``proba`` as float64 rows that sum to 1 (a row of zeros stays zeros)."""
    p = np.asarray(proba, dtype=np.float64)
    s = p.sum(axis=1, keepdims=True)
    out: np.ndarray = np.where(s > 0, p / np.where(s > 0, s, 1.0), p)
    return out
