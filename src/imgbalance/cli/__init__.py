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

from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from . import data, deploy, info, train  # noqa: F401 - each module registers its commands
from .common import app

__all__ = ["app", "command", "main"]


def tidy_help(cmd: Any) -> Any:
    """Help that reads as a command line: ``DATA`` for an argument (typer writes
    ``{data}`` in the usage line), and no ``<bool>`` after a flag, which takes no value.
    """
    for param in cmd.params:
        if isinstance(param, TyperArgument):
            name = param.metavar or (param.name or "arg").upper()
            param.metavar = name
            usage = (name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else "")
            setattr(param, "get_usage_pieces", lambda ctx, usage=usage: [usage])  # noqa: B010
        elif isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
    # --help is not among the params: click makes it per context
    made = cmd.get_help_option

    def help_option(ctx: Any, made: Any = made) -> Any:
        option = made(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    setattr(cmd, "get_help_option", help_option)  # noqa: B010
    if isinstance(cmd, TyperGroup):
        for sub in cmd.commands.values():
            tidy_help(sub)
    return cmd


def command() -> Any:
    """The ``imgbalance`` command as a click command (what the console script runs)."""
    return tidy_help(typer.main.get_command(app))


def main() -> None:
    """Entry point of the ``imgbalance`` console script."""
    command()()
