"""Cleaning: Edited Nearest Neighbours and Tomek links, in feature space.

Which samples are candidates follows imbalanced-learn's ``sampling_strategy``
for cleaning (``auto`` = every class but the smallest, ``all``, ``majority``,
``not majority``, ``not minority``, or a list of class names), computed on the
current (alive) counts, and the rule that removes them is imbalanced-learn's.
On top, imgbalance protects genuine minority images: by default only
synthetic samples and originals of the largest class can be removed;
``clean_originals="all"`` makes every original a candidate, which reproduces
imbalanced-learn exactly.

A user who asks to *balance* must never lose most of a class silently: the
standalone cleaners (``enn``, ``tomek``, also as steps of a pipeline) refuse to
remove more than half of any class's original images unless
``clean_originals="all"`` was given explicitly. The hybrids (``smote-enn``,
``smote-tomek``, ``stem``) remove only synthetic samples by default.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._options import option
from ..errors import ImgBalanceError
from ..planning.recipes import PlanState
from ..planning.targets import Target
from ._base import Method, register
from ._neighbors import alive_neighbours, require_search

_STRATEGIES = ("auto", "all", "majority", "not majority", "not minority")
#: which originals cleaning may remove: those of the input's largest class (default),
#: every original (imbalanced-learn's behaviour), or none (only synthetic samples)
CLEAN_ORIGINALS = ("majority", "all", "none")


def strategy_labels(strategy: Any, counts: np.ndarray, classes: list[str]) -> set[int]:
    """Labels whose samples may be cleaned, per imbalanced-learn's cleaning strategies."""
    present = [i for i, n in enumerate(counts) if n > 0]
    if not present:
        return set()
    smallest = min(present, key=lambda i: counts[i])  # first of ties, like imbalanced-learn
    largest = max(present, key=lambda i: counts[i])
    if isinstance(strategy, (list, tuple)):
        unknown = sorted(set(strategy) - set(classes))
        if unknown:
            raise ImgBalanceError(f"sampling_strategy names unknown class(es) {unknown}.")
        return {classes.index(c) for c in strategy}
    if strategy in ("auto", "not minority"):
        return set(present) - {smallest}
    if strategy == "all":
        return set(present)
    if strategy == "majority":
        return {largest}
    if strategy == "not majority":
        return set(present) - {largest}
    raise ImgBalanceError(
        f"sampling_strategy must be one of {', '.join(_STRATEGIES)} or a "
        f"list of class names; got {strategy!r}."
    )


def _warn_heavy_losses(state: PlanState, dropped: np.ndarray, method: str) -> None:
    """Note when cleaning removes more than a quarter of a class's original images."""
    originals = dropped[dropped < state.n_originals]
    if not len(originals):
        return
    total = np.bincount(state.y[: state.n_originals], minlength=len(state.classes))
    lost = np.bincount(state.y[originals], minlength=len(state.classes))
    for label in np.flatnonzero(lost > 0.25 * total):
        state.notes.append(
            f"{method} removed {lost[label]} of {total[label]} original images of class "
            f'"{state.classes[label]}": the feature space separates the classes poorly. '
            "Consider clean_originals='none' (--clean-originals none) to keep every original, "
            "or other --features."
        )


class Cleaner(Method):
    """Base of the cleaning methods: which samples fail a rule, and which of those may go."""

    kind = "clean"
    #: refuse to remove more than half of a class's originals unless clean_originals="all"
    #: was asked for explicitly (hybrids, whose default removes no original, turn it off)
    guard_originals: bool = True

    def validate(self) -> None:
        strategy = self.params["sampling_strategy"]
        if not isinstance(strategy, (list, tuple)) and strategy not in _STRATEGIES:
            raise ImgBalanceError(
                f"{self.name}: sampling_strategy must be one of "
                f"{', '.join(_STRATEGIES)} or a list of class names; got "
                f"{strategy!r}."
            )
        clean = self.params["clean_originals"]
        if not isinstance(clean, (bool, list, tuple)) and clean not in CLEAN_ORIGINALS:
            raise ImgBalanceError(
                f"{self.name}: clean_originals must be one of "
                f"{', '.join(CLEAN_ORIGINALS)}, True/False or a list of "
                f"class names; got {clean!r}."
            )
        search = self.params.get("neighbor_search", "exact")
        require_search(self.name, search)

    def removable(self, state: PlanState, rows: np.ndarray) -> np.ndarray:
        """Mask over ``rows``: True where the row may be removed at all."""
        clean = self.params["clean_originals"]
        synthetic = rows >= state.n_originals
        if clean is True or clean == "all":
            return np.ones(len(rows), dtype=bool)
        if clean == "none":
            return synthetic
        allowed = {state.majority_label}
        if isinstance(clean, (list, tuple)):
            allowed |= {state.classes.index(c) for c in clean}
        return np.asarray(synthetic | np.isin(state.y[rows], list(allowed)), dtype=bool)

    def run(self, state: PlanState, target: Target, rng: np.random.Generator) -> None:
        before = state.counts()
        rows = state.indices()
        labels = strategy_labels(self.params["sampling_strategy"], before, state.classes)
        fails = self.fails(state, rows, labels)
        drop = fails & self.removable(state, rows)
        if self.guard_originals:
            self._refuse_heavy_losses(state, rows[drop])
        state.remove(rows[drop])
        _warn_heavy_losses(state, rows[drop], self.name)
        state.record(
            self.name,
            before,
            flagged=int(fails.sum()),
            removed=int(drop.sum()),
            protected=int((fails & ~drop).sum()),
        )

    def fails(self, state: PlanState, rows: np.ndarray, labels: set[int]) -> np.ndarray:
        """Mask over ``rows`` (the alive rows): True where the row fails the rule and its
        label is in ``labels``."""
        raise NotImplementedError

    def _refuse_heavy_losses(self, state: PlanState, dropped: np.ndarray) -> None:
        """Raise when removing ``dropped`` would leave a class with under half its originals."""
        clean = self.params["clean_originals"]
        if "clean_originals" in self.explicit and (clean is True or clean == "all"):
            return
        n = state.n_originals
        total = np.bincount(state.y[:n], minlength=len(state.classes))
        gone = ~state.alive[:n]
        gone[dropped[dropped < n]] = True
        lost = np.bincount(state.y[:n][gone], minlength=len(state.classes))
        heavy = [int(c) for c in np.flatnonzero(2 * lost > total)]
        if heavy:
            c = heavy[0]
            raise ImgBalanceError(
                f"{self.name} would remove {lost[c]} of the {total[c]} original images of class "
                f'"{state.classes[c]}" (more than half): in this feature space most of them '
                "disagree with their neighbours, which says more about the features than about "
                "the images. Balancing never removes most of a class silently. Pass "
                f"{option('clean_originals', 'all')} to allow it (imbalanced-learn's behaviour), "
                f"{option('clean_originals', 'none')} to remove only synthetic images, or try "
                f"other features ({option('features', 'pca:50')}, for example)."
            )


@register
class ENN(Cleaner):
    """Edited Nearest Neighbours: drop samples that disagree with their neighbours
    (``kind_sel="all"``: any neighbour of another class; ``"mode"``: the most
    common neighbour class is another)."""

    name = "enn"
    defaults: ClassVar[dict[str, Any]] = {
        "n_neighbors": 3,
        "kind_sel": "all",
        "sampling_strategy": "auto",
        "clean_originals": "majority",
        "neighbor_search": "exact",
    }
    added_later: ClassVar[dict[str, Any]] = {"neighbor_search": "exact"}

    def validate(self) -> None:
        super().validate()
        self._positive_int("n_neighbors")
        self._choice("kind_sel", ("all", "mode"))

    def fails(self, state: PlanState, rows: np.ndarray, labels: set[int]) -> np.ndarray:
        all_y = state.y
        y = all_y[rows]
        out = np.zeros(len(rows), dtype=bool)
        k = min(self.params["n_neighbors"], len(rows) - 1)
        asked = np.isin(y, list(labels))  # only rows of these labels can fail
        if k < 1 or not asked.any():
            return out
        nbr_labels = all_y[alive_neighbours(state, rows[asked], k, self.params["neighbor_search"])]
        y = y[asked]
        if self.params["kind_sel"] == "all":
            keep = np.all(nbr_labels == y[:, None], axis=1)
        else:
            n_labels = len(state.classes)
            votes = np.apply_along_axis(np.bincount, 1, nbr_labels, minlength=n_labels)
            keep = votes.argmax(axis=1) == y  # ties go to the smaller label, like scipy's mode
        out[asked] = ~keep
        return out


@register
class Tomek(Cleaner):
    """Tomek links: drop a sample whose nearest neighbour is of another class and has it
    as its own nearest neighbour."""

    name = "tomek"
    defaults: ClassVar[dict[str, Any]] = {
        "sampling_strategy": "auto",
        "clean_originals": "majority",
        "neighbor_search": "exact",
    }
    added_later: ClassVar[dict[str, Any]] = {"neighbor_search": "exact"}

    def fails(self, state: PlanState, rows: np.ndarray, labels: set[int]) -> np.ndarray:
        if len(rows) < 2:
            return np.zeros(len(rows), dtype=bool)
        y = state.y
        nn = np.full(len(state.alive), -1, dtype=np.int64)
        nn[rows] = alive_neighbours(state, rows, 1, self.params["neighbor_search"])[:, 0]
        mine = nn[rows]
        linked = (y[mine] != y[rows]) & (nn[mine] == rows)
        return np.asarray(linked & np.isin(y[rows], list(labels)), dtype=bool)
