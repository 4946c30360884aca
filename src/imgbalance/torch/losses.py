"""Losses for imbalanced training, all accepting hard labels or soft (MixUp/CutMix) targets.

Every loss here is a weighted cross-entropy family member::

    loss_i = - sum_c  w_c * t_ic * (1 - p_ic) ** gamma * log p_ic

with ``p = softmax(logits + tau * log prior)`` for balanced softmax, ``t`` the
one-hot or soft target, ``w`` per-class weights (all 1 for none) and the mean
taken like PyTorch's weighted cross-entropy: divided by ``sum_i sum_c w_c t_ic``.
So focal loss with ``gamma = 0`` is exactly ``F.cross_entropy(weight=w)`` and
balanced softmax is cross-entropy on log-prior-adjusted logits (tests check both).
Logit-adjusted cross-entropy (Menon et al. 2021) is the same loss with the prior's weight
``tau`` as a setting: at ``tau = 1`` it *is* balanced softmax (Ren et al. 2020), two names
the literature gives one formula. LDAM (Cao et al. 2019, :class:`LDAMLoss`) subtracts a
per-class margin ``scale * m_y`` from the true class's logit, ``m_j`` proportional to
``n_j ** -1/4``, before the same cross-entropy; it is defined on a cosine head's logits.

Losses are chosen by name: ``@register_loss("name")`` adds a builder
``(n_classes, LossSpec) -> nn.Module``; :func:`create_loss` and :func:`list_losses`
are the way in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry

__all__ = [
    "LOSSES", "ClassLoss", "LDAMLoss", "LossSpec", "create_loss", "ldam_margins", "list_losses",
    "register_loss",
]  # fmt: skip


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

    def targets(self, target: torch.Tensor) -> torch.Tensor:
        """Hard labels as one-hot rows (soft targets as they are), label-smoothed."""
        if target.ndim == 1:
            target = F.one_hot(target.long(), self.n_classes).float()
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + self.label_smoothing / self.n_classes
        return target

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.cross_entropy(self.adjusted(logits.float()), self.targets(target))

    def cross_entropy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The weighted (focal) cross-entropy of ``logits`` against target rows."""
        log_p = F.log_softmax(logits, dim=1)
        term = -log_p
        if self.gamma:
            term = term * (1.0 - log_p.exp()).pow(self.gamma)
        w = self.weight * target
        denom = w.sum()
        return (w * term).sum() / torch.clamp(denom, min=1e-12)


def ldam_margins(counts: Sequence[float] | np.ndarray, max_margin: float = 0.5) -> np.ndarray:
    """LDAM's margins: ``m_j = C / n_j ** (1/4)`` with ``C`` such that the rarest class's
    margin is ``max_margin`` (Cao et al. 2019, eq. 13 and their code). A class with no
    training image counts as one."""
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    m = n**-0.25
    return np.asarray(m * (max_margin / m.max()))


class LDAMLoss(ClassLoss):
    """Label-distribution-aware margin loss: cross-entropy (weighted like
    :class:`ClassLoss`, so deferred re-weighting applies) on
    ``logits - scale * m_y`` for the true class ``y``; a soft (mixed) target ``t`` takes
    ``scale * t_c * m_c`` off each class's logit (one-hot: exactly the paper's loss).
    ``scale`` is the cosine head's (its logits are ``scale * cos``), so the margin is
    ``m_y`` in cosine units, as in the paper."""

    margins: torch.Tensor

    def __init__(
        self,
        n_classes: int,
        counts: Sequence[float] | np.ndarray,
        *,
        max_margin: float = 0.5,
        scale: float = 30.0,
        weight: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        super().__init__(n_classes, weight=weight)
        margins = torch.as_tensor(ldam_margins(counts, max_margin), dtype=torch.float32)
        self.register_buffer("margins", margins * float(scale))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = self.targets(target)
        return self.cross_entropy(logits.float() - t * self.margins, t)


@dataclass(frozen=True)
class LossSpec:
    """What a loss may need: per-class weights, whether the run asked for them, the
    class prior (original training counts) and the loss's own settings."""

    weight: np.ndarray
    weighted: bool = False
    prior: np.ndarray | None = None
    gamma: float = 2.0
    tau: float = 1.0
    #: LDAM: the rarest class's margin (cosine units) and the cosine head's scale
    max_margin: float = 0.5
    scale: float = 30.0


Builder = Callable[[int, LossSpec], nn.Module]
#: training losses, by name (``loss`` of a run)
LOSSES: Registry[Builder] = Registry("loss", "See `imgbalance list losses`.", plural="losses")


def register_loss(name: str, *, help: str = "") -> Callable[[Builder], Builder]:
    """Decorator registering ``build(n_classes, spec) -> nn.Module`` as loss ``name``."""
    return LOSSES.register(name, help=help)


@register_loss("ce", help="cross-entropy (class weights only if class_weights is set)")
def _ce(n_classes: int, spec: LossSpec) -> nn.Module:
    return ClassLoss(n_classes, weight=spec.weight if spec.weighted else None)


@register_loss("weighted-ce", help="cross-entropy weighted per class (default: inverse)")
def _weighted_ce(n_classes: int, spec: LossSpec) -> nn.Module:
    return ClassLoss(n_classes, weight=spec.weight)


@register_loss("focal", help="focal loss (focal_gamma), optionally class-weighted (alpha)")
def _focal(n_classes: int, spec: LossSpec) -> nn.Module:
    return ClassLoss(n_classes, weight=spec.weight, gamma=spec.gamma)


# one formula, two names in the literature (see the module docstring)
@register_loss("balanced-softmax", help="cross-entropy on logits + tau * log prior")
@register_loss(
    "logit-adjusted",
    help="logit-adjusted cross-entropy (Menon et al.): logits + tau * log prior; "
    "tau=1 is balanced-softmax",
)
def _prior_adjusted(n_classes: int, spec: LossSpec) -> nn.Module:
    return ClassLoss(n_classes, weight=spec.weight, prior=spec.prior, tau=spec.tau)


@register_loss(
    "ldam", help="LDAM (Cao et al.): margins ~ n^-1/4 on a cosine head; with drw_epoch: LDAM-DRW"
)
def _ldam(n_classes: int, spec: LossSpec) -> nn.Module:
    if spec.prior is None:
        raise ValueError("LDAM needs the training counts (LossSpec.prior).")
    weight = spec.weight if spec.weighted else None
    return LDAMLoss(n_classes, spec.prior, max_margin=spec.max_margin, scale=spec.scale,
                    weight=weight)  # fmt: skip


def list_losses() -> list[str]:
    """Names of the registered losses."""
    return LOSSES.names()


def create_loss(name: str, n_classes: int, spec: LossSpec | None = None, **kw: Any) -> nn.Module:
    """The loss ``name`` for ``n_classes`` classes (``spec``, or its fields as keywords)."""
    if spec is None:
        kw.setdefault("weight", np.ones(n_classes))
        spec = LossSpec(**kw)
    return LOSSES.get(name)(n_classes, spec)
