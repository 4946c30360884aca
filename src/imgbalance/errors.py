"""Exceptions raised for bad user input.

Every message names the path or value, the rule that was broken and the fix,
so the command-line layer can print it as is.
"""

from __future__ import annotations

__all__ = ["DatasetError", "ImgBalanceError", "OutputError"]


class ImgBalanceError(Exception):
    """Base class of every error imgbalance raises on purpose."""


class DatasetError(ImgBalanceError):
    """The input dataset cannot be used as it is."""


class OutputError(ImgBalanceError):
    """The requested output location is unsafe or already taken."""
