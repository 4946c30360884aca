"""The ``imgbalance`` command. It parses, checks paths, calls the library and maps
errors to exit codes: 0 success, 1 a clear error (bad input, refused output,
``--strict`` problems), 2 a usage error."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import __version__
from ._fs import check_output_dir
from .catalog import Catalog
from .errors import ImgBalanceError
from .images import DEFAULT_MAX_PIXELS
from .scanner import scan

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


def _errors_to_exit(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ImgBalanceError, ValueError) as exc:
            err_console.print(f"[bold red]Error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

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
WorkersOpt = Annotated[int | None, typer.Option(help="Processes for scanning (default: CPUs).")]
MaxPixelsOpt = Annotated[
    int, typer.Option(help="Larger images are reported as decompression bombs and never decoded.")
]


def _scan(
    data: Path, *, verify: bool, workers: int | None, max_pixels: int, near_duplicates: bool = False
) -> Catalog:
    with _progress(f"scanning {data}") as update:
        return scan(
            data,
            verify=verify,
            workers=workers,
            max_pixels=max_pixels,
            near_duplicates=near_duplicates,
            progress=update,
        )


@app.command()
@_errors_to_exit
def analyze(
    data: DataArg,
    out: Annotated[
        Path | None,
        typer.Option(help="Write analysis.json, class_distribution.png and samples.png here."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print analysis JSON to stdout instead of tables.")
    ] = False,
    verify: VerifyOpt = False,
    strict: Annotated[bool, typer.Option(help="Exit 1 if any error or warning is found.")] = False,
    near_duplicates: Annotated[
        bool,
        typer.Option(
            help="Also report near-duplicate pairs by "
            "perceptual hash (approximate; decodes "
            "thumbnails)."
        ),
    ] = False,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    workers: WorkersOpt = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace earlier analysis files in --out.")
    ] = False,
) -> None:
    """Count images per class, report both ratios and every problem in the files."""
    if out is not None:
        check_output_dir(
            out,
            [data],
            overwrite=overwrite,
            replaces=("analysis.json", "class_distribution.png", "samples.png"),
        )
    catalog = _scan(
        data, verify=verify, workers=workers, max_pixels=max_pixels, near_duplicates=near_duplicates
    )
    from .report import analysis_json, print_analysis, write_analysis

    if as_json:
        sys.stdout.write(analysis_json(catalog))
    else:
        print_analysis(catalog, out_console)
    if out is not None:
        written = write_analysis(catalog, out)
        err_console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)
    empty = [c for c, n in catalog.counts().items() if n == 0]
    if empty:
        err_console.print(
            f"[yellow]Warning:[/] empty class folder(s): {', '.join(empty)}", highlight=False
        )
    if not catalog.usable():
        raise ImgBalanceError(
            f'"{data}" has {len(catalog.records)} image file(s) but no '
            "readable images; the table above says what is wrong with each."
        )
    if strict:
        bad = [p for p in catalog.problems if p.severity in ("error", "warning")]
        if bad:
            err_console.print(
                f"[bold red]Error:[/] --strict: {len(bad)} problem(s), first: {bad[0]}",
                highlight=False,
            )
            raise typer.Exit(1)


class Materialize(str, Enum):
    none = "none"
    link = "link"
    copy = "copy"


@app.command("split")
@_errors_to_exit
def split_cmd(
    data: DataArg,
    out: Annotated[Path, typer.Option(help="Output folder for splits.csv (and trees).")],
    val: Annotated[float, typer.Option(help="Fraction of each class for validation.")] = 0.15,
    test: Annotated[float, typer.Option(help="Fraction of each class for test.")] = 0.15,
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 42,
    group_by: Annotated[
        str | None,
        typer.Option(
            help="Regex over the relative path; its "
            "first capture group names the group "
            "(patient, leaf, slide)."
        ),
    ] = None,
    groups: Annotated[Path | None, typer.Option(help="CSV with columns path,group.")] = None,
    materialize: Annotated[
        Materialize,
        typer.Option(
            help="Also build out/train, out/val, "
            "out/test as ImageFolder trees (hard "
            "links, or copies)."
        ),
    ] = Materialize.none,
    overwrite: Annotated[
        bool, typer.Option(help="Replace earlier split outputs in --out.")
    ] = False,
    verify: VerifyOpt = False,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    workers: WorkersOpt = None,
) -> None:
    """Stratified train/val/test split; groups and exact duplicates never cross splits."""
    from .report import print_split
    from .splits import SPLIT_OUTPUTS, read_groups_csv, split, write_split

    if group_by is not None and groups is not None:
        raise ImgBalanceError("Give --group-by or --groups, not both.")
    check_output_dir(out, [data], overwrite=overwrite, replaces=SPLIT_OUTPUTS)
    mapping = read_groups_csv(groups) if groups is not None else None
    catalog = _scan(data, verify=verify, workers=workers, max_pixels=max_pixels)
    result = split(catalog, val=val, test=test, seed=seed, group_by=group_by, groups=mapping)
    mode = None if materialize is Materialize.none else materialize.value
    summary = write_split(result, out, materialize=mode, overwrite=overwrite)
    print_split(result, summary, out_console)
    for w in result.warnings:
        err_console.print(f"[yellow]Warning:[/] {w}", highlight=False)
    what = "splits.csv, split_summary.json" + (", train/, val/, test/" if mode else "")
    err_console.print(f"wrote {what} in {out}", highlight=False)


@app.command()
@_errors_to_exit
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo data and results.")] = Path(
        "imgbalance-demo"
    ),
) -> None:
    """Build the long-tailed digits demo dataset, then analyze and split it."""
    from .demo import make_demo_dataset, prepare_demo_dir
    from .report import print_analysis, print_split, write_analysis
    from .splits import split, write_split

    prepare_demo_dir(out)
    data = out / "data"
    counts = make_demo_dataset(data)
    err_console.print(
        f"built {sum(counts.values())} real handwritten digits in {data} "
        "(long-tailed: " + ", ".join(f"{n}" for n in counts.values()) + ")"
    )
    catalog = _scan(data, verify=True, workers=1, max_pixels=DEFAULT_MAX_PIXELS)
    print_analysis(catalog, out_console)
    written = write_analysis(catalog, out / "analysis")
    result = split(catalog, seed=42)
    summary = write_split(result, out / "split", materialize="link")
    print_split(result, summary, out_console)
    out_console.print("\n[bold]Outputs[/]")
    for p in [data, *written, out / "split" / "splits.csv", out / "split" / "train"]:
        out_console.print(f"  {p}", highlight=False)


def main() -> None:
    """Entry point of the ``imgbalance`` console script."""
    app()


if __name__ == "__main__":
    main()
