"""The ``imgbalance`` command. It parses, checks paths, calls the library and maps
errors to exit codes (see :mod:`imgbalance.errors`): 0 success, 1 a clear error
(an :class:`~imgbalance.errors.ImgBalanceError`: bad input, refused output, ``--strict``
problems, failed runs), 2 a usage error; any other exception is a bug and shows its
traceback.

Commands live by stage: :mod:`.data` (analyze, split, balance), :mod:`.train`
(train, experiment, report), :mod:`.deploy` (predict, export) and :mod:`.info`
(methods, list, demo).
"""

from __future__ import annotations

from . import data, deploy, info, train  # noqa: F401 - each module registers its commands
from .common import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``imgbalance`` console script."""
    app()
