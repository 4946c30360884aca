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
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    with Progress(
        TextColumn("{task.description:9s}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
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
        help="Worker processes for scanning, features and rendering (default: the CPUs, at most 8)."
    ),
]
MaxPixelsOpt = Annotated[
    int, typer.Option(help="Larger images are reported as decompression bombs and never decoded.")
]
AddressOpt = Annotated[
    str | None,
    typer.Option(help="Ray cluster address for --backend ray (default: a local instance)."),
]


def _scan(
    data: Path, *, verify: bool, workers: int | None, max_pixels: int, near_duplicates: bool = False
) -> Catalog:
    with _progress() as update:
        return scan(
            data,
            verify=verify,
            workers=workers,
            max_pixels=max_pixels,
            near_duplicates=near_duplicates,
            progress=lambda done, total: update(f"scanning {data}", done, total),
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


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ImgBalanceError(f'--image-size "{text}" must look like 256x256.') from None
    if w < 1 or h < 1:
        raise ImgBalanceError(f'--image-size "{text}" must be positive.')
    return w, h


def _parse_params(items: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ImgBalanceError(
                f'--param "{item}" must look like key=value, e.g. --param mixup_alpha=0.2.'
            )
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


class OutFormat(str, Enum):
    keep = "keep"
    png = "png"
    jpg = "jpg"


@app.command("balance")
@_errors_to_exit
def balance_cmd(
    src: Annotated[
        Path,
        typer.Argument(
            help="Training images: one sub-folder per class. "
            "Split first; balance only the training split.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None, typer.Argument(help="Output folder (ImageFolder layout).", show_default=False)
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            help="A method or a comma-separated pipeline, e.g. "
            "smote,enn,mixup. See `imgbalance methods`."
        ),
    ] = "smote",
    target: Annotated[
        str | None,
        typer.Option(
            help="auto | ratio:R | count:N | a YAML file "
            "mapping class to count (default: the "
            "method's own; auto for most)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    features: Annotated[
        str,
        typer.Option(
            help="Planning feature space: thumbnail[:SIZE][:rgb|gray], "
            "embedding:MODEL[:WEIGHTS] (a torchvision model's penultimate layer; WEIGHTS is "
            "DEFAULT, a weights name or a .pth file; torch extra), with pca:N: before either "
            "to reduce."
        ),
    ] = "thumbnail",
    k_neighbors: Annotated[
        int | None, typer.Option(help="Neighbours for SMOTE-family methods (default 5).")
    ] = None,
    small_class_fallback: Annotated[
        str | None,
        typer.Option(
            help="A class with fewer than k+1 images: adapt (lower k; the default), error, "
            "random-over (copies) or augment (augmented copies; needs the torch extra)."
        ),
    ] = None,
    clean_originals: Annotated[
        str | None,
        typer.Option(
            help="Which originals ENN/Tomek may remove: majority (the default: only the largest "
            "class), all (imbalanced-learn's behaviour) or none."
        ),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="Any method parameter, key=value (repeatable).")
    ] = None,
    fmt: Annotated[
        OutFormat,
        typer.Option(
            "--format", help="Format of synthetic images: keep the base parent's, png or jpg."
        ),
    ] = OutFormat.keep,
    png_compress_level: Annotated[
        int, typer.Option(help="zlib level for synthetic PNGs (0-9; 1 is fast).")
    ] = 1,
    image_size: Annotated[
        str | None,
        typer.Option(
            help="Resize every output to WxH (STEM compatibility); originals are then re-encoded."
        ),
    ] = None,
    manifest_only: Annotated[
        bool,
        typer.Option(
            help="Write only synthetic images; the manifest references originals in place."
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the plan; write nothing.")] = False,
    save_stages: Annotated[
        bool,
        typer.Option(
            help="Also write stages/<name>/manifest.csv for intermediate stages "
            "(stem: after_smote_enn)."
        ),
    ] = False,
    backend: Annotated[
        str, typer.Option(help="Render with local processes (default) or ray tasks.")
    ] = "local",
    address: AddressOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run into OUT.")] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Replace imgbalance's earlier outputs in OUT.")
    ] = False,
    workers: WorkersOpt = None,
) -> None:
    """Balance the classes of SRC into OUT: plan on features, render at full resolution."""
    from .balancing import balance
    from .report import print_balance

    params = _parse_params(param or [])
    for key, value in (
        ("k_neighbors", k_neighbors),
        ("small_class_fallback", small_class_fallback),
        ("clean_originals", clean_originals),
    ):
        if value is not None:
            params[key] = value
    if out is None and not dry_run:
        raise ImgBalanceError("Give an output folder (OUT), or --dry-run to only see the plan.")
    with _progress() as update:
        result = balance(
            src,
            out,
            method=method,
            target=target,
            seed=seed,
            features=features,
            workers=workers,
            format=fmt.value,
            png_compress_level=png_compress_level,
            image_size=_parse_size(image_size),
            manifest_only=manifest_only,
            overwrite=overwrite,
            resume=resume,
            dry_run=dry_run,
            save_stages=save_stages,
            backend=_backend(backend),
            address=address,
            progress=update,
            **params,
        )
    print_balance(result, out_console)
    for note in result.plan.notes:
        err_console.print(f"[yellow]Note:[/] {note}", highlight=False)
    if dry_run:
        err_console.print("dry run: nothing was written", highlight=False)
    else:
        err_console.print(
            f"wrote {out}/<class>/..., manifest.csv, summary.json, "
            "balance_summary.txt, preview.png, class_distribution.png",
            highlight=False,
        )


def _backend(name: str) -> str:
    # balance() and run_grid() check that Ray is installed before any work
    if name not in ("local", "ray"):
        raise ImgBalanceError(f"--backend must be local or ray; got {name!r}.")
    return name


def _tracker(name: str) -> str:
    from .training.trackers import TRACKERS

    if name not in TRACKERS:
        raise ImgBalanceError(f"--tracker must be one of {', '.join(TRACKERS)}; got {name!r}.")
    return name


@app.command()
@_errors_to_exit
def train(
    data: Annotated[
        Path,
        typer.Argument(
            help="A split: the folder `imgbalance split --out` wrote (splits.csv), or a tree "
            "with train/ val/ test/ class folders."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Run folder to write.")],
    model: Annotated[
        str, typer.Option(help="small-cnn, linear (logistic regression), or a torchvision name.")
    ] = "small-cnn",
    pretrained: Annotated[
        str | None,
        typer.Option(help="Weights for a torchvision model: DEFAULT, a name, or a .pth file."),
    ] = None,
    technique: Annotated[
        str, typer.Option(help="Offline balancing of the training split (a balance method).")
    ] = "none",
    technique_param: Annotated[
        list[str] | None,
        typer.Option(help="A parameter of the technique, key=value (repeatable)."),
    ] = None,
    loss: Annotated[str, typer.Option(help="ce, weighted-ce, focal or balanced-softmax.")] = "ce",
    sampler: Annotated[str, typer.Option(help="none, class-balanced or sqrt.")] = "none",
    mixing: Annotated[str, typer.Option(help="none, mixup, cutmix or mixup-cutmix.")] = "none",
    epochs: Annotated[
        int, typer.Option(help="Epochs budget (early stopping may end sooner).")
    ] = 30,
    seed: Annotated[int, typer.Option(help="Seed of initial weights, order and balancing.")] = 0,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any other run setting, key=value (repeatable), e.g. --set focal_gamma=1 "
            "--set ensemble=5 --set image_size=96.",
        ),
    ] = None,
    tracker: Annotated[
        str, typer.Option(help="Also log the run to none, mlflow (local store) or wandb (offline).")
    ] = "none",
    tracker_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI or W&B directory.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run folder.")] = False,
) -> None:
    """Train and evaluate one classifier on a split, with one balancing technique."""
    from .training import RunConfig, run_training

    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ImgBalanceError(f'"{out}" is not empty; pass --overwrite or choose another --out.')
    settings = {
        "data": str(data),
        "model": model,
        "pretrained": pretrained,
        "technique": technique,
        "technique_params": _parse_params(technique_param or []),
        "loss": loss,
        "sampler": sampler,
        "mixing": mixing,
        "epochs": epochs,
        "seed": seed,
        **_parse_params(setting or []),
    }
    cfg = RunConfig.from_dict(settings)
    with _progress() as update:
        summary = run_training(
            cfg,
            out,
            log=lambda m: err_console.print(m, highlight=False),
            tracker=_tracker(tracker),
            tracker_uri=tracker_uri,
            progress=update,
        )
    m = summary["final_metrics"]
    out_console.print(
        f"test (best epoch {summary['best_epoch']}): macro-F1 {m['macro_f1']:.3f}, balanced "
        f"accuracy {m['balanced_accuracy']:.3f}, accuracy {m['accuracy']:.3f}",
        highlight=False,
    )
    err_console.print(
        f"wrote {out}/experiment_summary.json and the run's other files", highlight=False
    )


@app.command()
@_errors_to_exit
def experiment(
    grid_file: Annotated[Path, typer.Argument(help="A grid YAML: data, seeds, arms, ...")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the run folders and report.")],
    data: Annotated[
        Path | None, typer.Option(help="The split folder to train on (replaces the grid's).")
    ] = None,
    jobs: Annotated[int, typer.Option(help="Runs in parallel on this machine.")] = 1,
    backend: Annotated[
        str, typer.Option(help="local (processes here, the default) or ray (one task per run).")
    ] = "local",
    address: AddressOpt = None,
    tracker: Annotated[
        str, typer.Option(help="Also log runs to none, mlflow (OUT/mlflow.db) or wandb (offline).")
    ] = "none",
    tracker_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI or W&B directory.")
    ] = None,
    report: Annotated[bool, typer.Option(help="Write the report when the grid is done.")] = True,
) -> None:
    """Train every run of a grid (arms x models x seeds); finished runs are skipped."""
    from .training.experiment import load_grid, run_grid
    from .training.report import write_report

    grid = load_grid(grid_file, data)
    inputs = [Path(grid["data"])]
    summary_file = inputs[0] / "split_summary.json"
    if summary_file.is_file():  # the images the split points to are inputs too
        import json

        inputs.append(Path(json.loads(summary_file.read_text(encoding="utf-8"))["root"]))
    check_output_dir(out, inputs, overwrite=True, replaces=())
    status = run_grid(
        grid,
        out,
        jobs=max(1, jobs),
        log=lambda m: err_console.print(m, highlight=False),
        tracker=_tracker(tracker),
        tracker_uri=tracker_uri,
        backend=_backend(backend),
        address=address,
    )
    out_console.print(
        f"{status['completed']} completed ({status['skipped']} from before), "
        f"{status['failed']} failed",
        highlight=False,
    )
    if report:
        paths = write_report(out)
        out_console.print(f"report: {paths['html']}", highlight=False)
    if status["failed"]:
        raise typer.Exit(1)


@app.command("report")
@_errors_to_exit
def report_cmd(
    runs_dir: Annotated[Path, typer.Argument(help="A folder of run folders (experiment --out).")],
) -> None:
    """Write results.csv, report.md and report.html for a folder of runs."""
    from .training.report import write_report

    if not runs_dir.is_dir():
        raise ImgBalanceError(f'"{runs_dir}" is not a folder of runs.')
    paths = write_report(runs_dir)
    for p in paths.values():
        out_console.print(str(p), highlight=False)


@app.command("methods")
def methods_cmd() -> None:
    """List the balancing methods and their parameters."""
    from rich.table import Table

    from .methods import create_method, list_methods

    table = Table(title="balancing methods", title_justify="left", show_lines=True)
    for col in ("method", "kind", "what it does", "parameters (defaults)"):
        table.add_column(col, overflow="fold")
    for name in list_methods():
        m = create_method(name)
        doc = " ".join((type(m).__doc__ or "").split("\n\n")[0].split())
        table.add_row(name, m.kind, doc, ", ".join(f"{k}={v!r}" for k, v in m.params.items()))
    out_console.print(table)


@app.command()
@_errors_to_exit
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo data and results.")] = Path(
        "imgbalance-demo"
    ),
    experiment: Annotated[
        bool, typer.Option(help="Also train and compare techniques (needs the torch extra).")
    ] = True,
) -> None:
    """Build the long-tailed digits demo dataset; analyze, split and balance it; then train
    and compare a few techniques over 3 seeds and write a report."""
    from .balancing import balance
    from .demo import make_demo_dataset, prepare_demo_dir
    from .report import print_analysis, print_balance, print_split, write_analysis
    from .splits import split, write_split

    prepare_demo_dir(out)
    data = out / "data"
    counts = make_demo_dataset(data)
    err_console.print(
        f"built {sum(counts.values())} real handwritten digits in {data} (long-tailed: "
        + ", ".join(f"{n}" for n in counts.values())
        + ")",
        highlight=False,
    )
    catalog = _scan(data, verify=True, workers=1, max_pixels=DEFAULT_MAX_PIXELS)
    print_analysis(catalog, out_console)
    written = write_analysis(catalog, out / "analysis")
    result = split(catalog, seed=42)
    summary = write_split(result, out / "split", materialize="link")
    print_split(result, summary, out_console)
    out_console.print("\n[bold]Balancing the training split with STEM[/] (SMOTE-ENN, then Mixup)")
    with _progress() as update:
        balanced = balance(
            out / "split" / "train", out / "balanced", method="stem", seed=0, progress=update
        )
    print_balance(balanced, out_console)
    for note in balanced.plan.notes:
        err_console.print(f"[yellow]Note:[/] {note}", highlight=False)
    report = None
    if experiment:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            err_console.print(
                "[yellow]Note:[/] training needs the torch extra (pip install "
                "'imgbalance[torch]'); skipping the comparison.",
                highlight=False,
            )
        else:
            import json

            from .demo import demo_grid
            from .training.experiment import run_grid
            from .training.report import aggregate, collect_runs, write_report

            out_console.print(
                "\n[bold]Comparing techniques[/] (linear and small CNN, 3 seeds, test split)"
            )
            status = run_grid(
                demo_grid(out / "split"),
                out / "runs",
                log=lambda m: err_console.print(m, highlight=False),
            )
            paths = write_report(out / "runs")
            report = paths["html"]
            grid_runs = json.loads((out / "runs" / "grid.json").read_text())["runs"]
            _print_comparison(aggregate(collect_runs(out / "runs")[0], grid_runs))
            if status["failed"]:
                err_console.print(f"[red]{status['failed']} run(s) failed[/]", highlight=False)
    out_console.print("\n[bold]Outputs[/]")
    for p in [
        data,
        *written,
        out / "split" / "splits.csv",
        out / "split" / "train",
        out / "balanced",
        out / "balanced" / "manifest.csv",
        out / "balanced" / "balance_summary.txt",
        out / "balanced" / "preview.png",
        *([report] if report else []),
    ]:
        out_console.print(f"  {p}", highlight=False)


def _print_comparison(aggs: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="test split, mean ± std over 3 seeds", title_justify="left")
    for col in ("technique", "model", "macro-F1", "vs baseline", "minority recall"):
        table.add_column(col, justify="left" if col in ("technique", "model") else "right")
    for a in aggs:
        delta = a.get("macro_f1_delta")
        table.add_row(
            a["arm"],
            a["model"],
            f"{a['macro_f1']:.3f} ± {a['macro_f1_std']:.3f}",
            "" if delta is None else f"{delta:+.3f}",
            f"{a['minority_recall']:.3f}",
        )
    out_console.print(table)


def main() -> None:
    """Entry point of the ``imgbalance`` console script."""
    app()


if __name__ == "__main__":
    main()
