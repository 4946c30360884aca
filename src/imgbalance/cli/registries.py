"""Every registry chosen by name, in one place for ``imgbalance list`` and the tests that
check the README and the help texts against them."""

from __future__ import annotations

from typing import Any

from ..registry import Registry

__all__ = ["FAMILIES", "LOSS_NAMES", "registry_of"]

FAMILIES = ("methods", "losses", "class-weights", "samplers", "mixing", "models")
#: the registered losses, for help texts without importing torch (a test checks that this
#: equals ``imgbalance.torch.losses.list_losses()``)
LOSS_NAMES = ("ce", "weighted-ce", "focal", "balanced-softmax", "logit-adjusted", "ldam")


def registry_of(family: str) -> tuple[Registry[Any], list[tuple[str, str]]]:
    """The registry of ``family`` and the names it accepts besides (``none``, torchvision).

    ``losses`` and ``models`` import torch (the torch extra); the others do not.
    """
    if family == "methods":
        from ..methods import METHODS

        return METHODS, []
    if family == "class-weights":
        from ..torch.weights import CLASS_WEIGHTS

        return CLASS_WEIGHTS, []
    if family == "samplers":
        from ..torch.samplers import SAMPLERS

        return SAMPLERS, [("none", "a plain shuffle (the default)")]
    if family == "mixing":
        from ..torch.mixing import MIXING

        return MIXING, [("none", "no online mixing (the default)")]
    if family in ("losses", "models"):
        from .._optional import require

        require("torch", "torch", f"imgbalance list {family}", "the other families need no torch")
        if family == "losses":
            from ..torch.losses import LOSSES

            return LOSSES, []
        from ..torch.models import MODELS

        return MODELS, [
            ("linear", "logistic regression on the engine's features (no torch)"),
            ("<torchvision name>", "any torchvision classifier, e.g. resnet18"),
            ("timm:<name>", "any timm model, e.g. timm:convnext_tiny (the timm extra)"),
        ]
    raise ValueError(f"unknown registry family {family!r}")
