"""``random_state`` as every public verb takes it: an int seed, a Generator, or None."""

from __future__ import annotations

import warnings

import numpy as np

from .errors import ConfigError

__all__ = ["RandomState", "as_generator", "int_seed", "resolve_seed_alias", "seed_of"]

#: an int (a seed: same seed, same bytes), a Generator (drawn from), or None (fresh entropy)
RandomState = int | np.random.Generator | None


def as_generator(random_state: RandomState) -> np.random.Generator:
    """The one Generator a public verb passes down (a given Generator is used as is)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is not None and (seed_of(random_state) is None or int(random_state) < 0):
        raise ConfigError(  # numpy's own error was a traceback from inside its seeding
            f"random_state must be an integer >= 0, a numpy Generator or None, got "
            f"{random_state!r}. Write it like random_state=0 (--seed 0 on the command line)."
        )
    return np.random.default_rng(random_state)


def seed_of(random_state: RandomState) -> int | None:
    """The int seed to record in outputs, or None when the state is not a plain seed."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    return None


def int_seed(random_state: RandomState) -> int:
    """An int for components that take only ints (scikit-learn's PCA, torch seeds): the seed
    itself, or one drawn from the Generator (or from fresh entropy for None)."""
    seed = seed_of(random_state)
    if seed is not None:
        return seed
    return int(as_generator(random_state).integers(2**32 - 1))


def resolve_seed_alias(random_state: RandomState, seed: int | None, verb: str) -> RandomState:
    """``seed=`` is the old name of ``random_state=``: still accepted, with a warning."""
    if seed is None:
        return random_state
    warnings.warn(
        f"{verb}(seed=...) is deprecated; use random_state=... (same meaning).",
        DeprecationWarning,
        stacklevel=3,
    )
    return seed
