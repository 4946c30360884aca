"""STEM: iterated SMOTE-ENN towards a balance ratio, then within-class Mixup."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import ImgBalanceError
from ..planning.recipes import PlanState
from ..planning.targets import Target
from ._base import Method, register
from .cleaning import ENN
from .mixup import Mixup
from .smote import SMOTE

__all__ = ["STEM"]


@register
class STEM(Method):
    """STEM: iterated SMOTE-ENN until the balance ratio min/max reaches ``target_ratio``,
    ``max_iterations`` is reached or an iteration adds fewer than ``min_improvement``
    samples; then within-class Mixup adds ``mixup_fraction`` x each class.

    Unlike the public reference, ENN removes only synthetic samples by default
    (``clean_originals="majority"`` or ``"all"`` also lets it remove originals), SMOTE
    interpolates originals only, Mixup blends two different images (see
    :mod:`.mixup` for a class without two), colour and native size are kept
    (``image_size`` resizes, for compatibility), and everything is seeded.
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
        "clean_originals": "none",
        "neighbor_search": "exact",
    }
    added_later: ClassVar[dict[str, Any]] = {"neighbor_search": "exact"}

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
        self._enn().validate()

    def _enn(self) -> ENN:
        enn = ENN(
            n_neighbors=self.params["enn_neighbors"],
            sampling_strategy="all",
            clean_originals=self.params["clean_originals"],
            neighbor_search=self.params["neighbor_search"],
        )
        enn.guard_originals = False  # STEM's default keeps every original; majority/all asked
        return enn

    def target_for(self, user_target: Any) -> Any:
        return f"ratio:{self.params['target_ratio']}" if user_target is None else user_target

    def run(self, state: PlanState, target: Target, rng: np.random.Generator) -> None:
        smote = SMOTE(
            k_neighbors=self.params["k_neighbors"],
            small_class_fallback=self.params["small_class_fallback"],
        )
        enn = self._enn()

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
