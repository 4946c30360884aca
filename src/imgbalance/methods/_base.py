"""The method registry and base class.

A method is a class with a registry name. ``create_method(name, **params)``
and ``list_methods()`` are the way in for the CLI, configs and Python alike.
``__init__`` only stores parameters; :meth:`Method.validate` checks them once,
when planning starts.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, ImgBalanceError
from ..planning.recipes import PlanState
from ..planning.targets import Target, resolve_target
from ..registry import Registry

__all__ = ["METHODS", "Method", "create_method", "list_methods", "register"]

#: every balancing method, by registry name (``imgbalance methods`` lists them)
METHODS: Registry[type[Method]] = Registry("method", "See `imgbalance methods`.")


class Method:
    """Base class: ``kind`` is ``over``, ``under``, ``clean`` or ``hybrid``."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "over"
    defaults: ClassVar[dict[str, Any]] = {}
    #: the target a method aims at when the user names none
    default_target: ClassVar[str] = "auto"
    #: parameters added after plans were first written, with the default that is the
    #: behaviour of those plans: a plan records them only when set otherwise, so a plan
    #: of the same job stays the same file (and ``--resume`` accepts it)
    added_later: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            accepted = ", ".join(sorted(self.defaults)) or "none"
            raise ConfigError(
                f'Method "{self.name}" has no parameter(s) {unknown}; it accepts: {accepted}.'
            )
        self.params: dict[str, Any] = {**self.defaults, **params}
        #: the parameters given explicitly (not defaults): some rules depend on it
        self.explicit: frozenset[str] = frozenset(params)

    def validate(self) -> None:
        """Check parameter values; raise ``ImgBalanceError`` naming the fix."""

    def run(self, state: PlanState, target: Target, rng: np.random.Generator) -> None:
        """Edit ``state`` towards ``target`` (resolved against the current counts)."""
        raise NotImplementedError

    def resolve(self, target: Target, state: PlanState) -> dict[int, int]:
        """Per-label target counts for this method's kind, from the current counts."""
        counts = state.counts()
        per_class = resolve_target(
            target,
            dict(zip(state.classes, counts.tolist(), strict=True)),
            kind="under" if self.kind == "under" else "over",
        )
        return {state.classes.index(c): n for c, n in per_class.items()}

    def target_for(self, user_target: Any) -> Any:
        return self.default_target if user_target is None else user_target

    def describe(self) -> dict[str, Any]:
        params = {
            k: v
            for k, v in self.params.items()
            if not (k in self.added_later and v == self.added_later[k])
        }
        return {"method": self.name, "params": params}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    # helpers shared by subclasses
    def _positive_int(self, key: str, minimum: int = 1) -> int:
        value = self.params[key]
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            raise ImgBalanceError(
                f"{self.name}: {key} must be an integer >= {minimum}, got {value!r}."
            )
        return int(value)

    def _choice(self, key: str, options: tuple[str, ...]) -> str:
        value = self.params[key]
        if value not in options:
            raise ImgBalanceError(
                f"{self.name}: {key} must be one of {', '.join(options)}; got {value!r}."
            )
        return str(value)


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to :data:`METHODS` under ``cls.name``."""
    METHODS.add(cls.name, cls)
    return cls


def list_methods() -> list[str]:
    """Registry names of every method, sorted."""
    return METHODS.names()


def create_method(name: str, **params: Any) -> Method:
    """Instantiate a registered method by name.

    Examples
    --------
    >>> create_method("smote", k_neighbors=3)
    SMOTE(k_neighbors=3, small_class_fallback='adapt')
    """
    return METHODS.get(name)(**params)
