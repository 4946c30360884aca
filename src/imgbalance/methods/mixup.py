"""Within-class Mixup: ``(1 - t) * a + t * b`` of two different images of the same class.

``lam ~ Beta(alpha, alpha)`` is drawn per new image; the parent with the larger
weight is the base (its size and format are kept), so ``t = min(lam, 1 - lam)``.
A ``t`` under :data:`MIN_SHARE` is drawn again: such a blend differs from its base
by a few grey levels at most, a copy in all but name. By default Mixup fills each
class up to its target; with ``fraction`` it adds ``round(fraction x count)``
images to every class instead (STEM's last step).

Mixup blends two *different* images: augmented images are not blended again (a
recipe blends originals, so their augmentation would be lost) and images with the
same features (copies, duplicate files) count once. A class without two different
images gets augmented copies of its image instead; the plan's notes say so.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import ImgBalanceError
from ..planning.augment import make_policy
from ..planning.recipes import PlanState
from ..planning.targets import Target
from ._base import Method, register
from .augment import add_augmented

#: the smallest weight of the second parent: below it a blend differs from its base by
#: at most 255 / 50 = 5 grey levels, and two such blends of one base are often one file
MIN_SHARE = 0.02


def blendable_rows(state: PlanState, label: int, parents: str) -> np.ndarray:
    """One row per different image of the class that Mixup may blend."""
    rows = [
        r
        for r in state.indices(label, originals_only=parents == "originals").tolist()
        if (recipe := state.recipes[r]) is None or recipe.op != "augment"
    ]
    out = np.asarray(rows, dtype=np.int64)
    if len(out) < 2:
        return out
    _, first = np.unique(state.take(out), axis=0, return_index=True)
    return np.asarray(out[np.sort(first)])


def draw_shares(alpha: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``t = min(lam, 1 - lam)`` with ``lam ~ Beta(alpha, alpha)``, redrawn below MIN_SHARE."""
    lam = rng.beta(alpha, alpha, n)
    t = np.minimum(lam, 1.0 - lam)
    for _ in range(100):
        low = np.flatnonzero(t < MIN_SHARE)
        if len(low) == 0:
            return t
        lam = rng.beta(alpha, alpha, len(low))
        t[low] = np.minimum(lam, 1.0 - lam)
    low = np.flatnonzero(t < MIN_SHARE)  # only a tiny alpha gets here
    t[low] = rng.uniform(MIN_SHARE, 0.5, len(low))
    return t


def add_mixup(
    state: PlanState,
    label: int,
    n_new: int,
    alpha: float,
    parents: str,
    rng: np.random.Generator,
    method: str,
) -> None:
    if n_new <= 0 or len(state.indices(label)) == 0:
        return
    rows = blendable_rows(state, label, parents)
    if len(rows) >= 2:
        a = rng.integers(0, len(rows), n_new)
        b = (a + rng.integers(1, len(rows), n_new)) % len(rows)  # a different image
        t = draw_shares(alpha, n_new, rng)
        state.add_blends(
            label, rows[a], rows[b], t, op="mixup", method=method, params={"alpha": alpha}
        )
        return
    why = (
        f'{method}: class "{state.classes[label]}" has no two different images to blend '
        "(a Mixup of an image with itself is a copy of it)"
    )
    if len(state.indices(label, originals_only=True)):
        state.notes.append(
            f"{why}; its {n_new} Mixup image(s) are augmented copies of its image instead."
        )
        policy = make_policy("conservative", {})
        add_augmented(state, label, n_new, policy, "conservative", rng, method)
        return
    state.notes.append(f"{why}; its {n_new} Mixup image(s) are left out.")


@register
class Mixup(Method):
    """Within-class Mixup of two different images, lam ~ Beta(alpha, alpha)."""

    name = "mixup"
    defaults: ClassVar[dict[str, Any]] = {"alpha": 0.4, "fraction": None, "parents": "originals"}

    def validate(self) -> None:
        alpha = self.params["alpha"]
        if not isinstance(alpha, (int, float)) or alpha <= 0:
            raise ImgBalanceError(f"mixup: alpha must be > 0, got {alpha!r}.")
        frac = self.params["fraction"]
        if frac is not None and (not isinstance(frac, (int, float)) or frac < 0):
            raise ImgBalanceError(f"mixup: fraction must be >= 0, got {frac!r}.")
        self._choice("parents", ("originals", "all"))

    def run(self, state: PlanState, target: Target, rng: np.random.Generator) -> None:
        before = state.counts()
        frac = self.params["fraction"]
        for label, goal in self.resolve(target, state).items():
            count = int(before[label])
            n_new = round(frac * count) if frac is not None else goal - count
            add_mixup(
                state,
                label,
                n_new,
                float(self.params["alpha"]),
                self.params["parents"],
                rng,
                self.name,
            )
        state.record(self.name, before)
