"""Methods made of other methods: pipelines, SMOTE-ENN and SMOTE-Tomek (STEM: :mod:`.stem`)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from ..planning.recipes import PlanState
from ..planning.targets import Target
from ._base import METHODS, Method, register
from .cleaning import ENN, Cleaner, Tomek
from .smote import SMOTE


class Pipeline(Method):
    """Methods applied in order; each resolves the target against the counts it meets."""

    kind = "hybrid"

    def __init__(self, steps: list[Method]) -> None:
        super().__init__()
        self.steps = steps
        self.name = ",".join(s.name for s in steps)  # type: ignore[misc]

    def validate(self) -> None:
        for s in self.steps:
            s.validate()

    def target_for(self, user_target: Any) -> Any:
        return user_target

    def run(self, state: PlanState, target: Target | None, rng: np.random.Generator) -> None:
        for step in self.steps:
            step.run(state, step.target_for(target), rng)

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "steps": [s.describe() for s in self.steps]}

    def __repr__(self) -> str:
        return f"Pipeline({self.steps!r})"


def create_pipeline(spec: str | list[str] | Method, **common: Any) -> Method:
    """A method from ``"smote"``, ``"smote,enn,mixup"`` or a list of names.

    ``common`` parameters go to every step that accepts them; a parameter no
    step accepts is an error.
    """
    if isinstance(spec, Method):
        return spec
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec)]
    if not names or not all(names):
        raise ConfigError(f"Empty method in {spec!r}.")
    classes = [METHODS.get(n) for n in names]
    unused = sorted(k for k in common if not any(k in c.defaults for c in classes))
    if unused:
        raise ConfigError(f"Parameter(s) {unused} are not accepted by {', '.join(names)}.")
    steps = [c(**{k: v for k, v in common.items() if k in c.defaults}) for c in classes]
    return steps[0] if len(steps) == 1 else Pipeline(steps)


def _unguarded(cleaner: Cleaner) -> Cleaner:
    """A cleaner inside a hybrid: its ``clean_originals`` default already protects originals,
    and ``majority`` / ``all`` there are imbalanced-learn's behaviour, asked for by name."""
    cleaner.guard_originals = False
    return cleaner


class _SmoteThenClean(Method):
    kind = "hybrid"
    defaults: ClassVar[dict[str, Any]] = {
        "k_neighbors": 5,
        "small_class_fallback": "adapt",
        "clean_originals": "none",
        "neighbor_search": "exact",
    }
    added_later: ClassVar[dict[str, Any]] = {"neighbor_search": "exact"}
    cleaner: type[Cleaner] = ENN

    def validate(self) -> None:
        self._parts()[0].validate()
        self._parts()[1].validate()

    def _parts(self) -> tuple[Method, Method]:
        return (
            SMOTE(
                k_neighbors=self.params["k_neighbors"],
                small_class_fallback=self.params["small_class_fallback"],
            ),
            _unguarded(
                self.cleaner(
                    sampling_strategy="all",
                    clean_originals=self.params["clean_originals"],
                    neighbor_search=self.params["neighbor_search"],
                )
            ),
        )

    def run(self, state: PlanState, target: Target, rng: np.random.Generator) -> None:
        smote, clean = self._parts()
        smote.run(state, target, rng)
        clean.run(state, target, rng)


@register
class SmoteENN(_SmoteThenClean):
    """SMOTE, then ENN over all classes (imbalanced-learn's SMOTEENN with
    ``clean_originals="all"``); by default only synthetic samples are removed."""

    name = "smote-enn"
    cleaner = ENN


@register
class SmoteTomek(_SmoteThenClean):
    """SMOTE, then Tomek links over all classes (imbalanced-learn's SMOTETomek with
    ``clean_originals="all"``); by default only synthetic samples are removed."""

    name = "smote-tomek"
    cleaner = Tomek
