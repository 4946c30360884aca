"""imbalanced-learn samplers for in-memory arrays, backed by imgbalance's planners.

They accept ``(n, d)`` feature matrices and ``(n, h, w[, c])`` image stacks,
plan with the registered method on the (flattened) arrays, and build new rows
as the recipes' weighted sums of original rows (rounded and clipped for
integer dtypes, so uint8 images stay valid images). Provenance is exposed as
``plan_`` (the :class:`~imgbalance.recipes.Plan`) and ``provenance_`` (per
output row: its original parents and weights); under-sampling and cleaning
samplers also set ``sample_indices_`` like imbalanced-learn's.

Examples
--------
>>> from imgbalance.samplers import OverSampler
>>> X = np.random.default_rng(0).random((30, 4))
>>> y = np.array([0] * 24 + [1] * 6)
>>> X_res, y_res = OverSampler("smote", random_state=0).fit_resample(X, y)
>>> np.bincount(y_res).tolist()
[24, 24]
"""

from __future__ import annotations

from typing import Any

import numpy as np
from imblearn.base import BaseSampler
from imblearn.over_sampling.base import BaseOverSampler
from imblearn.under_sampling.base import BaseCleaningSampler, BaseUnderSampler

from .errors import ConfigError
from .methods import create_pipeline
from .planner import plan_arrays
from .planning.recipes import Plan

__all__ = ["CleaningSampler", "HybridSampler", "OverSampler", "UnderSampler"]


class _PlanSamplerMixin:
    """Shared ``_fit_resample``: plan on the rows, then materialise kept + new rows."""

    sampling_strategy_: Any
    _sampling_type: str
    _expected_kind: tuple[str, ...] = ()
    _default_method = ""
    _default_params: dict[str, Any] = {}  # noqa: RUF012 - read-only class default
    _sets_sample_indices = False

    def __init__(
        self,
        method: str | None = None,
        *,
        sampling_strategy: Any = "auto",
        random_state: Any = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(sampling_strategy=sampling_strategy)  # type: ignore[call-arg]
        self.method = method
        self.random_state = random_state
        self.params = params

    @property
    def _method(self) -> str:
        """The method to use: ``method``, or the sampler's default when it is None."""
        return self.method or self._default_method

    def fit_resample(self, X: Any, y: Any, **fit_params: Any) -> Any:
        """Like imbalanced-learn's, and also for image stacks ``(n, h, w[, c])``."""
        arr = np.asarray(X) if not hasattr(X, "toarray") and not hasattr(X, "iloc") else None
        self._image_shape: tuple[int, ...] | None = None
        if arr is not None and arr.ndim > 2:
            flat = arr.reshape(len(arr), -1)
            self._image_shape = arr.shape[1:]
            try:
                X_res, y_res = super().fit_resample(flat, y, **fit_params)  # type: ignore[misc]
            finally:
                self._image_shape = None
            return np.asarray(X_res).reshape((-1, *arr.shape[1:])), y_res
        return super().fit_resample(X, y, **fit_params)  # type: ignore[misc]

    def _augmented(self, X: np.ndarray, parent: int, params: dict[str, Any]) -> np.ndarray:
        """An ``augment`` recipe applied to a row of a uint8 image stack."""
        shape = getattr(self, "_image_shape", None)
        if shape is None or X.dtype != np.uint8 or not (len(shape) == 2 or shape[-1] in (1, 3)):
            raise ConfigError(
                "augment needs images: a uint8 stack of shape (n, h, w), (n, h, w, 1) or "
                f"(n, h, w, 3); got {X.dtype} rows of shape {shape or X.shape[1:]}."
            )
        from PIL import Image

        from .planning.augment import apply_augment

        img = X[parent].reshape(shape)
        img = img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img
        return np.asarray(apply_augment(Image.fromarray(img), params)).reshape(-1)

    def _target(self, labels: np.ndarray, counts: np.ndarray) -> dict[str, int] | list[str]:
        """Target counts per class name, or for cleaning the classes that may be cleaned."""
        if self._sampling_type == "clean-sampling":
            return [str(label) for label in labels if label in self.sampling_strategy_]
        add = self._sampling_type == "over-sampling"  # imbalanced-learn gives numbers to add
        return {
            str(label): int(n + self.sampling_strategy_.get(label, 0))
            if add
            else int(self.sampling_strategy_.get(label, n))
            for label, n in zip(labels, counts, strict=True)
        }

    def _method_params(self) -> dict[str, Any]:
        return {**self._default_params, **(self.params or {})}

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.input_tags.sparse = False  # rows are blended as dense arrays
        tags.input_tags.string = False
        tags.input_tags.allow_nan = False
        tags.sampler_tags.sample_indices = self._sets_sample_indices
        return tags

    def _fit_resample(self, X: Any, y: np.ndarray) -> tuple[Any, np.ndarray]:
        from scipy import sparse

        if sparse.issparse(X):  # e.g. a DataFrame of sparse columns: blend dense, return sparse
            X_res, y_res = self._fit_resample(X.toarray(), y)
            return type(X)(X_res), y_res
        method = create_pipeline(self._method, **self._method_params())
        if self._expected_kind and method.kind not in self._expected_kind:
            raise ConfigError(
                f"{type(self).__name__} needs a method of kind "
                f'{" or ".join(self._expected_kind)}; "{self._method}" is '
                f"{method.kind}."
            )
        labels, codes = np.unique(y, return_inverse=True)
        classes = [str(v) for v in labels]
        counts = np.bincount(codes, minlength=len(labels))
        # sklearn convention: int, RandomState or None; one Generator is derived from it
        from sklearn.utils import check_random_state

        rng = np.random.default_rng(check_random_state(self.random_state).randint(2**31))
        target = self._target(labels, counts)
        if isinstance(target, list):  # cleaning: the classes it may clean
            params = self._method_params()
            params["sampling_strategy"] = target
            method = create_pipeline(self._method, **params)
            target_spec: Any = None
        else:
            target_spec = target
        plan = plan_arrays(
            np.asarray(X, dtype=np.float32), codes, classes, method, target_spec, rng
        )
        self.plan_: Plan = plan
        kept = np.asarray(plan.kept, dtype=np.int64)
        rows = [X[kept]]
        labels_out = [y[kept]]
        provenance: list[tuple[tuple[int, ...], tuple[float, ...]]] = [
            ((int(i),), (1.0,)) for i in kept
        ]
        if plan.recipes:
            new = np.zeros((len(plan.recipes), X.shape[1]), dtype=np.float64)
            first = np.empty(len(plan.recipes), dtype=np.int64)
            for n, r in enumerate(plan.recipes):
                if r.op == "augment":
                    new[n] = self._augmented(X, r.parents[0], r.params)
                else:
                    new[n] = np.asarray(r.weights, dtype=np.float64) @ X[list(r.parents)]
                first[n] = r.parents[0]
                provenance.append((r.parents, r.weights))
            if np.issubdtype(X.dtype, np.integer):
                info = np.iinfo(X.dtype)
                new = np.clip(np.rint(new), info.min, info.max)
            rows.append(new.astype(X.dtype))
            labels_out.append(y[first])
        self.provenance_ = provenance
        if self._sets_sample_indices:
            self.sample_indices_ = kept
        return np.concatenate(rows), np.concatenate(labels_out)


def _constraints(base: Any) -> dict[str, list[Any]]:
    return {
        **base._parameter_constraints,
        "method": [str],
        "random_state": ["random_state"],
        "params": [dict, None],
    }


class OverSampler(_PlanSamplerMixin, BaseOverSampler):  # type: ignore[misc]
    """Over-sampling with an imgbalance method (``smote``, ``adasyn``, ``mixup``...).

    Parameters
    ----------
    method : str or None
        A registered over-sampling method (default ``smote``).
    sampling_strategy : str, float, dict or callable
        imbalanced-learn's over-sampling strategies.
    random_state : int, RandomState or None
    params : dict or None
        Method parameters, e.g. ``{"k_neighbors": 3}``.
    """

    _expected_kind = ("over",)
    _default_method = "smote"
    _parameter_constraints = _constraints(BaseOverSampler)


class HybridSampler(_PlanSamplerMixin, BaseSampler):  # type: ignore[misc]
    """Over-sampling then cleaning (``smote-enn``, ``smote-tomek``, ``stem``, pipelines)."""

    _sampling_type = "over-sampling"
    _expected_kind = ("hybrid", "over")
    _default_method = "smote-enn"
    _parameter_constraints = _constraints(BaseOverSampler)


class UnderSampler(_PlanSamplerMixin, BaseUnderSampler):  # type: ignore[misc]
    """Under-sampling with an imgbalance method (``random-under``)."""

    _expected_kind = ("under",)
    _default_method = "random-under"
    _parameter_constraints = _constraints(BaseUnderSampler)
    _sets_sample_indices = True


class CleaningSampler(_PlanSamplerMixin, BaseCleaningSampler):  # type: ignore[misc]
    """Cleaning with ``enn`` or ``tomek``; by default every original may be removed,
    as in imbalanced-learn (``params={"clean_originals": "majority"}`` protects)."""

    _expected_kind = ("clean",)
    _default_method = "enn"
    _default_params: dict[str, Any] = {"clean_originals": "all"}  # noqa: RUF012
    _parameter_constraints = _constraints(BaseCleaningSampler)
    _sets_sample_indices = True
