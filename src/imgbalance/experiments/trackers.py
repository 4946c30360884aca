"""Optional experiment trackers: MLflow (a local SQLite store by default) and W&B (offline
by default). Never required: the run folder is always the record; a tracker copies it.

Each tracker logs a finished run: its resolved config as parameters, the per-epoch
history as metrics with the epoch as step, the final test metrics, and (MLflow) the
run folder's files as artifacts and its model as an MLflow model (``models:/...``, loaded
with ``mlflow.pyfunc.load_model``: see :mod:`.mlflow_model`).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from .._optional import require
from ..errors import ImgBalanceError

__all__ = ["TRACKERS", "log_run"]

TRACKERS = ("none", "mlflow", "wandb")
_NO_TRACKER = "or leave the tracker at none: the run folder has everything"
_FINAL = ("macro_f1", "balanced_accuracy", "accuracy", "weighted_f1", "gmean", "ece")


def _history(folder: Path) -> list[dict[str, float]]:
    path = folder / "history.csv"
    if not path.is_file():
        return []
    rows = []
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            clean = {}
            for k, v in row.items():
                try:
                    clean[k] = float(v)
                except (TypeError, ValueError):
                    continue
            rows.append(clean)
    return rows


def _flat_config(config: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in config.items()}


def _final(summary: dict[str, Any]) -> dict[str, float]:
    m = summary["final_metrics"]
    out = {f"test_{k}": float(m[k]) for k in _FINAL if m.get(k) is not None}
    for name, post in summary.get("posthoc", {}).items():
        if post.get("macro_f1") is not None:
            out[f"test_macro_f1_{name}"] = float(post["macro_f1"])
    out["training_time_s"] = float(summary["training_time_s"])
    return out


def log_run(
    tracker: str,
    folder: Path,
    summary: dict[str, Any],
    *,
    experiment: str = "imgbalance",
    uri: str | None = None,
) -> None:
    """Send a finished run to ``tracker`` (``none`` does nothing)."""
    if tracker == "none":
        return
    if tracker == "mlflow":
        _mlflow(folder, summary, experiment, uri)
    elif tracker == "wandb":
        _wandb(folder, summary, experiment, uri)
    else:
        raise ImgBalanceError(f"tracker must be one of {', '.join(TRACKERS)}; got {tracker!r}.")


def _mlflow(folder: Path, summary: dict[str, Any], experiment: str, uri: str | None) -> None:
    mlflow = require("mlflow", "mlflow", "--tracker mlflow", _NO_TRACKER)
    # The local default keeps the store and the artifacts beside the runs (MLflow would
    # otherwise put artifacts in ./mlruns of whatever folder the command ran in).
    store = uri or f"sqlite:///{(folder.parent / 'mlflow.db').resolve()}"
    artifacts = None if uri else (folder.parent / "mlflow-artifacts").resolve().as_uri()
    client = mlflow.MlflowClient(tracking_uri=store)
    found = client.get_experiment_by_name(experiment)
    exp_id = (
        found.experiment_id
        if found
        else client.create_experiment(experiment, artifact_location=artifacts)
    )
    run = client.create_run(exp_id, run_name=folder.name)
    rid = run.info.run_id
    try:
        for key, text in _flat_config(summary["config"]).items():
            client.log_param(rid, key, text[:500])
        for row in _history(folder):
            step = int(row.get("epoch", 0))
            for key, number in row.items():
                if key != "epoch":
                    client.log_metric(rid, key, number, step=step)
        for key, number in _final(summary).items():
            client.log_metric(rid, key, number)
        client.log_artifacts(rid, str(folder))
        _log_model(mlflow, store, rid, folder, summary)
        client.set_terminated(rid, "FINISHED")
    except Exception:
        client.set_terminated(rid, "FAILED")
        raise


def _requirements(summary: dict[str, Any]) -> list[str]:
    """What serving the logged model needs: imgbalance and the versions it was trained with
    (a scikit-learn pickle wants the same scikit-learn; torch weights the same torch)."""
    from importlib.metadata import version

    from .._version import __version__

    if summary["config"].get("model") == "linear":
        return [f"imgbalance=={__version__}", f"scikit-learn=={version('scikit-learn')}"]
    torch_version = version("torch").split("+")[0]
    return [f"imgbalance[torch]=={__version__}", f"torch=={torch_version}"]


def _log_model(mlflow: Any, store: str, rid: str, folder: Path, summary: dict[str, Any]) -> None:
    """The run's model as an MLflow model (pyfunc, :mod:`.mlflow_model`), linked to the run.
    MLflow's model logging works on its active run, so the tracking URI is set for it and
    put back after."""
    from .mlflow_model import log_model

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store)
    try:
        with mlflow.start_run(run_id=rid):
            log_model(folder, _requirements(summary))
    finally:
        mlflow.set_tracking_uri(before)


def _wandb(folder: Path, summary: dict[str, Any], experiment: str, uri: str | None) -> None:
    wandb = require("wandb", "wandb", "--tracker wandb", _NO_TRACKER)
    mode: Any = os.environ.get("WANDB_MODE", "offline")  # offline works without network
    run = wandb.init(
        project=experiment,
        name=folder.name,
        dir=uri or str(folder.parent),
        mode=mode,
        config=summary["config"],
        reinit="finish_previous",
    )
    try:
        for row in _history(folder):
            run.log({k: v for k, v in row.items() if k != "epoch"}, step=int(row.get("epoch", 0)))
        for key, value in _final(summary).items():
            run.summary[key] = value
    finally:
        run.finish()
