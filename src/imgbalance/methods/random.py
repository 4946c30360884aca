"""Random over-sampling (byte-for-byte duplicates) and random under-sampling."""

from __future__ import annotations

import numpy as np

from ..planning.recipes import PlanState
from ..planning.targets import Target
from ._base import Method, register


def add_random_copies(
    state: PlanState, label: int, n_new: int, rng: np.random.Generator, method: str
) -> None:
    """Duplicate ``n_new`` originals of a class, drawn with replacement."""
    rows = state.indices(label, originals_only=True)
    if n_new > 0 and len(rows):
        state.add_copies(label, rows[rng.integers(0, len(rows), n_new)], method=method)


@register
class RandomOver(Method):
    """Duplicate random originals of each class up to its target (no new pixels)."""

    name = "random-over"
    kind = "over"

    def run(self, state: PlanState, target: Target, rng: np.random.Generator) -> None:
        before = state.counts()
        for label, goal in self.resolve(target, state).items():
            add_random_copies(state, label, goal - int(state.counts()[label]), rng, self.name)
        state.record(self.name, before)


@register
class RandomUnder(Method):
    """Drop random originals of each class above its target."""

    name = "random-under"
    kind = "under"
    default_target = "auto"

    def run(self, state: PlanState, target: Target, rng: np.random.Generator) -> None:
        before = state.counts()
        for label, goal in self.resolve(target, state).items():
            rows = state.indices(label)
            extra = len(rows) - goal
            if extra > 0:
                state.remove(np.sort(rng.choice(rows, size=extra, replace=False)))
        state.record(self.name, before)
