"""imgbalance: see, split and balance imbalanced image-classification datasets.

The stages are packages: :mod:`imgbalance.dataset` (scan, split),
:mod:`imgbalance.planning` (features, targets, plans), :mod:`imgbalance.methods`
(the balancing algorithms), :mod:`imgbalance.rendering` (full-resolution outputs),
:mod:`imgbalance.experiments` and :mod:`imgbalance.torch` (training and comparing).
The names below are the public API.

Examples
--------
>>> import imgbalance
>>> catalog = imgbalance.scan("data")                  # doctest: +SKIP
>>> catalog.counts(), catalog.imbalance_ratio           # doctest: +SKIP
>>> result = imgbalance.split(catalog, random_state=42)  # doctest: +SKIP
>>> imgbalance.write_split(result, "splits", materialize="link")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .balancing import balance, plan, render
from .dataset.catalog import Catalog, ImageRecord, Problem, Skipped
from .dataset.images import load_image
from .dataset.scanner import scan
from .dataset.splits import SplitResult, read_groups_csv, split, write_split
from .demo import make_demo_dataset
from .errors import ConfigError, DatasetError, ImgBalanceError, MissingDependencyError, OutputError
from .experiments.config import RunConfig
from .methods import Method, create_method, create_pipeline, list_methods
from .planner import BalancePlan, plan_arrays
from .planning.recipes import Plan, Recipe
from .rendering.outputs import BalanceResult

if TYPE_CHECKING:
    from .samplers import CleaningSampler, HybridSampler, OverSampler, UnderSampler

#: imported on first use: they import imbalanced-learn, which most commands never need
_LAZY = {
    "CleaningSampler": "samplers",
    "HybridSampler": "samplers",
    "OverSampler": "samplers",
    "UnderSampler": "samplers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'imgbalance' has no attribute {name!r}")


__all__ = [
    "BalancePlan",
    "BalanceResult",
    "Catalog",
    "CleaningSampler",
    "ConfigError",
    "DatasetError",
    "HybridSampler",
    "ImageRecord",
    "ImgBalanceError",
    "Method",
    "MissingDependencyError",
    "OutputError",
    "OverSampler",
    "Plan",
    "Problem",
    "Recipe",
    "RunConfig",
    "Skipped",
    "SplitResult",
    "UnderSampler",
    "__version__",
    "balance",
    "create_method",
    "create_pipeline",
    "list_methods",
    "load_image",
    "make_demo_dataset",
    "plan",
    "plan_arrays",
    "read_groups_csv",
    "render",
    "scan",
    "split",
    "write_split",
]
