"""Online mixing of training batches (MixUp, CutMix), by registry name.

``@MIXING.register("name")`` adds one: a function ``(n_classes, alpha) -> mixer``,
where ``mixer(x, target)`` returns the mixed batch and its soft targets. ``none``
(the default, not registered) leaves batches alone. The mixers are torchvision's
``transforms.v2`` ones, imported when a run uses them.

Randomness: torchvision's MixUp and CutMix draw from torch's global generator (they
take no ``torch.Generator``); the training loop seeds it from the run's seed before
the model is built (the initial weights need it too), so a run is still reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import Registry

__all__ = ["MIXING", "create_mixing", "list_mixing"]

Mixer = Callable[[Any, Any], tuple[Any, Any]]
#: online mixing, by name (``mixing`` of a run; ``none`` leaves batches alone)
MIXING: Registry[Callable[[int, float], Mixer]] = Registry(
    "mixing", "See `imgbalance list mixing`.", plural="mixing techniques"
)


@MIXING.register("mixup", help="torchvision MixUp: convex blends of two images and labels")
def _mixup(n_classes: int, alpha: float) -> Mixer:
    from torchvision.transforms import v2

    mixer: Mixer = v2.RandomChoice([v2.MixUp(alpha=alpha, num_classes=n_classes)])
    return mixer


@MIXING.register("cutmix", help="torchvision CutMix: a box of one image pasted on another")
def _cutmix(n_classes: int, alpha: float) -> Mixer:
    from torchvision.transforms import v2

    mixer: Mixer = v2.RandomChoice([v2.CutMix(alpha=alpha, num_classes=n_classes)])
    return mixer


@MIXING.register("mixup-cutmix", help="MixUp or CutMix, chosen at random per batch")
def _mixup_cutmix(n_classes: int, alpha: float) -> Mixer:
    from torchvision.transforms import v2

    mixer: Mixer = v2.RandomChoice(
        [
            v2.MixUp(alpha=alpha, num_classes=n_classes),
            v2.CutMix(alpha=alpha, num_classes=n_classes),
        ]
    )
    return mixer


def list_mixing() -> list[str]:
    """Names of the online mixing techniques (``none`` besides)."""
    return MIXING.names()


def create_mixing(name: str, n_classes: int, alpha: float) -> Mixer | None:
    """The mixer ``name`` for ``n_classes`` classes, or None for ``none``."""
    if name == "none":
        return None
    return MIXING.get(name)(n_classes, alpha)
