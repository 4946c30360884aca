"""The files of a run folder that ``imgbalance predict`` writes too: predictions, the
test-metrics table, and ``inference.json`` (everything needed to use the model later).

One writer per file, so a prediction with ``--posthoc none`` on a run's own test split
writes ``predictions.csv`` byte for byte as the run did, and its ``--metrics`` file is
the run's ``test_metrics.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._fs import atomic_write_text
from .._text import csv_text
from .._version import __version__
from .config import RunConfig
from .data import SplitData

__all__ = [
    "INFERENCE_FILE",
    "PREPROCESSING",
    "RUN_FILES",
    "inference_record",
    "metrics_table_text",
    "predictions_text",
    "remove_earlier_run",
    "split_rows",
    "write_inference_record",
    "write_predictions",
    "write_test_metrics",
]

#: the record of what using the model needs, written into every finished run folder
INFERENCE_FILE = "inference.json"

#: how an image becomes the model's input, in the order it is done (torch models)
PREPROCESSING: dict[str, Any] = {
    "decode": (
        "Pillow; EXIF orientation applied; transparency (alpha, a palette's) composited on "
        "white; 16-bit gray (I;16) scaled by 255/65535, 32-bit integer and float gray by "
        "255/max(1, the image's maximum), to 8 bits; 1-bit, palette, CMYK and gray converted "
        "to RGB by Pillow (imgbalance.dataset.images.load_image)"
    ),
    "resize": "squash to image_size x image_size (aspect ratio not kept), Pillow bilinear",
    "layout": "N x 3 x image_size x image_size, RGB",
    "scale": "uint8 / 255, to [0, 1]",
    "normalise": "(x - mean) / std, per channel",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}

Row = tuple[str, int | None]


def _image_root(split: SplitData, name: str) -> Path:
    """The folder ``name``'s images are listed under: the split's root for a
    ``splits.csv`` split, ``DIR/<name>`` for a pre-split tree."""
    source = Path(split.source) if split.source else None
    if source is not None and not (source / "splits.csv").is_file():
        return source.resolve() / name
    return split.root


def _relative(path: str, roots: list[Path]) -> str:
    for root in roots:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            continue
    return Path(path).as_posix()


def split_rows(split: SplitData, name: str) -> list[Row]:
    """``(path as predictions.csv shows it, label)`` of every image of split ``name``:
    paths relative to the split's image root, as in ``splits.csv``."""
    roots = [_image_root(split, name), split.root]
    return [(_relative(image, roots), lab) for image, lab in split.rows[name]]


def write_predictions(
    path: Path, rows: Sequence[Row], classes: list[str], proba: np.ndarray
) -> None:
    """:func:`predictions_text`, written to ``path`` (a temporary name, then renamed)."""
    atomic_write_text(path, predictions_text(rows, classes, proba))


def predictions_text(rows: Sequence[Row], classes: list[str], proba: np.ndarray) -> str:
    """One CSV row per image: its path, true class (empty when unknown), predicted class
    and every class's probability (at full precision: every metric can be recomputed)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label", "label_idx", "pred", *(f"p:{c}" for c in classes)])
    pred = proba.argmax(axis=1) if len(proba) else np.zeros(0, dtype=np.int64)
    for (shown, lab), k, row in zip(rows, pred, proba, strict=True):
        probs = [repr(float(v)) for v in row]
        label = ["", ""] if lab is None else [classes[lab], lab]
        w.writerow([shown, *label, classes[int(k)], *probs])
    return buf.getvalue()


#: every file a run writes into its folder, and the exports of its model: what a new run
#: in the same folder removes before it writes any, so an interrupted replacement leaves an
#: unfinished run (no model, no summary), never the old model beside the new settings
RUN_FILES = (
    "config.json", "class_mapping.json", "environment.json", "dataset_statistics.json",
    "balancing_analysis.json", "history.csv", "best_model.pt", "best_model.joblib",
    INFERENCE_FILE, "predictions.csv", "val_predictions.csv", "test_metrics.csv",
    "confidence_analysis.csv", "confusion_matrix.png", "confidence_distribution.png",
    "experiment_summary.json", "model.onnx", "model.onnx.json", "model.torchscript.pt",
    "model.torchscript.pt.json", ".ray-train",
)  # fmt: skip


def remove_earlier_run(out: Path) -> None:
    """Remove an earlier run's files (:data:`RUN_FILES`) from ``out``, the summary that
    marks it finished first; other files there are left alone."""
    for name in sorted(RUN_FILES, key=lambda n: n != "experiment_summary.json"):
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def write_test_metrics(
    path: Path, classes: list[str], m: dict[str, Any], posthoc: dict[str, dict[str, Any]]
) -> None:
    """Write :func:`metrics_table_text` to ``path`` atomically (a run's test_metrics.csv)."""
    atomic_write_text(path, metrics_table_text(classes, m, posthoc))


def metrics_table_text(
    classes: list[str], m: dict[str, Any], posthoc: dict[str, dict[str, Any]]
) -> str:
    """The metrics table as CSV: per class, macro and weighted averages and the scalar
    metrics, of the model and of each post-hoc variant."""
    rows: list[dict[str, Any]] = []
    for variant, mm in (("model", m), *posthoc.items()):
        for c in classes:
            pc = mm["per_class"][c]
            rows.append({"variant": variant, "class": c, **pc})
        for avg in ("macro", "weighted"):
            rows.append(
                {
                    "variant": variant,
                    "class": f"{avg} avg",
                    "precision": mm[f"{avg}_precision"],
                    "recall": mm[f"{avg}_recall"],
                    "f1": mm[f"{avg}_f1"],
                    "support": mm["n"],
                }
            )
        for key in ("accuracy", "balanced_accuracy", "gmean", "ece", "nll", "brier"):
            rows.append(
                {"variant": variant, "class": key, "precision": "", "recall": "", "f1": mm[key],
                 "support": mm["n"]}
            )  # fmt: skip
    return csv_text(rows)


def inference_record(
    cfg: RunConfig,
    classes: list[str],
    *,
    temperature: float,
    offsets: Sequence[float],
    original_counts: Sequence[int],
    trained_counts: Sequence[int],
    members: int,
) -> dict[str, Any]:
    """``inference.json``: the model, its input, its classes and the post-hoc fits."""
    torch_model = cfg.model != "linear"
    record: dict[str, Any] = {
        "format": 1,
        "imgbalance": __version__,
        "kind": "torch" if torch_model else "linear",
        "model": cfg.model,
        "weights_file": "best_model.pt" if torch_model else "best_model.joblib",
        "members": members,
        "classes": list(classes),
        # the batch the run scored validation and test in: predicting in the same batches
        # gives the same numbers bit for bit
        "batch_size": cfg.batch_size * 2,
        "posthoc": {
            "temperature": float(temperature),
            "threshold_offsets": [float(v) for v in offsets],
            "original_counts": [int(v) for v in original_counts],
            "trained_counts": [int(v) for v in trained_counts],
            "fitted_on": "the validation split",
        },
    }
    if torch_model:
        record["input"] = {"image_size": int(cfg.image_size or 64), **PREPROCESSING}
        record.update(cfg.model_head())
    else:
        record["input"] = {"features": cfg.features}
    return record


def write_inference_record(path: Path, record: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
