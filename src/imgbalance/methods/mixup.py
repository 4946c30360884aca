"""Within-class Mixup: ``(1 - t) * a + t * b`` of two images of the same class.

``lam ~ Beta(alpha, alpha)`` is drawn per new image; the parent with the larger
weight is the base (its size and format are kept), so ``t = min(lam, 1 - lam)``.
By default Mixup fills each class up to its target; with ``fraction`` it adds
``round(fraction x count)`` images to every class instead (STEM's last step).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import ImgBalanceError
from ..planning.recipes import PlanState
from ..planning.targets import Target
from ._base import Method, register


def add_mixup(
    state: PlanState,
    label: int,
    n_new: int,
    alpha: float,
    parents: str,
    rng: np.random.Generator,
    method: str,
) -> None:
    rows = state.indices(label, originals_only=parents == "originals")
    if n_new <= 0 or len(rows) == 0:
        return
    if len(rows) == 1:
        state.notes.append(
            f'{method}: class "{state.classes[label]}" has one image; '
            f"its {n_new} Mixup image(s) are copies of it."
        )
        state.add_copies(label, rows[np.zeros(n_new, dtype=int)], method=method)
        return
    a = rng.integers(0, len(rows), n_new)
    b = (a + rng.integers(1, len(rows), n_new)) % len(rows)  # a different image
    lam = rng.beta(alpha, alpha, n_new)
    t = np.minimum(lam, 1.0 - lam)
    state.add_blends(label, rows[a], rows[b], t, op="mixup", method=method, params={"alpha": alpha})


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
