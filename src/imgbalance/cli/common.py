"""What every command shares: the Typer app, the consoles, the error-to-exit-code
mapping, progress bars, common options and small parsers."""

from __future__ import annotations

import contextlib
import functools
import re
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .._options import cli_flags
from .._text import shown
from .._version import __version__
from ..dataset.catalog import Catalog
from ..dataset.scanner import scan
from ..errors import EXIT_ERROR, ConfigError, ImgBalanceError

__all__ = [
    "AddressOpt",
    "DataArg",
    "FollowLinksOpt",
    "MaxPixelsOpt",
    "Terminated",
    "VerifyOpt",
    "WorkersOpt",
    "app",
    "check_backend",
    "check_tracker",
    "err_console",
    "errors_to_exit",
    "out_console",
    "parse_budget",
    "parse_params",
    "parse_size",
    "progress_bars",
    "scan_with_progress",
]

app = typer.Typer(
    name="imgbalance",
    help="See, split and balance imbalanced image-classification datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out_console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``kill``, a batch scheduler and a container runtime send), raised as
    Ctrl-C is, so a command stops the same clean way: temporaries removed, workers ended,
    a one-line message. Python's default for SIGTERM ends the process on the spot."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[None]:
    """While a command runs, SIGTERM raises :class:`Terminated` (main thread only; a
    SIGTERM that is ignored, as ``nohup`` leaves some, stays ignored)."""
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    ):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def errors_to_exit(func: F) -> F:
    """Map imgbalance's own errors (and only those) to a one-line message and exit 1, and
    a stop by Ctrl-C or SIGTERM to one line and the shell's codes for them (130, 143)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _sigterm_stops(), cli_flags("overwrite", "resume"):
                return func(*args, **kwargs)
        except ImgBalanceError as exc:
            err_console.print(
                f"[bold red]Error:[/] {shown(exc, keep_newlines=True)}", highlight=False
            )
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt as exc:
            how = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C (SIGINT)"
            err_console.print(
                f"[bold yellow]Stopped[/] by {how}: no half-written file is kept. Run the "
                "same command again to go on (its message says when it needs --resume or "
                "--overwrite).",
                highlight=False,
            )
            raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def progress_bars() -> Iterator[Callable[[str, int, int], None]]:
    with Progress(
        TextColumn("{task.description:9s}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int) -> None:
            """Advance the bar of ``phase`` (scan, features, render), creating it once."""
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def _version(value: bool) -> None:
    if value:
        out_console.print(f"imgbalance {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """See, split and balance imbalanced image-classification datasets."""


DataArg = Annotated[
    Path, typer.Argument(help="Dataset folder: one sub-folder per class.", show_default=False)
]
VerifyOpt = Annotated[
    bool,
    typer.Option("--verify", help="Decode every image fully to find corrupt pixel data (slower)."),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Worker processes for scanning, features and rendering "
        "(default: the CPUs, at most 8).",
    ),
]
MaxPixelsOpt = Annotated[
    int, typer.Option(help="Larger images are reported as decompression bombs and never decoded.")
]
AddressOpt = Annotated[
    str | None,
    typer.Option(help="Ray cluster address for --backend ray (default: a local instance)."),
]


def scan_with_progress(
    data: Path,
    *,
    verify: bool,
    workers: int | None,
    max_pixels: int,
    near_duplicates: bool = False,
    follow_links: bool = False,
) -> Catalog:
    with progress_bars() as update:
        return scan(
            data,
            verify=verify,
            workers=workers,
            max_pixels=max_pixels,
            near_duplicates=near_duplicates,
            follow_links=follow_links,
            progress=lambda done, total: update(f"scanning {data}", done, total),
        )


FollowLinksOpt = Annotated[
    bool,
    typer.Option(
        "--follow-links",
        help="Follow symbolic links that lead out of DATA (by default they are listed as "
        "skipped, not followed).",
    ),
]


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``--image-size WxH`` as ``(width, height)``."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ImgBalanceError(f'--image-size "{text}" must look like 256x256.') from None
    if w < 1 or h < 1:
        raise ImgBalanceError(f'--image-size "{text}" must be positive.')
    return w, h


def parse_params(items: list[str], flag: str | None = None) -> dict[str, Any]:
    """``key=value`` options (values read as YAML scalars) as a dict; errors name ``flag``
    (``--param``) when given."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            if flag:
                fix = f"e.g. {flag} mixup_alpha=0.2"
            else:  # shared by several options (--set, --technique-param)
                fix = 'a name, "=" and a value, such as epochs=30 or k_neighbors=3'
            raise ImgBalanceError(f'"{item}" must look like key=value ({fix}).')
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def check_backend(name: str) -> str:
    # balance() and run_grid() check that Ray is installed before any work
    if name not in ("local", "ray"):
        raise ImgBalanceError(f"--backend must be local or ray; got {name!r}.")
    return name


def check_tracker(name: str) -> str:
    from ..experiments.trackers import TRACKERS

    if name not in TRACKERS:
        raise ImgBalanceError(f"--tracker must be one of {', '.join(TRACKERS)}; got {name!r}.")
    return name


def parse_budget(text: str | float | None) -> float | None:
    """Seconds from ``"20m"``, ``"1h30m"``, ``"90s"`` or a number of seconds."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    number = r"(\d+(?:\.\d+)?)"
    parts = re.fullmatch(rf"\s*(?:{number}h)?\s*(?:{number}m)?\s*(?:{number}s?)?\s*", text)
    if not text.strip() or parts is None or not any(parts.groups()):
        raise ConfigError(f'--budget "{text}" is not a duration; write it like 20m, 1h30m or 90s.')
    if (parts.group(1) or parts.group(2)) and parts.group(3) and not text.strip().endswith("s"):
        raise ConfigError(
            f'--budget "{text}": a number after hours or minutes needs its unit; write '
            "1h30m, not 1h30."
        )
    h, m, s = (float(g) if g else 0.0 for g in parts.groups())
    if 3600 * h + 60 * m + s <= 0:  # a plan of no time: the baseline only, then "time is up"
        raise ConfigError(f'--budget "{text}" is no time; give a duration like 20m.')
    return 3600 * h + 60 * m + s
