"""``predict`` and ``export``: using the model of a finished run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .._outfile import check_output_file, is_stream, write_output_file
from .._text import control_escaped, shown
from ..errors import ConfigError, DatasetError, ImgBalanceError
from .common import FollowLinksOpt, app, err_console, errors_to_exit, out_console

RunArg = Annotated[
    Path, typer.Argument(help="A finished run folder (`imgbalance train --out`, or a grid's run).")
]
DeviceOpt = Annotated[str, typer.Option(help="auto (a GPU when there is one), cpu, cuda, mps.")]


def _refuse_existing(path: Path | None, run: Path, overwrite: bool, what: str) -> None:
    """An output file must not replace one of the run's own files, nor (without
    ``--overwrite``) any existing file, nor be a folder; a stream is written into."""
    if path is None:
        return
    if not is_stream(path) and path.resolve().parent == run.resolve():
        raise ImgBalanceError(
            f'"{path}" is inside the run folder: predict never writes there (it would '
            "replace the run's own files); choose a path outside it."
        )
    check_output_file(path, overwrite=overwrite, what=what)


@app.command()
@errors_to_exit
def predict(
    run: RunArg,
    images: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Image files or folders (searched recursively; in DIR/<class>/ the class "
            "is the true label)."
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="Predict the run's own train, val or test split instead of IMAGES."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="With --split: the split folder, when it moved since the run."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Write the predictions CSV here (default: standard output)."),
    ] = None,
    metrics: Annotated[
        Path | None,
        typer.Option(
            help="Also write the metrics table (as a run's test_metrics.csv) when every "
            "image has a true class."
        ),
    ] = None,
    posthoc: Annotated[
        str,
        typer.Option(
            help="Probabilities to report: none (the model's), temperature (calibrated; the "
            "class never changes), prior_correction, logit_adjustment, threshold_moving "
            "(fitted on the run's validation split)."
        ),
    ] = "temperature",
    tta: Annotated[
        bool, typer.Option(help="Average each image with its mirror image (torch models).")
    ] = False,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Images per batch (default: the run's test batch).")
    ] = None,
    device: DeviceOpt = "auto",
    skip_unreadable: Annotated[
        bool,
        typer.Option(
            help="Leave out (and list) images that cannot be decoded instead of stopping."
        ),
    ] = False,
    follow_links: FollowLinksOpt = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing --out / --metrics.")] = False,
) -> None:
    """Class probabilities of images from a finished run's model."""
    import numpy as np

    from ..experiments.calibration import VARIANTS
    from ..experiments.data import load_split, split_fingerprint
    from ..experiments.metrics import classification_metrics
    from ..experiments.predict import POSTHOC_CHOICES, Found, find_images, load_run
    from ..experiments.runfiles import metrics_table_text, predictions_text, split_rows

    if posthoc not in POSTHOC_CHOICES:
        raise ConfigError(
            f"--posthoc {posthoc!r} is not known; choose one of {', '.join(POSTHOC_CHOICES)}."
        )
    if (split is None) == (not images):
        raise ConfigError("Give IMAGES (files or folders) or --split train|val|test, not both.")
    if out is not None and str(out) == "-":  # the usual name of standard output
        out = None
    _refuse_existing(out, run, overwrite, "--out")
    _refuse_existing(metrics, run, overwrite, "--metrics")
    if out is not None and metrics is not None and out.absolute() == metrics.absolute():
        raise ConfigError(f'--out and --metrics both name "{out}": give each its own file.')
    predictor = load_run(run)
    classes = predictor.classes
    if split is not None:
        if split not in ("train", "val", "test"):
            raise ConfigError(f"--split {split!r} is not one of train, val, test.")
        recorded = predictor.config.get("data")
        if data is None and not recorded:
            raise ConfigError(f'"{run}" records no split; pass --data SPLIT_FOLDER.')
        source = data or Path(str(recorded))
        sd = load_split(source)
        trained_on = _read_summary_key(run, "split_sha256")
        if trained_on and split_fingerprint(source) not in (None, trained_on):
            raise DatasetError(
                f'"{source}" is not the split the run was trained on: its splits.csv differs '
                "from the one the run recorded. Pass --data with the run's split folder."
            )
        if sd.classes != classes:
            raise DatasetError(
                f'"{source}" has classes {sd.classes}, the run {classes}: not the run\'s split.'
            )
        shown_rows = split_rows(sd, split)
        found = Found(
            images=[
                (path, rel, lab)
                for (path, lab), (rel, _) in zip(sd.rows[split], shown_rows, strict=True)
            ]
        )
    else:
        found = find_images(images or [], classes, follow_links=follow_links)
    paths = [p for p, _, _ in found.images]
    proba, failed = predictor.predict(
        paths, tta=tta, device=device, batch_size=batch_size, threads=2
    )
    if failed and not skip_unreadable:
        i = min(failed)
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise DatasetError(
            f'"{paths[i]}" cannot be decoded ({failed[i]}){more}; fix or remove it, or pass '
            "--skip-unreadable to leave such files out."
        )
    found.skipped += [(paths[i], f"cannot be decoded: {failed[i]}") for i in sorted(failed)]
    keep = [i for i in range(len(paths)) if i not in failed]
    rows = [(found.images[i][1], found.images[i][2]) for i in keep]
    raw = proba[keep]
    reported = predictor.calibrated(raw, posthoc)
    text = predictions_text(rows, classes, reported)
    for path, why in found.skipped:
        err_console.print(f"left out {shown(path)}: {shown(why)}", highlight=False)
    if metrics is not None:
        if not rows or any(lab is None for _, lab in rows):
            raise DatasetError(
                "--metrics needs the true class of every image: give class folders "
                "(DIR/<class>/...) named like the run's classes, or --split."
            )
        y = np.array([lab for _, lab in rows], dtype=np.int64)
        variants = {v: predictor.calibrated(raw, v) for v in VARIANTS}
        table = metrics_table_text(
            classes,
            classification_metrics(y, raw, classes),
            {v: classification_metrics(y, p, classes) for v, p in variants.items()},
        )
        write_output_file(metrics, table, "run the same command again")
    if out is None:  # to a terminal, a name cannot move the cursor or recolour it
        sys.stdout.write(control_escaped(text) if sys.stdout.isatty() else text)
        sys.stdout.flush()
    else:
        write_output_file(out, text, "run the same command again")
        (err_console if is_stream(out) else out_console).print(  # not into the CSV
            f"wrote {len(rows)} prediction(s) to {shown(out)}"
            + (f"; {len(found.skipped)} file(s) left out" if found.skipped else ""),
            highlight=False,
        )
    labelled = [lab for _, lab in rows if lab is not None]
    if labelled and len(labelled) == len(rows):
        y = np.array(labelled, dtype=np.int64)
        m = classification_metrics(y, reported, classes)
        err_console.print(
            f"{len(rows)} labelled image(s), {posthoc} probabilities: macro-F1 "
            f"{m['macro_f1']:.3f}, balanced accuracy {m['balanced_accuracy']:.3f}, "
            f"accuracy {m['accuracy']:.3f}",
            highlight=False,
        )


@app.command()
@errors_to_exit
def export(
    run: RunArg,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="onnx (needs the onnx extra; runs in onnxruntime, TensorRT, OpenVINO...) or "
            "torchscript (torch.jit; deprecated by PyTorch, still loadable by torch.jit.load).",
        ),
    ] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option(
            help="The model file to write (default: RUN/model.onnx or RUN/model.torchscript.pt); "
            "a sidecar FILE.json says how to feed it."
        ),
    ] = None,
    posthoc: Annotated[
        str,
        typer.Option(
            help="Bake in a post-hoc variant of the run: none, temperature, prior_correction, "
            "logit_adjustment, threshold_moving."
        ),
    ] = "none",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing export.")] = False,
) -> None:
    """Export a finished run's model (ensemble, normalisation and softmax included) to one
    file that gives the probabilities `imgbalance predict` gives."""
    from ..experiments.export import FORMATS, export_model
    from ..experiments.predict import load_run

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}.")
    target = out if out is not None else run / FORMATS[fmt]
    if (
        out is not None
        and out.resolve().parent == run.resolve()
        and out.name not in FORMATS.values()
    ):
        raise ImgBalanceError(
            f'"{out}" is inside the run folder under another name: export writes there only '
            f"as {' or '.join(FORMATS.values())}, so it never replaces the run's own files."
        )
    record = export_model(load_run(run), fmt, target, posthoc=posthoc, overwrite=overwrite)
    out_console.print(
        f"wrote {shown(target)} ({fmt}, {record['members']} member(s), input "
        f"Nx3x{record['input']['image_size']}x{record['input']['image_size']} float32 in "
        f"[0, 1], post-hoc {posthoc}) and {shown(target)}.json",
        highlight=False,
    )


def _read_summary_key(run: Path, key: str) -> Any:
    """One value of the run's ``experiment_summary.json`` (None when it has none)."""
    try:
        return json.loads((run / "experiment_summary.json").read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
