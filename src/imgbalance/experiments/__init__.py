"""Comparing techniques: run configs, one training run, grids of runs, metrics,
reports, plots and trackers.

``run_training(config, out)`` trains one run (importing torch only for CNN models);
``run_grid`` (:mod:`.grid`) runs a grid; ``write_report`` (:mod:`.report`) compares
the runs. The metrics in :mod:`.metrics` need only scikit-learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import RunConfig

if TYPE_CHECKING:
    from .run import run_training


def __getattr__(name: str) -> Any:
    # run_training imports scikit-learn and imbalanced-learn's metrics: only when used
    if name == "run_training":
        from .run import run_training

        return run_training
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RunConfig", "run_training"]
