"""SMOTE, Borderline-SMOTE and ADASYN, planned in feature space.

A new sample lies on the segment between a base sample and one of its k
nearest neighbours of the same class: ``base + lam * (neighbour - base)`` with
``lam ~ U(0, 1)``, as in imbalanced-learn. Parents are originals by default
(``parents="originals"``), so synthetic samples are never interpolated again.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..planning.augment import make_policy
from ..planning.recipes import PlanState
from ..planning.targets import Target
from ._base import Method, register
from ._neighbors import FALLBACKS, class_neighbours, effective_k, neighbours
from .augment import add_augmented
from .random import add_random_copies


class _SmoteFamily(Method):
    defaults: ClassVar[dict[str, Any]] = {"k_neighbors": 5, "small_class_fallback": "adapt"}

    def validate(self) -> None:
        self._positive_int("k_neighbors")
        self._choice("small_class_fallback", FALLBACKS)

    def _base_rows(
        self, state: PlanState, label: int, rows: np.ndarray, n_new: int, rng: np.random.Generator
    ) -> np.ndarray | None:
        """Which class rows (positions in ``rows``) start each new sample."""
        return rng.integers(0, len(rows), n_new)

    def run(self, state: PlanState, target: Target, rng: np.random.Generator) -> None:
        before = state.counts()
        goals = self.resolve(target, state)
        sizes = {
            label: len(state.indices(label, originals_only=True))
            for label, goal in goals.items()
            if goal > before[label]
        }
        if sizes and self.params["small_class_fallback"] == "error":
            first = min(sizes, key=lambda label: sizes[label])  # its options work for all
            effective_k(
                self.name, state.classes[first], sizes[first], self.params["k_neighbors"], "error"
            )
        for label, goal in goals.items():
            n_new = goal - int(state.counts()[label])
            if n_new <= 0:
                continue
            rows = state.indices(label, originals_only=True)
            name = state.classes[label]
            k = effective_k(
                self.name,
                name,
                len(rows),
                self.params["k_neighbors"],
                self.params["small_class_fallback"],
            )
            if k is None:
                fallback = self.params["small_class_fallback"]
                if fallback == "adapt":  # one image: nothing to interpolate with
                    fallback = "augment"
                images = "its image" if len(rows) == 1 else "its images"
                copies = "augmented copies" if fallback == "augment" else "copies"
                note_once(
                    state,
                    f'{self.name}: class "{name}" has {len(rows)} image(s), '
                    f"too few to interpolate; used {fallback} for it ({copies} of {images}).",
                )
                if fallback == "augment":
                    add_augmented(
                        state,
                        label,
                        n_new,
                        make_policy("conservative", {}),
                        "conservative",
                        rng,
                        self.name,
                    )
                else:
                    add_random_copies(state, label, n_new, rng, self.name)
                continue
            if k < self.params["k_neighbors"]:
                note_once(
                    state,
                    f'{self.name}: class "{name}" has {len(rows)} images; '
                    f"k_neighbors lowered from {self.params['k_neighbors']} to {k} for it.",
                )
            base = self._base_rows(state, label, rows, n_new, rng)
            if base is None:
                continue
            nns = class_neighbours(state, rows, k)
            col = rng.integers(0, k, len(base))
            lam = rng.uniform(0.0, 1.0, len(base))
            state.add_blends(
                label,
                rows[base],
                rows[nns[base, col]],
                lam,
                op="smote",
                method=self.name,
                params={"k": k},
            )
        state.record(self.name, before)


@register
class SMOTE(_SmoteFamily):
    """SMOTE: interpolate between a random original and one of its k same-class neighbours."""

    name = "smote"


@register
class BorderlineSMOTE(_SmoteFamily):
    """Borderline-SMOTE-1: only samples in danger (half or more of their m neighbours in
    other classes, not all) start new samples. A class with none falls back to SMOTE."""

    name = "borderline-smote"
    defaults: ClassVar[dict[str, Any]] = {**_SmoteFamily.defaults, "m_neighbors": 10}

    def validate(self) -> None:
        super().validate()
        self._positive_int("m_neighbors")

    def _base_rows(
        self, state: PlanState, label: int, rows: np.ndarray, n_new: int, rng: np.random.Generator
    ) -> np.ndarray | None:
        alive = state.indices()
        m = min(self.params["m_neighbors"], len(alive) - 1)
        nns = neighbours(state.take(alive), m, state.take(rows))
        n_other = (state.y[alive][nns] != label).sum(axis=1)
        danger = np.flatnonzero((n_other >= m / 2) & (n_other < m))
        if len(danger) == 0:
            state.notes.append(
                f'{self.name}: no sample of class "{state.classes[label]}" is '
                "in danger (near other classes); used plain SMOTE for it."
            )
            return rng.integers(0, len(rows), n_new)
        return np.asarray(danger[rng.integers(0, len(danger), n_new)])


@register
class ADASYN(_SmoteFamily):
    """ADASYN: more new samples around originals whose neighbours are in other classes.

    The per-sample allocation is imbalanced-learn's (one-vs-rest neighbour
    ratios, rounded); the few samples lost or gained by rounding are given to
    the largest remainders so the class meets its target exactly. Where no
    neighbour belongs to another class (imbalanced-learn raises "Not any
    neighbours belong to the majority class"), the class falls back to SMOTE
    and the plan's notes say so.
    """

    name = "adasyn"

    def _base_rows(
        self, state: PlanState, label: int, rows: np.ndarray, n_new: int, rng: np.random.Generator
    ) -> np.ndarray | None:
        alloc = self.allocation(state, label, rows, n_new)
        if alloc is None:
            state.notes.append(
                f'adasyn: no neighbour of class "{state.classes[label]}" '
                "belongs to another class, so ADASYN has nothing to weight by "
                "(imbalanced-learn stops here); used SMOTE for this class."
            )
            return rng.integers(0, len(rows), n_new)
        return np.asarray(np.repeat(np.arange(len(rows)), alloc))

    def allocation(
        self, state: PlanState, label: int, rows: np.ndarray, n_new: int
    ) -> np.ndarray | None:
        """New samples per class row, or None when every neighbour is of the same class."""
        alive = state.indices()
        k = min(self.params["k_neighbors"], len(alive) - 1)
        nns = neighbours(state.take(alive), k, state.take(rows))
        ratio = (state.y[alive][nns] != label).sum(axis=1) / k
        if not ratio.sum():
            return None
        ratio = ratio / ratio.sum()
        exact = ratio * n_new
        alloc = np.rint(exact).astype(int)
        diff = n_new - int(alloc.sum())
        remainder = exact - alloc
        if diff > 0:
            alloc[np.argsort(-remainder, kind="stable")[:diff]] += 1
        elif diff < 0:
            candidates = np.flatnonzero(alloc > 0)
            order = candidates[np.argsort(remainder[candidates], kind="stable")]
            alloc[order[:-diff]] -= 1
        return np.asarray(alloc, dtype=np.int64)


def note_once(state: PlanState, note: str) -> None:
    """Add a note to the plan unless it is there already (STEM runs SMOTE many times)."""
    if note not in state.notes:
        state.notes.append(note)
