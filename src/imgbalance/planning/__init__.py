"""Stage 2, deciding in feature space: features of the originals (thumbnails, PCA,
CNN embeddings), target counts, and a :class:`Plan` of kept originals and recipes.

The methods (:mod:`imgbalance.methods`) edit a :class:`PlanState` built from these
types, and :func:`imgbalance.planner.plan_arrays` runs a method on a feature matrix
(it lives above both, so imports run one way: planner -> methods -> planning).
Augmentation parameters are drawn here (:mod:`.augment`), applied at render time.
"""

from .recipes import Plan, PlanState, Recipe
from .targets import Target, parse_target, resolve_target

__all__ = ["Plan", "PlanState", "Recipe", "Target", "parse_target", "resolve_target"]
