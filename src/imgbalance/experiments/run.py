"""One training run: balance the training split, train, pick the best epoch, test it.

``run_training(config, out)`` is a self-contained function of its config (the
unit of work of an experiment grid): it writes the run folder and returns the
summary. The run folder keeps the tomato-leaf reference's file names, and adds the
model's probabilities for every test and validation image (``predictions.csv``,
``val_predictions.csv``), from which every metric and post-hoc fit can be recomputed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._fs import atomic_write_text, check_output_dir, output_faults
from .._tables import nan_to_none, write_csv
from .._version import __version__
from ..dataset.catalog import ratios
from ..errors import ConfigError, DatasetError
from .calibration import posthoc_variants, probability_rows
from .config import RunConfig
from .data import SplitData, load_split, split_fingerprint
from .environment import PeakRSS, environment
from .linear import train_linear
from .metrics import classification_metrics, confidence_table
from .runfiles import (
    INFERENCE_FILE,
    inference_record,
    remove_earlier_run,
    split_rows,
    write_inference_record,
    write_predictions,
    write_test_metrics,
)
from .trainset import balanced_train_set

if TYPE_CHECKING:
    from .ray_train import TrainResources

__all__ = ["run_training"]

Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(
        path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"
    )


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# -- the run --------------------------------------------------------------------------------


def run_training(
    config: RunConfig | dict[str, Any],
    out: str | os.PathLike[str],
    *,
    balanced_cache: Path | None = None,
    log: Log = _quiet,
    tracker: str = "none",
    tracker_uri: str | None = None,
    experiment: str = "imgbalance",
    progress: Callable[[str, int, int], None] | None = None,
    backend: str = "local",
    resources: dict[str, Any] | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """Train and evaluate one run into ``out``; returns ``experiment_summary.json``'s content.

    ``tracker`` (``none``, ``mlflow`` or ``wandb``) also sends the finished run there.
    ``backend="ray"`` trains the torch model across Ray Train workers (DDP), as
    ``resources`` asks (``workers``, ``gpus_per_worker``, ``cpus_per_worker``), on the
    cluster at ``address`` or a local instance (:mod:`.ray_train`).
    """
    with output_faults(Path(out), "run the same command again (--overwrite for train)"):
        cfg = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
        cfg.validate()
        cfg = cfg.resolved()
        # recorded absolute, so that predict --split run elsewhere finds this split (not in
        # resolved(): a fingerprint must not depend on the folder a command runs in)
        cfg = dataclasses.replace(cfg, data=str(Path(cfg.data).absolute()))
        on_ray = _ray_resources(cfg, backend, resources)
        out = Path(out)
        t_start = time.perf_counter()
        split = load_split(cfg.data)
        if not split.rows["test"] or not split.rows["train"]:
            which = "test" if not split.rows["test"] else "training"
            raise DatasetError(
                f'The split "{cfg.data}" has no {which} images, so a run there would measure '
                "nothing. Make the split again with a test fraction (imgbalance split DATA "
                "--test 0.2) and distinct images in every class."
            )
        check_output_dir(out, split.inputs, overwrite=True, replaces=())
        if balanced_cache is not None:
            check_output_dir(balanced_cache, split.inputs, overwrite=True, replaces=())
        if cfg.model != "linear":
            from .torch_train import check_model

            check_model(cfg, len(split.classes))
        fresh = not out.exists() or not any(out.iterdir())
        if not fresh:  # an earlier run's files go before this run writes any
            remove_earlier_run(out)
        try:
            return _run(cfg, split, out, t_start, balanced_cache, log, progress, tracker,
                        tracker_uri, experiment, on_ray, address)  # fmt: skip
        except BaseException:
            # a run that fails leaves no half-written folder to block its retry: a folder
            # that was empty holds only this run's files
            if fresh:
                shutil.rmtree(out, ignore_errors=True)
            raise


def _run(
    cfg: RunConfig,
    split: SplitData,
    out: Path,
    t_start: float,
    balanced_cache: Path | None,
    log: Log,
    progress: Callable[[str, int, int], None] | None,
    tracker: str,
    tracker_uri: str | None,
    experiment: str,
    on_ray: TrainResources | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """The body of :func:`run_training`, once its inputs are checked."""
    out.mkdir(parents=True, exist_ok=True)
    classes = split.classes
    _write_json(out / "config.json", {**cfg.to_dict(), "imgbalance": __version__})
    _write_json(out / "class_mapping.json", {c: i for i, c in enumerate(classes)})
    _write_json(out / "environment.json", environment())
    train = balanced_train_set(split, cfg, balanced_cache, log, progress)
    stats: dict[str, dict[str, Any]] = {
        s: {
            "counts": dict(zip(classes, split.counts(s), strict=True)),
            "total": len(split.rows[s]),
            **ratios(dict(zip(classes, split.counts(s), strict=True))),
        }
        for s in ("train", "val", "test")
    }
    after = dict(zip(classes, train.counts(len(classes)), strict=True))
    stats["train_after_balancing"] = {
        "counts": after,
        "total": len(train.labels),
        **ratios(after),
    }
    _write_json(out / "dataset_statistics.json", stats)
    _write_json(
        out / "balancing_analysis.json",
        {
            **train.balancing,
            "counts_before": stats["train"]["counts"],
            "counts_after": after,
            "size_before": len(split.rows["train"]),
            "size_after": len(train.labels),
            "ratios_before": ratios(stats["train"]["counts"]),
            "ratios_after": ratios(after),
        },
    )
    with PeakRSS() as memory:
        if cfg.model == "linear":
            result = train_linear(cfg, split, train, out, log)
        elif on_ray is not None:
            from .ray_train import train_torch_on_ray

            result = train_torch_on_ray(cfg, split, train, out, log, on_ray, address)
        else:
            from .torch_train import train_torch

            result = train_torch(cfg, split, train, out, log, progress)
    val_y, val_p = _checked(split, "val", *result["val"])
    test_y, test_p = _checked(split, "test", *result["test"])
    write_predictions(out / "predictions.csv", split_rows(split, "test"), classes, test_p)
    write_predictions(out / "val_predictions.csv", split_rows(split, "val"), classes, val_p)
    test_metrics = classification_metrics(test_y, test_p, classes)
    val_metrics = classification_metrics(val_y, val_p, classes)
    posthoc = posthoc_variants(
        (val_y, val_p),
        (test_y, test_p),
        classes,
        train.original_counts,
        train.counts(len(classes)),
    )
    write_test_metrics(out / "test_metrics.csv", classes, test_metrics, posthoc.metrics)
    conf = confidence_table(test_y, test_p, classes)
    write_csv(out / "confidence_analysis.csv", conf)
    from .plots import plot_confidence, plot_confusion

    plot_confusion(test_metrics, classes, out / "confusion_matrix.png", title=_title(cfg))
    plot_confidence(test_y, test_p, out / "confidence_distribution.png", title=_title(cfg))
    summary = {
        "status": "completed",
        "run": out.name,
        "config": cfg.to_dict(),
        "fingerprint": cfg.fingerprint(),
        "split_sha256": split_fingerprint(cfg.data),
        "classes": classes,
        "best_epoch": result.get("best_epoch"),
        "epochs_run": result.get("epochs_run"),
        "selection": result.get("selection"),
        "final_metrics": test_metrics,
        "val_metrics": val_metrics,
        "val_test_gap": {
            k: val_metrics[k] - test_metrics[k]
            for k in ("macro_f1", "balanced_accuracy", "accuracy")
        },
        "posthoc": posthoc.summary(),
        "threshold_offsets": posthoc.offsets.tolist(),
        "temperature": posthoc.temperature,
        "prior_correction_weights": posthoc.prior_weights.tolist(),
        "training_time_s": round(result["train_s"], 3),
        "total_time_s": round(time.perf_counter() - t_start, 3),
        "peak_memory_mib": round(memory.peak_mib, 1),  # process RSS while training
        "gpu_peak_memory_mib": result.get("gpu_peak_memory_mib"),
        "train_size_before": len(split.rows["train"]),
        "train_size_after": len(train.labels),
        "device": result.get("device", "cpu"),
        # how the training images were read (torch): memory or stream, why, and any
        # training image a streamed run could not decode and left out
        "data": result.get("data"),
    }
    record = inference_record(
        cfg,
        classes,
        temperature=posthoc.temperature,
        offsets=posthoc.offsets.tolist(),
        original_counts=train.original_counts,
        trained_counts=train.counts(len(classes)),
        members=max(int(cfg.ensemble), 1) if cfg.model != "linear" else 1,
    )
    write_inference_record(out / INFERENCE_FILE, record)
    clean: dict[str, Any] = nan_to_none(summary)
    _write_json(out / "experiment_summary.json", clean)
    if tracker != "none":
        from .trackers import log_run

        log_run(tracker, out, clean, experiment=experiment, uri=tracker_uri)
    return clean


def _ray_resources(
    cfg: RunConfig, backend: str, resources: dict[str, Any] | None
) -> TrainResources | None:
    """The Ray Train resources of a ``backend="ray"`` run, checked before any work."""
    if backend == "local":
        if resources:
            raise ConfigError("resources are for backend ray; drop them or pass backend ray.")
        return None
    if backend != "ray":
        raise ConfigError(f"backend must be local or ray; got {backend!r}.")
    if cfg.model == "linear":
        raise ConfigError("backend ray trains a CNN across workers; model linear runs here.")
    from .ray_train import TrainResources, require_ray_train

    require_ray_train()
    return TrainResources.from_dict(resources or {})


def _checked(
    split: SplitData, name: str, y: np.ndarray, proba: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A trainer's ``(labels, probabilities)`` of one split, as float64 rows summing to 1,
    checked to follow ``split.rows[name]`` (the order ``predictions.csv`` names)."""
    y = np.asarray(y, dtype=np.int64)
    expected = np.asarray([lab for _, lab in split.rows[name]], dtype=np.int64)
    p = np.asarray(proba, dtype=np.float64)
    if p.shape != (len(expected), len(split.classes)) or not np.array_equal(y, expected):
        # a trainer bug, not a user error
        raise AssertionError(f"the {name} predictions do not follow the split's rows")
    return y, probability_rows(p)


def _title(cfg: RunConfig) -> str:
    bits = [cfg.model, cfg.technique, cfg.loss]
    if cfg.sampler != "none":
        bits.append(f"sampler {cfg.sampler}")
    if cfg.mixing != "none":
        bits.append(cfg.mixing)
    return " / ".join(bits) + f" / seed {cfg.seed}"
