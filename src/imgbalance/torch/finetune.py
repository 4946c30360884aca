"""Fine-tuning: which parameters train, at which learning rate, and the pieces of
classifier re-training (cRT, Kang et al. 2020, "Decoupling representation and
classifier for long-tailed recognition").

The head is the model's final linear layer and the backbone everything else
(:func:`imgbalance.torch.models.split_parameters`). :func:`freeze_backbone` stops the
backbone's gradients; :func:`train_mode` is ``model.train()`` that leaves frozen parts in
eval mode, so frozen BatchNorm layers keep their running statistics;
:func:`build_optimizer` gives Adam (or SGD with momentum) the trainable parameters only, in
a ``backbone`` group (lr x ``backbone_lr_mult``) and a ``head`` group (lr);
:func:`build_schedule` is the learning-rate schedule over epochs (a step every
``step_size`` epochs, steps at milestones, or cosine; optionally after a linear warm-up).
Imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .models import final_linear, split_parameters

__all__ = [
    "OPTIMIZERS", "SCHEDULES", "build_optimizer", "build_schedule", "freeze_backbone",
    "group_lr", "reset_head", "train_mode",
]  # fmt: skip

OPTIMIZERS = ("adam", "sgd")
#: ``step``: x gamma every step_size epochs; ``multistep``: x gamma at each milestone
#: epoch; ``cosine``: half a cosine from lr to 0 over the epochs after the warm-up
SCHEDULES = ("step", "multistep", "cosine")

#: layers with running statistics that a training-mode forward pass updates
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def freeze_backbone(model: nn.Module) -> None:
    """Every parameter but the head's stops training (``requires_grad`` off)."""
    backbone, head = split_parameters(model)
    for p in backbone:
        p.requires_grad_(False)
    for p in head:
        p.requires_grad_(True)


def train_mode(model: nn.Module) -> nn.Module:
    """``model.train()``, except what is frozen: a module whose parameters are all frozen
    (and a BatchNorm layer without trainable parameters, once anything is frozen) is put in
    eval mode, so its running statistics stay as they are. Parameter-free layers such as
    dropout outside a frozen block keep training behaviour."""
    model.train()
    if all(p.requires_grad for p in model.parameters()):
        return model
    for module in model.modules():
        own = list(module.parameters())
        frozen = not any(p.requires_grad for p in own)
        if frozen and (own or isinstance(module, _BATCH_NORMS)):
            module.eval()
    return model


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    backbone_lr_mult: float = 1.0,
    *,
    kind: str = "adam",
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """Adam, or SGD with ``momentum`` (``kind="sgd"``: the CIFAR-LT protocol's), over the
    trainable parameters: group ``backbone`` at ``lr * backbone_lr_mult``, group ``head`` at
    ``lr`` (a group with nothing to train is left out). A learning-rate schedule scales
    every group alike. Weight decay applies to every parameter, as in the papers' code."""
    backbone, head = split_parameters(model)
    groups = [
        {"params": [p for p in params if p.requires_grad], "lr": lr * mult, "name": name}
        for name, params, mult in (("backbone", backbone, backbone_lr_mult), ("head", head, 1.0))
    ]
    groups = [g for g in groups if g["params"]]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if kind != "adam":
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {kind!r}")
    return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)


def build_schedule(
    opt: torch.optim.Optimizer,
    schedule: str,
    epochs: int,
    *,
    step_size: int = 15,
    gamma: float = 0.1,
    milestones: Sequence[int] = (),
    warmup_epochs: int = 0,
) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning rate of each epoch (the scheduler steps once an epoch).

    Epoch ``k`` (1-based) trains at ``lr * warm(k) * decay(k)``: ``warm(k) = k / W`` for the
    first ``W = warmup_epochs`` epochs, then 1 (Goyal et al.'s linear warm-up, as the LDAM-DRW
    code does it); ``decay`` is ``gamma ** ((k - 1) // step_size)`` (step), ``gamma`` to the
    number of milestones below ``k`` (multistep: with milestones 160, 180, epoch 161 is the
    first at ``lr * gamma``), or ``(1 + cos(pi * (k - 1 - W) / (epochs - W))) / 2`` (cosine).
    ``step`` without warm-up is torch's ``StepLR`` itself, so runs made before the other
    schedules existed keep their exact learning rates."""
    if schedule == "step" and not warmup_epochs:
        return torch.optim.lr_scheduler.StepLR(opt, step_size, gamma)
    marks = sorted(int(m) for m in milestones)
    span = max(epochs - warmup_epochs, 1)

    def factor(e: int) -> float:  # e: epochs finished, so the epoch is k = e + 1
        warm = (e + 1) / warmup_epochs if e < warmup_epochs else 1.0
        if schedule == "step":
            decay = gamma ** (e // step_size)
        elif schedule == "multistep":
            decay = gamma ** sum(1 for m in marks if e >= m)
        elif schedule == "cosine":
            t = min(max(e - warmup_epochs, 0), span) / span
            decay = 0.5 * (1.0 + math.cos(math.pi * t))
        else:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
        return warm * decay

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def group_lr(opt: torch.optim.Optimizer, name: str = "head") -> float:
    """The current learning rate of the parameter group ``name`` (0 where that part has
    nothing that trains, a frozen backbone)."""
    return float(next((g["lr"] for g in opt.param_groups if g.get("name") == name), 0.0))


def reset_head(model: nn.Module, seed: int) -> None:
    """Draw the head's weights again (its layer's own initialisation) from ``seed``."""
    torch.manual_seed(seed)
    final_linear(model)[2].reset_parameters()
