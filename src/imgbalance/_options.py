"""How an error names a setting: the flag of the command being run, or the keyword.

The library is called from Python and from the command line. A message that
tells the user what to change must name what they can type: ``k_neighbors=2``
(the keyword argument, or the method parameter of a config or
``--technique-param``) by default, and ``--k-neighbors 2`` while a command that
has that flag runs (it declares its flags with :func:`cli_flags`).

>>> option("k_neighbors", 2)
'k_neighbors=2'
>>> with cli_flags("k_neighbors", "overwrite"):
...     option("k_neighbors", 2), option("overwrite", True)
('--k-neighbors 2', '--overwrite')
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["cli_flags", "option", "option_name"]

_FLAGS: ContextVar[frozenset[str]] = ContextVar("imgbalance_cli_flags", default=frozenset())


def option(keyword: str, value: object) -> str:
    """``keyword=value`` (Python), or ``--keyword value`` inside :func:`cli_flags`."""
    if keyword in _FLAGS.get():
        flag = option_name(keyword)
        return flag if value is True else f"{flag} {value}"
    return f"{keyword}={value!r}"


def option_name(keyword: str) -> str:
    """The setting's name alone: ``k_neighbors``, or ``--k-neighbors`` inside :func:`cli_flags`."""
    return "--" + keyword.replace("_", "-") if keyword in _FLAGS.get() else keyword


@contextlib.contextmanager
def cli_flags(*keywords: str) -> Iterator[None]:
    """While the block runs, :func:`option` names these keywords as command-line flags."""
    token = _FLAGS.set(_FLAGS.get() | frozenset(keywords))
    try:
        yield
    finally:
        _FLAGS.reset(token)
