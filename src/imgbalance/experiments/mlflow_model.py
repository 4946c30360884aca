"""A run's model as an MLflow model (the ``python_function`` flavour, logged "from code":
MLflow runs this file when the model is loaded, so nothing is pickled).

Loaded with ``mlflow.pyfunc.load_model(uri)``, its ``predict`` takes image paths (a list,
or a DataFrame with a ``path`` column) and returns a DataFrame: ``path``, ``pred`` and
one ``p:<class>`` column per class, the probabilities ``imgbalance predict`` gives with
the post-hoc variant named in the model's config (``posthoc``, default ``temperature``).
It needs imgbalance (with the torch extra for torch models) where it is served.

This module imports MLflow: only :func:`log_model` and MLflow's loader import it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc.model import PythonModel

__all__ = ["RunModel", "log_model"]


class RunModel(PythonModel):
    """The pyfunc model: a :class:`~imgbalance.experiments.predict.Predictor` over the
    run files logged with it."""

    def load_context(self, context: Any) -> None:
        from imgbalance.experiments.predict import load_run

        self.predictor = load_run(context.artifacts["run"])
        self.posthoc = str((context.model_config or {}).get("posthoc", "temperature"))

    def predict(
        self, context: Any, model_input: list[str], params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from imgbalance.errors import DatasetError

        paths = [str(p) for p in model_input]
        proba, failed = self.predictor.predict(paths)
        if failed:
            i = min(failed)
            raise DatasetError(f'"{paths[i]}" cannot be decoded ({failed[i]}).')
        proba = self.predictor.calibrated(proba, self.posthoc)
        classes = self.predictor.classes
        frame = pd.DataFrame(proba, columns=[f"p:{c}" for c in classes])
        frame.insert(0, "pred", [classes[int(k)] for k in proba.argmax(axis=1)])
        frame.insert(0, "path", paths)
        return frame


def log_model(folder: Path, requirements: list[str], *, posthoc: str = "temperature") -> Any:
    """Log the run folder ``folder``'s model into the active MLflow run, as ``model``;
    returns MLflow's model info. Only the files using the model needs are logged with
    it (``inference.json`` and the weights); the run's other files are its artifacts."""
    from .predict import load_run

    predictor = load_run(folder)
    with tempfile.TemporaryDirectory(prefix="imgbalance-mlflow-") as tmp:
        files = Path(tmp) / "run"
        files.mkdir()
        for name in ("inference.json", str(predictor.record["weights_file"])):
            shutil.copy2(folder / name, files / name)
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).resolve()),
            artifacts={"run": str(files)},
            model_config={"posthoc": posthoc},
            pip_requirements=requirements,
        )


mlflow.models.set_model(RunModel())
