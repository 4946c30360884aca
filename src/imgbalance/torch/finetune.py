"""Fine-tuning: which parameters train, at which learning rate, and the pieces of
classifier re-training (cRT, Kang et al. 2020, "Decoupling representation and
classifier for long-tailed recognition").

The head is the model's final linear layer and the backbone everything else
(:func:`imgbalance.torch.models.split_parameters`). :func:`freeze_backbone` stops the
backbone's gradients; :func:`train_mode` is ``model.train()`` that leaves frozen parts in
eval mode, so frozen BatchNorm layers keep their running statistics;
:func:`build_optimizer` gives Adam the trainable parameters only, in a ``backbone`` group
(lr x ``backbone_lr_mult``) and a ``head`` group (lr). Imports torch.
"""

from __future__ import annotations

import torch
from torch import nn

from .models import final_linear, split_parameters

__all__ = ["build_optimizer", "freeze_backbone", "group_lr", "reset_head", "train_mode"]

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
    model: nn.Module, lr: float, weight_decay: float, backbone_lr_mult: float = 1.0
) -> torch.optim.Adam:
    """Adam over the trainable parameters: group ``backbone`` at ``lr * backbone_lr_mult``,
    group ``head`` at ``lr`` (a group with nothing to train is left out). A learning-rate
    schedule scales every group alike."""
    backbone, head = split_parameters(model)
    groups = [
        {"params": [p for p in params if p.requires_grad], "lr": lr * mult, "name": name}
        for name, params, mult in (("backbone", backbone, backbone_lr_mult), ("head", head, 1.0))
    ]
    return torch.optim.Adam([g for g in groups if g["params"]], lr=lr, weight_decay=weight_decay)


def group_lr(opt: torch.optim.Optimizer, name: str = "head") -> float:
    """The current learning rate of the parameter group ``name`` (0 where that part has
    nothing that trains, a frozen backbone)."""
    return float(next((g["lr"] for g in opt.param_groups if g.get("name") == name), 0.0))


def reset_head(model: nn.Module, seed: int) -> None:
    """Draw the head's weights again (its layer's own initialisation) from ``seed``."""
    torch.manual_seed(seed)
    final_linear(model)[2].reset_parameters()
