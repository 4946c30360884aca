"""The one family of errors imgbalance raises on purpose, for bad user input.

Every message names the path or value, the rule that was broken and the fix,
so the command-line layer can print it as is. :class:`ImgBalanceError` is a
``ValueError``, so code that catches ``ValueError`` around a library call keeps
working; the command line catches only this family (exit code 1): any other
exception, a ``ValueError`` from numpy or scikit-learn included, is a bug and
ends with its traceback.

Exit codes of the ``imgbalance`` command and of the benchmark scripts:

* 0: success;
* 1: an :class:`ImgBalanceError` (bad input, refused output, a run that failed,
  ``--strict`` problems), printed as one message;
* 2: a usage error (unknown option, missing argument), printed by the parser;
* anything else (a traceback): a bug, please report it.
"""

from __future__ import annotations

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_USAGE",
    "ConfigError",
    "DatasetError",
    "ImgBalanceError",
    "MissingDependencyError",
    "OutputError",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class ImgBalanceError(ValueError):
    """Base class of every error imgbalance raises on purpose."""


class DatasetError(ImgBalanceError):
    """The input dataset cannot be used as it is."""


class OutputError(ImgBalanceError):
    """The requested output location is unsafe or already taken."""


class ConfigError(ImgBalanceError):
    """A setting, parameter or name is not valid (an unknown method, loss, model...)."""


class MissingDependencyError(ImgBalanceError):
    """An optional extra that the requested feature needs is not installed."""
