"""Training and evaluating classifiers per balancing technique (the torch extra).

``run_training(config, out)`` trains one run; the metrics in
:mod:`imgbalance.training.metrics` need only scikit-learn.
"""

from .config import RunConfig
from .runner import run_training

__all__ = ["RunConfig", "run_training"]
