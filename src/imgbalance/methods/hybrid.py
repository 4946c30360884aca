"""Methods made of other methods: pipelines, SMOTE-ENN, SMOTE-Tomek and STEM."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import ImgBalanceError
from ..recipes import PlanState
from ..targets import Target
from ._base import Method, create_method, register
from .cleaning import ENN, Tomek
from .mixup import Mixup
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
        raise ValueError(f"Empty method in {spec!r}.")
    from ._base import _REGISTRY

    classes = []
    for n in names:
        if n not in _REGISTRY:
            create_method(n)  # raises the listing error
        classes.append(_REGISTRY[n])
    unused = sorted(k for k in common if not any(k in c.defaults for c in classes))
    if unused:
        raise ValueError(f"Parameter(s) {unused} are not accepted by {', '.join(names)}.")
    steps = [c(**{k: v for k, v in common.items() if k in c.defaults}) for c in classes]
    return steps[0] if len(steps) == 1 else Pipeline(steps)


class _SmoteThenClean(Method):
    kind = "hybrid"
    defaults: ClassVar[dict[str, Any]] = {
        "k_neighbors": 5,
        "small_class_fallback": "adapt",
        "clean_originals": "majority",
    }
    cleaner: type[Method] = ENN

    def validate(self) -> None:
        self._parts()[0].validate()
        self._parts()[1].validate()

    def _parts(self) -> tuple[Method, Method]:
        return (
            SMOTE(
                k_neighbors=self.params["k_neighbors"],
                small_class_fallback=self.params["small_class_fallback"],
            ),
            self.cleaner(sampling_strategy="all", clean_originals=self.params["clean_originals"]),
        )

    def run(self, state: PlanState, target: Target, rng: np.random.Generator) -> None:
        smote, clean = self._parts()
        smote.run(state, target, rng)
        clean.run(state, target, rng)


@register
class SmoteENN(_SmoteThenClean):
    """SMOTE, then ENN over all classes (imbalanced-learn's SMOTEENN), protecting
    minority originals unless ``clean_originals``."""

    name = "smote-enn"
    cleaner = ENN


@register
class SmoteTomek(_SmoteThenClean):
    """SMOTE, then Tomek links over all classes (imbalanced-learn's SMOTETomek)."""

    name = "smote-tomek"
    cleaner = Tomek


@register
class STEM(Method):
    """STEM: iterated SMOTE-ENN until the balance ratio min/max reaches ``target_ratio``,
    ``max_iterations`` is reached or an iteration adds fewer than ``min_improvement``
    samples; then within-class Mixup adds ``mixup_fraction`` x each class.

    Unlike the public reference, ENN never removes minority originals (unless
    ``clean_originals``), SMOTE interpolates originals only, colour and native size
    are kept (``image_size`` resizes, for compatibility), and everything is seeded.
    """

    name = "stem"
    kind = "hybrid"
    defaults: ClassVar[dict[str, Any]] = {
        "target_ratio": 0.7,
        "k_neighbors": 5,
        "max_iterations": 30,
        "min_improvement": 5,
        "image_size": None,
        "mixup_alpha": 0.4,
        "mixup_fraction": 0.5,
        "enn_neighbors": 3,
        "small_class_fallback": "adapt",
        "clean_originals": "majority",
    }

    def validate(self) -> None:
        r = self.params["target_ratio"]
        if not isinstance(r, (int, float)) or not 0 < r <= 1:
            raise ImgBalanceError(f"stem: target_ratio must be in (0, 1], got {r!r}.")
        self._positive_int("k_neighbors")
        self._positive_int("max_iterations")
        self._positive_int("min_improvement", 0)
        self._positive_int("enn_neighbors")
        SMOTE(
            k_neighbors=self.params["k_neighbors"],
            small_class_fallback=self.params["small_class_fallback"],
        ).validate()
        Mixup(alpha=self.params["mixup_alpha"], fraction=self.params["mixup_fraction"]).validate()

    def target_for(self, user_target: Any) -> Any:
        return f"ratio:{self.params['target_ratio']}" if user_target is None else user_target

    def run(self, state: PlanState, target: Target, rng: np.random.Generator) -> None:
        smote = SMOTE(
            k_neighbors=self.params["k_neighbors"],
            small_class_fallback=self.params["small_class_fallback"],
        )
        enn = ENN(
            n_neighbors=self.params["enn_neighbors"],
            sampling_strategy="all",
            clean_originals=self.params["clean_originals"],
        )
        start = state.counts()
        iterations = 0
        stop = "max_iterations reached"
        for it in range(1, self.params["max_iterations"] + 1):
            goals = smote.resolve(target, state)
            counts = state.counts()
            if all(counts[label] >= goal for label, goal in goals.items()):
                stop = "target met"
                break
            total = int(state.alive.sum())
            smote.run(state, target, rng)
            enn.run(state, target, rng)
            iterations = it
            gained = int(state.alive.sum()) - total
            state.log[-1]["iteration"] = it
            state.log[-2]["iteration"] = it
            if gained < self.params["min_improvement"]:
                stop = f"iteration {it} added {gained} < min_improvement"
                break
        state.record(
            "stem: smote-enn stage",
            start,
            iterations=iterations,
            stop=stop,
            stage="after_smote_enn",
        )
        state.snapshot("after_smote_enn")
        Mixup(
            alpha=self.params["mixup_alpha"], fraction=self.params["mixup_fraction"], parents="all"
        ).run(state, "auto", rng)
