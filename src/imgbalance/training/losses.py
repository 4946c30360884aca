"""Losses for imbalanced training, all accepting hard labels or soft (MixUp/CutMix) targets.

Every loss here is a weighted cross-entropy family member::

    loss_i = - sum_c  w_c * t_ic * (1 - p_ic) ** gamma * log p_ic

with ``p = softmax(logits + tau * log prior)`` for balanced softmax, ``t`` the
one-hot or soft target, ``w`` per-class weights (all 1 for none) and the mean
taken like PyTorch's weighted cross-entropy: divided by ``sum_i sum_c w_c t_ic``.
So focal loss with ``gamma = 0`` is exactly ``F.cross_entropy(weight=w)`` and
balanced softmax is cross-entropy on log-prior-adjusted logits (tests check both).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ClassLoss",
    "class_weights",
    "sample_weights",
]


def sample_weights(labels: np.ndarray, kind: str) -> np.ndarray:
    """Per-sample drawing weights of a weighted random sampler.

    ``class-balanced``: 1 / n_c, so every class is drawn equally often;
    ``sqrt``: 1 / sqrt(n_c), halfway between the data's frequencies and uniform.
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels).astype(np.float64)
    if kind not in ("class-balanced", "sqrt"):
        raise ValueError(f'sampler must be class-balanced or sqrt; got "{kind}"')
    power = 1.0 if kind == "class-balanced" else 0.5
    per_class = np.zeros_like(counts)
    present = counts > 0
    per_class[present] = 1.0 / counts[present] ** power
    out: np.ndarray = per_class[labels]
    return out


def class_weights(counts: Sequence[int], kind: str, beta: float = 0.999) -> np.ndarray:
    """Per-class weights from *original* training counts, normalised to mean 1.

    ``inverse``: 1 / n_c; ``sqrt``: 1 / sqrt(n_c); ``effective``: (1 - beta) /
    (1 - beta ** n_c) (Cui et al., 2019); ``none``: ones. A class with no
    training image gets weight 0 (it cannot be learnt; it is never predicted
    for a reason, and a weight would only divide by zero).
    """
    n = np.asarray(counts, dtype=np.float64)
    present = n > 0
    w = np.zeros_like(n)
    if kind == "none":
        w[present] = 1.0
    elif kind == "inverse":
        w[present] = 1.0 / n[present]
    elif kind == "sqrt":
        w[present] = 1.0 / np.sqrt(n[present])
    elif kind == "effective":
        if not 0 <= beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        w[present] = (1.0 - beta) / (1.0 - np.power(beta, n[present]))
    else:
        raise ValueError(f'class weights must be none, inverse, sqrt or effective; got "{kind}"')
    if present.any():
        w[present] *= present.sum() / w[present].sum()
    return w


class ClassLoss(nn.Module):
    """Weighted / focal / balanced-softmax cross-entropy (see the module docstring).

    ``weight`` can be changed between epochs (deferred re-weighting) with
    :meth:`set_weight`.
    """

    weight: torch.Tensor
    log_prior: torch.Tensor

    def __init__(
        self,
        n_classes: int,
        *,
        weight: Sequence[float] | np.ndarray | None = None,
        gamma: float = 0.0,
        prior: Sequence[float] | np.ndarray | None = None,
        tau: float = 0.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.gamma = float(gamma)
        self.tau = float(tau)
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("weight", torch.ones(n_classes))
        self.set_weight(weight)
        log_prior = torch.zeros(n_classes)
        if prior is not None:
            p = torch.as_tensor(np.asarray(prior, dtype=np.float64), dtype=torch.float32)
            log_prior = torch.log(torch.clamp(p / p.sum(), min=1e-12))
        self.register_buffer("log_prior", log_prior)

    def set_weight(self, weight: Sequence[float] | np.ndarray | None) -> None:
        w = (
            torch.ones(self.n_classes)
            if weight is None
            else torch.as_tensor(np.asarray(weight, dtype=np.float64), dtype=torch.float32)
        )
        self.weight.copy_(w.to(self.weight.device))

    def adjusted(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits as the loss sees them (balanced softmax adds ``tau * log prior``)."""
        if self.tau:
            return logits + self.tau * self.log_prior
        return logits

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = self.adjusted(logits.float())
        if target.ndim == 1:
            target = F.one_hot(target.long(), self.n_classes).float()
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + self.label_smoothing / self.n_classes
        log_p = F.log_softmax(logits, dim=1)
        term = -log_p
        if self.gamma:
            term = term * (1.0 - log_p.exp()).pow(self.gamma)
        w = self.weight * target
        denom = w.sum()
        return (w * term).sum() / torch.clamp(denom, min=1e-12)
