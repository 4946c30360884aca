"""Evaluation metrics from scikit-learn and imbalanced-learn (no torch needed).

Every function takes integer labels and class-probability rows over *all*
classes, so a class absent from a split, or never predicted, still has its
row, column and zeros (never a crash or a shifted table). An empty split gives
NaN for every score.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from imblearn.metrics import geometric_mean_score
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)

__all__ = [
    "apply_offsets",
    "brier_score",
    "classification_metrics",
    "confidence_table",
    "expected_calibration_error",
    "logit_adjusted",
    "negative_log_likelihood",
    "tune_class_offsets",
]


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-class confidence over ``bins`` equal-width bins."""
    if len(y) == 0:
        return float("nan")
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def negative_log_likelihood(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (log loss, natural logarithm).

    scikit-learn's ``log_loss`` with ``labels`` set to every class (``proba``'s
    columns), so a class absent from ``y`` keeps its column; probabilities are
    clipped to ``[eps, 1 - eps]`` (``eps`` of their dtype). Rows are renormalised to
    sum to 1 first: a float32 softmax (or a float32 feature matrix) sums to 1 only to
    about 1e-7. NaN for an empty ``y``.
    """
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return float("nan")
    total = proba.sum(axis=1, keepdims=True)
    proba = np.where(total > 0, proba / np.where(total > 0, total, 1.0), proba)
    n_classes = proba.shape[1]
    if n_classes < 2:  # log_loss needs two labels; one class is always right
        eps = np.finfo(proba.dtype).eps
        return float(-np.log(np.clip(proba[:, 0], eps, 1.0)).mean())
    return float(log_loss(y, proba, labels=list(range(n_classes))))


def brier_score(y: np.ndarray, proba: np.ndarray) -> float:
    """Multi-class Brier score: ``mean_i sum_k (proba[i, k] - [y_i == k]) ** 2``.

    Brier's original definition, summed over every class (so it lies in ``[0, 2]``;
    for two classes it is twice the binary Brier score of either class). NaN for an
    empty ``y``.
    """
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return float("nan")
    onehot = np.zeros(proba.shape, dtype=np.float64)
    onehot[np.arange(len(y)), y] = 1.0
    return float(((proba - onehot) ** 2).sum(axis=1).mean())


def classification_metrics(
    y: Sequence[int] | np.ndarray, proba: np.ndarray, classes: list[str]
) -> dict[str, Any]:
    """Every metric of a run on one split (see the module docstring).

    The calibration scores are ``ece`` (15 equal-width bins,
    :func:`expected_calibration_error`), ``nll`` (:func:`negative_log_likelihood`)
    and ``brier`` (:func:`brier_score`, summed over classes).
    """
    y = np.asarray(y, dtype=np.int64)
    labels = list(range(len(classes)))
    pred = proba.argmax(axis=1) if len(y) else np.zeros(0, dtype=np.int64)
    if len(y):
        p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0.0)
    else:  # an empty split: zeros, and NaN for the averages below
        p = r = f = np.zeros(len(labels))
        s = np.zeros(len(labels), dtype=np.int64)
    present = s > 0
    cm = confusion_matrix(y, pred, labels=labels) if len(y) else np.zeros((len(labels),) * 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        cm_norm = np.where(cm.sum(1, keepdims=True) > 0, cm / cm.sum(1, keepdims=True), 0.0)
    out: dict[str, Any] = {
        "n": len(y),
        "accuracy": float(accuracy_score(y, pred)) if len(y) else float("nan"),
        # mean recall over the classes present in this split (scikit-learn's definition)
        "balanced_accuracy": float(r[present].mean()) if present.any() else float("nan"),
        "macro_precision": float(p[present].mean()) if present.any() else float("nan"),
        "macro_recall": float(r[present].mean()) if present.any() else float("nan"),
        "macro_f1": float(
            f1_score(y, pred, labels=np.flatnonzero(present), average="macro", zero_division=0.0)
        )
        if present.any()
        else float("nan"),
        "weighted_precision": float(np.average(p, weights=s)) if s.sum() else float("nan"),
        "weighted_recall": float(np.average(r, weights=s)) if s.sum() else float("nan"),
        "weighted_f1": float(np.average(f, weights=s)) if s.sum() else float("nan"),
        "gmean": float(
            geometric_mean_score(y, pred, labels=np.flatnonzero(present), average="multiclass")
        )
        if present.sum() > 1
        else float("nan"),
        "ece": expected_calibration_error(y, proba),
        "nll": negative_log_likelihood(y, proba),
        "brier": brier_score(y, proba),
        "per_class": {
            c: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": cm.astype(int).tolist(),
        "confusion_matrix_normalized": np.round(cm_norm, 6).tolist(),
    }
    return out


def confidence_table(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    """Per true class: mean top-class confidence overall, when right and when wrong."""
    pred = proba.argmax(axis=1)
    conf = proba.max(axis=1)

    def mean(values: np.ndarray) -> float:
        return float(values.mean()) if len(values) else float("nan")

    rows = []
    for i, c in enumerate(classes):
        m = y == i
        right, wrong = m & (pred == y), m & (pred != y)
        rows.append(
            {
                "class": c,
                "support": int(m.sum()),
                "mean_confidence": mean(conf[m]),
                "mean_confidence_correct": mean(conf[right]),
                "mean_confidence_incorrect": mean(conf[wrong]),
                "mean_true_class_probability": mean(proba[m, i]),
                "n_correct": int(right.sum()),
            }
        )
    return rows


def logit_adjusted(proba: np.ndarray, prior: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """Post-hoc logit adjustment: ``softmax(log p - tau * log prior)`` (Menon et al., 2021)."""
    logp = np.log(np.clip(proba, 1e-12, 1.0)) - tau * np.log(np.clip(prior, 1e-12, None))
    logp -= logp.max(axis=1, keepdims=True)
    e = np.exp(logp)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def tune_class_offsets(
    y: np.ndarray, proba: np.ndarray, *, grid: Sequence[float] | None = None, rounds: int = 2
) -> np.ndarray:
    """Threshold moving: per-class offsets on log-probabilities that maximise macro-F1 on
    ``(y, proba)`` (the validation split), by coordinate ascent over ``grid``."""
    values = np.linspace(-3.0, 3.0, 25) if grid is None else np.asarray(grid, dtype=np.float64)
    n_classes = proba.shape[1]
    logp = np.log(np.clip(proba, 1e-12, 1.0))
    offsets = np.zeros(n_classes)
    present = np.unique(y)

    def score(off: np.ndarray) -> float:
        pred = (logp + off).argmax(axis=1)
        return float(f1_score(y, pred, labels=present, average="macro", zero_division=0.0))

    best = score(offsets)
    for _ in range(rounds):
        for c in range(n_classes):
            for g in values:
                trial = offsets.copy()
                trial[c] = g
                s = score(trial)
                if s > best + 1e-12:
                    best, offsets = s, trial
    return offsets


def apply_offsets(proba: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``softmax(log proba + offsets)``: the class offsets of :func:`tune_class_offsets`."""
    logp = np.log(np.clip(proba, 1e-12, 1.0)) + offsets
    logp -= logp.max(axis=1, keepdims=True)
    e = np.exp(logp)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out
