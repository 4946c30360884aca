"""Plans are data: which originals are kept and recipes for new images.

A :class:`PlanState` is what methods work on: a feature matrix whose first
rows are the originals, followed by one row per synthetic sample. Every
synthetic row carries a :class:`Recipe` that expresses it as a weighted sum of
*originals* (blends of blends are flattened), so rendering always starts from
the original files, and the row's features are the same weighted sum of the
originals' features.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Plan", "PlanState", "Recipe"]


@dataclass(frozen=True)
class Recipe:
    """How to make one new image from original images.

    ``parents`` are indices into the plan's originals; ``weights`` (summing to
    1) blend them; the first parent is the *base*: its size and format are the
    output's. ``op`` is ``copy`` (a byte-for-byte duplicate of one parent),
    ``smote``, ``mixup`` or ``augment``.
    """

    op: str
    label: int
    parents: tuple[int, ...]
    weights: tuple[float, ...]
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        # written out rather than dataclasses.asdict, whose recursive deep copy was 0.2 s
        # of a 2,000-image job's plan.json; params is copied like asdict copied it
        return {
            "op": self.op,
            "label": self.label,
            "parents": list(self.parents),
            "weights": [float(w) for w in self.weights],
            "method": self.method,
            "params": copy.deepcopy(self.params) if self.params else {},
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        return cls(
            op=d["op"],
            label=int(d["label"]),
            parents=tuple(d["parents"]),
            weights=tuple(d["weights"]),
            method=d["method"],
            params=d.get("params", {}),
            seed=d.get("seed"),
        )


class PlanState:
    """Mutable working set of a plan: originals plus synthetic rows, some removed."""

    def __init__(self, X: np.ndarray, y: np.ndarray, classes: list[str]) -> None:
        self.n_originals = len(y)
        self.classes = classes
        self._X = [np.asarray(X, dtype=np.float32)]
        self._y = [np.asarray(y, dtype=np.int64)]
        self.recipes: list[Recipe | None] = [None] * len(y)
        self.alive = np.ones(len(y), dtype=bool)
        self.log: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.stages: dict[str, np.ndarray] = {}
        #: what steps keep for later steps of the same plan (the cleaners' neighbour index)
        self.cache: dict[str, Any] = {}
        #: (height, width, channels) when feature rows are thumbnails, else None
        self.feature_shape: tuple[int, int, int] | None = None
        counts = np.bincount(self._y[0], minlength=len(classes))
        #: the largest class of the input, fixed for the whole plan (cleaning protects the rest)
        self.majority_label = int(np.argmax(counts)) if len(counts) else 0

    # -- views -----------------------------------------------------------------
    # Feature rows live in blocks (the originals, then one block per addition) and are
    # gathered with :meth:`take`; the whole matrix is only concatenated when a method
    # asks for ``X`` itself, so SMOTE-style plans never copy the originals' features.
    @property
    def X(self) -> np.ndarray:
        if len(self._X) > 1:
            self._X = [np.concatenate(self._X)]
        return self._X[0]

    @property
    def y(self) -> np.ndarray:
        if len(self._y) > 1:
            self._y = [np.concatenate(self._y)]
        return self._y[0]

    def take(self, rows: np.ndarray | list[int]) -> np.ndarray:
        """Feature rows ``rows`` (a new array), without concatenating the blocks."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(self._X) == 1:
            picked: np.ndarray = self._X[0][rows]
            return picked
        starts = np.cumsum([0] + [len(b) for b in self._X[:-1]])
        block = np.searchsorted(starts, rows, side="right") - 1
        out = np.empty((len(rows), self._X[0].shape[1]), dtype=np.float32)
        for b in np.unique(block).tolist():
            m = block == b
            out[m] = self._X[b][rows[m] - starts[b]]
        return out

    @property
    def is_synthetic(self) -> np.ndarray:
        out = np.zeros(len(self.alive), dtype=bool)
        out[self.n_originals :] = True
        return out

    def indices(self, label: int | None = None, *, originals_only: bool = False) -> np.ndarray:
        """Alive row indices (of one class, and/or originals only)."""
        mask = self.alive.copy()
        if label is not None:
            mask &= self.y == label
        if originals_only:
            mask[self.n_originals :] = False
        return np.flatnonzero(mask)

    def counts(self) -> np.ndarray:
        """Alive rows per class label."""
        return np.bincount(self.y[self.alive], minlength=len(self.classes))

    # -- edits -----------------------------------------------------------------
    def flatten(self, row: int) -> tuple[list[int], list[float]]:
        """A row as ``(original parents, weights)``."""
        recipe = self.recipes[row] if row >= self.n_originals else None
        if recipe is None:
            return [row], [1.0]
        return list(recipe.parents), list(recipe.weights)

    def add_blends(
        self,
        label: int,
        rows_a: np.ndarray,
        rows_b: np.ndarray,
        lam: np.ndarray,
        *,
        op: str,
        method: str,
        params: dict[str, Any],
    ) -> None:
        """Append ``(1 - lam) * row_a + lam * row_b`` for each triple, as recipes."""
        new_X = self.take(rows_b)  # a new array; computed in place from here
        base = self.take(rows_a)
        new_X -= base
        new_X *= lam[:, None].astype(np.float32)
        new_X += base
        del base
        recipes = []
        for a, b, t in zip(rows_a.tolist(), rows_b.tolist(), lam.tolist(), strict=True):
            pa, wa = self.flatten(a)
            pb, wb = self.flatten(b)
            weights: dict[int, float] = {}
            for p, w in zip(pa, wa, strict=True):
                weights[p] = weights.get(p, 0.0) + (1.0 - t) * w
            for p, w in zip(pb, wb, strict=True):
                weights[p] = weights.get(p, 0.0) + t * w
            recipes.append(
                Recipe(
                    op=op,
                    label=label,
                    parents=tuple(weights),
                    weights=tuple(weights.values()),
                    method=method,
                    params={**params, "lam": float(t)},
                )
            )
        self._append(new_X, label, recipes)

    def add_copies(self, label: int, rows: np.ndarray, *, method: str) -> None:
        """Append duplicates of original rows."""
        recipes = [
            Recipe(op="copy", label=label, parents=(int(r),), weights=(1.0,), method=method)
            for r in rows.tolist()
        ]
        self._append(self.take(rows), label, recipes)

    def add_recipes(self, features: np.ndarray, recipes: list[Recipe]) -> None:
        """Append rows made elsewhere (e.g. augmentations) with their recipes."""
        self._X.append(np.asarray(features, dtype=np.float32))
        self._y.append(np.array([r.label for r in recipes], dtype=np.int64))
        self.recipes.extend(recipes)
        self.alive = np.concatenate([self.alive, np.ones(len(recipes), dtype=bool)])

    def _append(self, new_X: np.ndarray, label: int, recipes: list[Recipe]) -> None:
        if not recipes:
            return
        self._X.append(new_X.astype(np.float32, copy=False))
        self._y.append(np.full(len(recipes), label, dtype=np.int64))
        self.recipes.extend(recipes)
        self.alive = np.concatenate([self.alive, np.ones(len(recipes), dtype=bool)])

    def remove(self, rows: np.ndarray) -> None:
        self.alive[rows] = False

    def snapshot(self, name: str) -> None:
        """Remember which rows are alive now, as the named stage (e.g. ``after_smote_enn``)."""
        self.stages[name] = np.flatnonzero(self.alive)

    def record(self, step: str, before: np.ndarray, **extra: Any) -> None:
        after = self.counts()
        self.log.append(
            {
                "step": step,
                "before": dict(zip(self.classes, before.tolist(), strict=True)),
                "after": dict(zip(self.classes, after.tolist(), strict=True)),
                **extra,
            }
        )


@dataclass
class Plan:
    """A finished plan: kept originals, recipes of the synthetic images, and the log."""

    classes: list[str]
    n_originals: int
    original_labels: list[int]
    originals: list[str]
    kept: list[int]
    recipes: list[Recipe]
    log: list[dict[str, Any]]
    notes: list[str]
    config: dict[str, Any]
    #: named intermediate stages: kept originals and indices into ``recipes``
    stages: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    #: files of the input that are not in the plan, each ``{"path", "reason"}``
    left_out: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def from_state(
        cls, state: PlanState, config: dict[str, Any], originals: list[str] | None = None
    ) -> Plan:
        alive = state.alive
        kept = np.flatnonzero(alive[: state.n_originals]).tolist()
        recipes: list[Recipe] = []
        final_index: dict[int, int] = {}  # state row -> index in ``recipes``
        for row in range(state.n_originals, len(alive)):
            recipe = state.recipes[row]
            if alive[row] and recipe is not None:
                final_index[row] = len(recipes)
                recipes.append(recipe)
        stages = {}
        for name, rows in state.stages.items():
            synthetic = [int(r) for r in rows if r >= state.n_originals]
            missing = [r for r in synthetic if r not in final_index]
            if missing:  # a stage's image removed later has no file to point to
                state.notes.append(
                    f"stage {name}: {len(missing)} image(s) of this stage were "
                    "removed later and are not rendered."
                )
            stages[name] = {
                "kept": [int(r) for r in rows if r < state.n_originals],
                "recipes": [final_index[r] for r in synthetic if r in final_index],
            }
        return cls(
            classes=state.classes,
            n_originals=state.n_originals,
            original_labels=state.y[: state.n_originals].tolist(),
            originals=originals or [str(i) for i in range(state.n_originals)],
            kept=kept,
            recipes=recipes,
            log=state.log,
            notes=state.notes,
            config=config,
            stages=stages,
        )

    def counts_before(self) -> dict[str, int]:
        c = Counter(self.original_labels)
        return {name: c.get(i, 0) for i, name in enumerate(self.classes)}

    def counts_after(self) -> dict[str, int]:
        c = Counter(self.original_labels[i] for i in self.kept)
        c.update(r.label for r in self.recipes)
        return {name: c.get(i, 0) for i, name in enumerate(self.classes)}

    def synthetic_by_op(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.recipes:
            row = out.setdefault(self.classes[r.label], {})
            key = r.method if r.method == r.op else f"{r.method}:{r.op}"
            row[key] = row.get(key, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "n_originals": self.n_originals,
            "original_labels": self.original_labels,
            "originals": self.originals,
            "kept": self.kept,
            "recipes": [r.to_dict() for r in self.recipes],
            "log": self.log,
            "notes": self.notes,
            "config": self.config,
            "stages": self.stages,
            "left_out": self.left_out,
        }

    def to_json(self) -> str:
        """The plan as JSON, keys sorted: a line per field, and a line per entry of its
        lists of records (recipes, log, left_out), each written by json's C encoder (an
        indented dump goes through its pure-Python one, several times slower)."""
        d = self.to_dict()
        fields = []
        for key in sorted(d):
            value = d[key]
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                entries = ",\n".join("  " + json.dumps(v, sort_keys=True) for v in value)
                text = f"[\n{entries}\n ]"
            else:
                text = json.dumps(value, sort_keys=True)
            fields.append(f" {json.dumps(key)}: {text}")
        return "{\n" + ",\n".join(fields) + "\n}\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(
            classes=d["classes"],
            n_originals=d["n_originals"],
            original_labels=d["original_labels"],
            originals=d["originals"],
            kept=d["kept"],
            recipes=[Recipe.from_dict(r) for r in d["recipes"]],
            log=d["log"],
            notes=d["notes"],
            config=d["config"],
            stages=d.get("stages", {}),
            left_out=d.get("left_out", []),
        )
