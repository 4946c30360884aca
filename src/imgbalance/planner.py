"""Planning on a feature matrix: the public ``plan_arrays`` verb (a method of
:mod:`imgbalance.methods` run on the types of :mod:`imgbalance.planning`), and
:class:`BalancePlan`, a plan with the image records it indexes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._random import RandomState, as_generator, seed_of
from .dataset.catalog import ImageRecord
from .errors import ConfigError
from .methods import Method, create_pipeline
from .planning.recipes import Plan, PlanState
from .planning.targets import Target, parse_target, resolve_target

__all__ = ["BalancePlan", "plan_arrays"]


@dataclass
class BalancePlan:
    """A plan and the readable originals it indexes (sorted by path)."""

    plan: Plan
    records: list[ImageRecord]
    root: Path

    def counts_before(self) -> dict[str, int]:
        return self.plan.counts_before()

    def counts_after(self) -> dict[str, int]:
        return self.plan.counts_after()


def plan_arrays(
    X: np.ndarray,
    y: Sequence[int] | np.ndarray,
    classes: list[str],
    method: str | list[str] | Method = "smote",
    target: Target | None = None,
    random_state: RandomState = 0,
    originals: list[str] | None = None,
    feature_shape: tuple[int, int, int] | None = None,
    **params: Any,
) -> Plan:
    """Plan a method on features ``X`` (n x d) with labels ``y`` (indices into ``classes``).

    Parameters
    ----------
    method
        A registry name (``"smote"``), a pipeline (``"smote,enn,mixup"``), a list
        of names, or a :class:`~imgbalance.methods.Method`.
    target
        ``"auto"``, ``"ratio:R"``, ``"count:N"``, a ``{class: N}`` mapping or a
        YAML path; None uses the method's own default (``auto``; STEM: its
        ``target_ratio``).
    random_state
        Seed (or Generator) of every random choice; None draws fresh entropy.
    feature_shape
        ``(height, width, channels)`` when the rows of ``X`` are flattened
        thumbnails in [0, 1]: ``augment`` then plans on augmented thumbnails.
    params
        Method parameters (``k_neighbors=3``...); a pipeline passes each to the
        steps that accept it.

    Examples
    --------
    >>> X = np.random.default_rng(0).random((30, 4), dtype=np.float32)
    >>> y = np.array([0] * 24 + [1] * 6)
    >>> plan = plan_arrays(X, y, ["a", "b"], "smote", random_state=0)
    >>> plan.counts_after()
    {'a': 24, 'b': 24}
    """
    m = create_pipeline(method, **params)
    m.validate()
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if X.ndim != 2 or len(X) != len(y):
        raise ConfigError(f"X must be (n, d) with n = len(y); got {X.shape} and {len(y)} labels.")
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        raise ConfigError(f"labels must be in [0, {len(classes)}); got {y.min()}..{y.max()}.")
    user_target = parse_target(target) if target is not None else None
    resolved = m.target_for(user_target)
    if resolved is not None:  # an impossible target fails here, before any work
        counts = np.bincount(y, minlength=len(classes))
        resolve_target(resolved, dict(zip(classes, counts.tolist(), strict=True)))
    rng = as_generator(random_state)
    state = PlanState(X, y, classes)
    if feature_shape is not None:
        if int(np.prod(feature_shape)) != X.shape[1]:
            raise ConfigError(f"feature_shape {feature_shape} does not match {X.shape[1]} columns.")
        state.feature_shape = tuple(feature_shape)  # type: ignore[assignment]
    m.run(state, resolved, rng)
    config = {
        **m.describe(),
        "target": resolved if not isinstance(resolved, dict) else dict(resolved),
        "seed": seed_of(random_state),
    }
    return Plan.from_state(state, config, originals)
