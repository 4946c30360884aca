"""Offline augmentation as a balancing method: flipped, rotated, re-lit copies.

Each new image comes from one original of its class (originals are used in
turn, in a seeded order, so every original contributes before any repeats).
The recipe stores the image's own seed and the parameters drawn from it; see
:mod:`imgbalance.augment` for the policies and the rendering.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..errors import ImgBalanceError
from ..planning.augment import (
    POLICY_FIELDS,
    AugmentPolicy,
    augment_features,
    draw_augment,
    make_policy,
)
from ..planning.recipes import PlanState, Recipe
from ..planning.targets import Target
from ._base import Method, register


def add_augmented(
    state: PlanState,
    label: int,
    n_new: int,
    policy: AugmentPolicy,
    policy_name: str,
    rng: np.random.Generator,
    method: str,
) -> None:
    """Append ``n_new`` augmented copies of the class's originals."""
    rows = state.indices(label, originals_only=True)
    if n_new <= 0 or len(rows) == 0:
        return
    rounds = math.ceil(n_new / len(rows))
    parents = np.concatenate([rng.permutation(rows) for _ in range(rounds)])[:n_new]
    seeds = rng.integers(0, 2**63 - 1, n_new, dtype=np.int64)
    shape = state.feature_shape
    parent_rows = state.take(parents)
    features = np.empty_like(parent_rows)
    recipes = []
    for n, (row, seed) in enumerate(zip(parents.tolist(), seeds.tolist(), strict=True)):
        drawn = draw_augment(policy, seed)
        features[n] = augment_features(parent_rows[n], shape, drawn) if shape else parent_rows[n]
        recipes.append(
            Recipe(
                op="augment",
                label=label,
                parents=(row,),
                weights=(1.0,),
                method=method,
                params={"policy": policy_name, **drawn},
                seed=int(seed),
            )
        )
    if shape is None:
        note = (
            f"{method}: the planning features are not images, so each augmented image is "
            "planned with its parent's features."
        )
        if note not in state.notes:
            state.notes.append(note)
    state.add_recipes(features, recipes)


@register
class Augment(Method):
    """Augmented copies of originals: flips, small rotations, brightness/contrast (Pillow,
    as torchvision applies them); each image's seed and drawn parameters are recorded."""

    name = "augment"
    defaults: ClassVar[dict[str, Any]] = {
        "policy": "conservative",
        **dict.fromkeys(POLICY_FIELDS),
        "fraction": None,
    }

    def policy(self) -> AugmentPolicy:
        return make_policy(str(self.params["policy"]), {k: self.params[k] for k in POLICY_FIELDS})

    def validate(self) -> None:
        self.policy()
        frac = self.params["fraction"]
        if frac is not None and (not isinstance(frac, (int, float)) or frac < 0):
            raise ImgBalanceError(f"augment: fraction must be >= 0, got {frac!r}.")

    def run(self, state: PlanState, target: Target, rng: np.random.Generator) -> None:
        before = state.counts()
        policy = self.policy()
        frac = self.params["fraction"]
        for label, goal in self.resolve(target, state).items():
            count = int(state.counts()[label])
            n_new = round(frac * int(before[label])) if frac is not None else goal - count
            add_augmented(state, label, n_new, policy, self.params["policy"], rng, self.name)
        state.record(self.name, before)
