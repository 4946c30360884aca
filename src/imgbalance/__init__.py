"""imgbalance: see, split and balance imbalanced image-classification datasets.

Examples
--------
>>> import imgbalance
>>> catalog = imgbalance.scan("data")                  # doctest: +SKIP
>>> catalog.counts(), catalog.imbalance_ratio           # doctest: +SKIP
>>> result = imgbalance.split(catalog, seed=42)         # doctest: +SKIP
>>> imgbalance.write_split(result, "splits", materialize="link")  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from .balancing import BalancePlan, BalanceResult, balance, plan, render
from .catalog import Catalog, ImageRecord, Problem, Skipped
from .demo import make_demo_dataset
from .errors import DatasetError, ImgBalanceError, OutputError
from .images import load_image
from .methods import create_method, list_methods
from .planner import plan_arrays
from .scanner import scan
from .splits import SplitResult, read_groups_csv, split, write_split

__all__ = [
    "BalancePlan",
    "BalanceResult",
    "Catalog",
    "DatasetError",
    "ImageRecord",
    "ImgBalanceError",
    "OutputError",
    "Problem",
    "Skipped",
    "SplitResult",
    "__version__",
    "balance",
    "create_method",
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
