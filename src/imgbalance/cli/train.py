"""``train``, ``experiment``, ``compare`` and ``report``: training and comparing techniques."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .._fs import check_output_dir
from .._text import shown
from ..errors import EXIT_ERROR, ConfigError, ImgBalanceError
from .common import (
    AddressOpt,
    app,
    check_backend,
    check_tracker,
    err_console,
    errors_to_exit,
    out_console,
    parse_budget,
    parse_params,
    progress_bars,
)
from .registries import LOSS_NAMES, registry_of

#: the options every command that runs a grid shares
JobsOpt = Annotated[int, typer.Option(min=1, help="Runs in parallel on this machine.")]
RunBackendOpt = Annotated[
    str, typer.Option(help="local (processes here, the default) or ray (one task per run).")
]


def _names(family: str) -> str:
    """The registered names of ``family`` for a help text. Losses are listed from the
    registry's torch-free mirror, so ``--help`` never imports torch; a test keeps them equal."""
    if family == "losses":
        return ", ".join(LOSS_NAMES)
    return ", ".join(registry_of(family)[0].names())


@app.command()
@errors_to_exit
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
        str,
        typer.Option(
            help="small-cnn, linear (logistic regression), a torchvision name, or "
            "timm:NAME with the timm extra (`imgbalance list models`)."
        ),
    ] = "small-cnn",
    pretrained: Annotated[
        str | None,
        typer.Option(
            help="Weights for a torchvision or timm model: DEFAULT, a torchvision weights "
            "name, or a weights file (.pth; .safetensors for timm)."
        ),
    ] = None,
    technique: Annotated[
        str, typer.Option(help="Offline balancing of the training split (a balance method).")
    ] = "none",
    technique_param: Annotated[
        list[str] | None,
        typer.Option(help="A parameter of the technique, key=value (repeatable)."),
    ] = None,
    loss: Annotated[
        str, typer.Option(help=f"A loss: {_names('losses')} (`imgbalance list losses`).")
    ] = "ce",
    sampler: Annotated[
        str, typer.Option(help=f"A batch sampler: none, {_names('samplers')}.")
    ] = "none",
    mixing: Annotated[str, typer.Option(help=f"Online mixing: none, {_names('mixing')}.")] = "none",
    epochs: Annotated[
        int, typer.Option(help="Epochs budget (early stopping may end sooner).")
    ] = 30,
    seed: Annotated[
        int, typer.Option(min=0, help="Seed of initial weights, order and balancing.")
    ] = 0,
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
    backend: Annotated[
        str,
        typer.Option(help="local (this process, the default) or ray (Ray Train workers, DDP)."),
    ] = "local",
    address: AddressOpt = None,
    ray_workers: Annotated[
        int, typer.Option(help="Ray Train workers the run is trained across (--backend ray).")
    ] = 2,
    gpus_per_worker: Annotated[
        float, typer.Option(help="GPUs each Ray Train worker asks for (0: CPU workers).")
    ] = 0,
    cpus_per_worker: Annotated[
        int, typer.Option(help="CPUs (and torch threads) of each Ray Train worker.")
    ] = 1,
) -> None:
    """Train and evaluate one classifier on a split, with one balancing technique."""
    from ..experiments import RunConfig, run_training

    check_output_dir(out, [], overwrite=True)  # a file, or a file on its path: a clear error
    if out.exists() and any(out.iterdir()) and not overwrite:
        unfinished = (out / "config.json").is_file() and not (
            out / "experiment_summary.json"
        ).is_file()
        what = "holds a run that did not finish" if unfinished else "is not empty"
        raise ImgBalanceError(f'"{out}" {what}; pass --overwrite or choose another --out.')
    settings = {
        "data": str(data),
        "model": model,
        "pretrained": pretrained,
        "technique": technique,
        "technique_params": parse_params(technique_param or []),
        "loss": loss,
        "sampler": sampler,
        "mixing": mixing,
        "epochs": epochs,
        "seed": seed,
        **parse_params(setting or []),
    }
    cfg = RunConfig.from_dict(settings)
    resources = None
    if check_backend(backend) == "ray":
        resources = {"workers": ray_workers, "gpus_per_worker": gpus_per_worker,
                     "cpus_per_worker": cpus_per_worker}  # fmt: skip
    with progress_bars() as update:
        summary = run_training(
            cfg,
            out,
            log=lambda m: err_console.print(shown(m), highlight=False),
            tracker=check_tracker(tracker),
            tracker_uri=tracker_uri,
            progress=update,
            backend=backend,
            resources=resources,
            address=address,
        )
    m = summary["final_metrics"]
    out_console.print(
        f"test (best epoch {summary['best_epoch']}): macro-F1 {m['macro_f1']:.3f}, balanced "
        f"accuracy {m['balanced_accuracy']:.3f}, accuracy {m['accuracy']:.3f}",
        highlight=False,
    )
    err_console.print(
        f"wrote {shown(out)}/experiment_summary.json and the run's other files", highlight=False
    )


@app.command()
@errors_to_exit
def experiment(
    grid_file: Annotated[Path, typer.Argument(help="A grid YAML: data, seeds, arms, ...")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the run folders and report.")],
    data: Annotated[
        Path | None, typer.Option(help="The split folder to train on (replaces the grid's).")
    ] = None,
    jobs: JobsOpt = 1,
    backend: RunBackendOpt = "local",
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
    from ..experiments.grid import load_grid, run_grid
    from ..experiments.report import write_report

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
        log=lambda m: err_console.print(shown(m), highlight=False),
        tracker=check_tracker(tracker),
        tracker_uri=tracker_uri,
        backend=check_backend(backend),
        address=address,
    )
    out_console.print(
        f"{status['completed']} completed ({status['skipped']} from before), "
        f"{status['failed']} failed",
        highlight=False,
    )
    if report:
        paths = write_report(out)
        out_console.print(f"report: {shown(paths['html'])}", highlight=False)
    if status["failed"]:
        raise typer.Exit(EXIT_ERROR)


@app.command("report")
@errors_to_exit
def report_cmd(
    runs_dir: Annotated[Path, typer.Argument(help="A folder of run folders (experiment --out).")],
) -> None:
    """Write results.csv, report.md and report.html for a folder of runs."""
    from ..experiments.report import write_report

    if not runs_dir.is_dir():
        raise ImgBalanceError(f'"{runs_dir}" is not a folder of runs.')
    paths = write_report(runs_dir)
    for p in paths.values():
        out_console.print(shown(p), highlight=False)


@app.command()
@errors_to_exit
def compare(
    data: Annotated[Path, typer.Argument(help="The image folder: one sub-folder per class.")],
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for splits, runs and report (default: ./<DATA name>-compare)."),
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option(
            help="Time the whole comparison may take, like 20m or 1h30m: fewer "
            "repeats or techniques are chosen up front to fit, and said."
        ),
    ] = None,
    techniques: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated techniques to compare with the baseline, or all "
            "(default: chosen from the data)."
        ),
    ] = None,
    model: Annotated[str, typer.Option(help="small-cnn, linear, or a torchvision name.")] = (
        "small-cnn"
    ),
    repeats: Annotated[
        int | None,
        typer.Option(min=1, help="Repeated splits (default 5, up to 10 when --budget has room)."),
    ] = None,
    seed: Annotated[
        int, typer.Option(min=0, help="Seed of the first split (split R: seed + R).")
    ] = 0,
    keep_small_classes: Annotated[
        bool,
        typer.Option("--keep-small-classes", help="Keep classes of fewer than 10 images."),
    ] = False,
    jobs: JobsOpt = 1,
    backend: RunBackendOpt = "local",
    address: AddressOpt = None,
    apply: Annotated[
        Path | None,
        typer.Option(help="Then write a split and the winner's balanced training set here."),
    ] = None,
) -> None:
    """Which balancing helps on DATA: repeated splits, every technique, one verdict."""
    from ..experiments.compare import PLAN_FILE
    from ..experiments.compare import compare as run_compare
    from ..experiments.repeats import SPLITS_DIR

    out = out if out is not None else Path.cwd() / f"{data.resolve().name}-compare"
    check_output_dir(out, [data], overwrite=True, replaces=())
    ours = (out / PLAN_FILE).is_file() or (out / SPLITS_DIR).is_dir()  # one stopped early
    if out.is_dir() and any(out.iterdir()) and not ours:
        raise ImgBalanceError(  # its report.html, results.csv... would replace someone's
            f'"{out}" holds files but no {PLAN_FILE}: it is not an earlier comparison, which '
            "is the only folder a comparison resumes in. Choose a new or empty --out."
        )
    if apply is not None:
        check_output_dir(apply, [data], overwrite=True, replaces=())
        if apply.is_dir() and any(apply.iterdir()):
            raise ImgBalanceError(
                f'"{apply}" is not empty: --apply writes a split and a balanced training set '
                "there. Choose a new or empty folder."
            )
    names = None
    if techniques is not None:
        names = [t.strip() for t in techniques.split(",") if t.strip()]
        twice = sorted({t for t in names if names.count(t) > 1})
        if not names or twice:
            raise ConfigError(
                f"--techniques {techniques!r} "
                + (f"names {', '.join(twice)} twice" if twice else "names no technique")
                + ": give each once, comma-separated (--techniques smote,random-over), or "
                "leave the option out for the default set."
            )
    created = not out.exists()
    try:
        verdict = run_compare(
            data,
            out,
            budget_s=parse_budget(budget),
            techniques=names,
            model=model,
            repeats=repeats,
            seed=seed,
            keep_small_classes=keep_small_classes,
            jobs=max(1, jobs),
            backend=check_backend(backend),
            address=address,
            log=lambda m: err_console.print(shown(m), highlight=False),
        )
    except ImgBalanceError:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # refused before anything was written: no empty folder left
        raise
    out_console.print("\n[bold]Verdict[/]")
    for line in verdict["verdict"]:
        out_console.print(shown(line), highlight=False)
    for w in verdict["warnings"]:
        out_console.print(f"warning: {shown(w)}", style="yellow", highlight=False)
    for note in verdict["plan"]["notes"]:
        out_console.print(f"note: {shown(note)}", highlight=False)
    out_console.print(
        f"report: {shown(out / 'report.html')} ({verdict['minutes']} min)", highlight=False
    )
    if apply is not None:
        from ..experiments.apply import apply_winner

        for line in apply_winner(verdict, apply):
            out_console.print(shown(line), highlight=False)
    if verdict["status"].get("not_started"):
        out_console.print(
            f"note: the budget ran out with {verdict['status']['not_started']} run(s) not "
            "started; the verdict covers the splits every arm finished. The same command "
            "resumes the rest.",
            highlight=False,
            markup=False,
        )
    if verdict["status"]["failed"]:
        raise typer.Exit(EXIT_ERROR)
