"""Optional dependencies: import one, or raise an error naming the extra that installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ImgBalanceError

__all__ = ["require"]


def require(module: str, extra: str, needed_by: str, instead: str) -> ModuleType:
    """``module``, imported; when it is missing, an error saying what needs it
    (``needed_by``), the ``pip install 'imgbalance[extra]'`` that fixes it, and
    the way to do without (``instead``)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        raise ImgBalanceError(
            f"{needed_by} needs {package}, which is not installed: "
            f"pip install 'imgbalance[{extra}]' ({instead})."
        ) from exc
