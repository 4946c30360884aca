"""Using a finished run's model: :func:`load_run` reads a run folder into a
:class:`Predictor`, which gives class probabilities for any images, with the run's
post-hoc calibration when asked.

Everything it needs is in the run folder's ``inference.json`` (classes, model, image
size, normalisation, the post-hoc fits); a run written before that file existed is
read from its ``config.json``, ``experiment_summary.json`` and
``balancing_analysis.json`` instead. Probabilities are computed the way the run scored
its own test split (same decoding, same batches, same ensemble mean), so predicting
the test split of a run gives its ``predictions.csv`` and ``test_metrics.csv`` again,
bit for bit on the same machine.

The weights are read with ``torch.load(weights_only=True)`` (no pickled code runs); a
``linear`` run's ``best_model.joblib`` is a scikit-learn pickle: load only run folders
you trust, as with any pickle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._fs import is_hidden
from .._malloc import keep_freed_memory
from ..dataset.images import IMAGE_EXTENSIONS
from ..errors import ConfigError, DatasetError
from .calibration import VARIANTS, posthoc_probabilities, probability_rows
from .runfiles import INFERENCE_FILE, PREPROCESSING

__all__ = ["POSTHOC_CHOICES", "Found", "Predictor", "find_images", "load_run"]

#: what ``--posthoc`` accepts: the model's own probabilities, or one post-hoc variant
POSTHOC_CHOICES = ("none", *VARIANTS)

Progress = Callable[[int, int], None]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(
            f'"{path}" is missing: this is not a finished imgbalance run folder (a run '
            "writes it when it completes; re-run `imgbalance train`)."
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(
            f'"{path}" cannot be read ({exc}): the run folder is damaged; re-run '
            "`imgbalance train`."
        ) from None


def _legacy_record(run: Path) -> dict[str, Any]:
    """``inference.json``'s content for a run written before that file existed."""
    cfg = _read_json(run / "config.json")
    summary = _read_json(run / "experiment_summary.json")
    balancing = _read_json(run / "balancing_analysis.json")
    classes = list(summary["classes"])
    torch_model = cfg.get("model", "small-cnn") != "linear"
    record: dict[str, Any] = {
        "format": 1,
        "kind": "torch" if torch_model else "linear",
        "model": cfg.get("model", "small-cnn"),
        "weights_file": "best_model.pt" if torch_model else "best_model.joblib",
        "members": max(int(cfg.get("ensemble") or 1), 1) if torch_model else 1,
        "classes": classes,
        "batch_size": int(cfg.get("batch_size") or 32) * 2,
        "posthoc": {
            "temperature": float(summary["temperature"]),
            "threshold_offsets": list(summary["threshold_offsets"]),
            "original_counts": [int(balancing["counts_before"][c]) for c in classes],
            "trained_counts": [int(balancing["counts_after"][c]) for c in classes],
        },
    }
    if torch_model:
        record["input"] = {"image_size": int(cfg.get("image_size") or 64), **PREPROCESSING}
    else:
        record["input"] = {"features": cfg.get("features", "thumbnail")}
    return record


def load_run(run: str | os.PathLike[str]) -> Predictor:
    """The model of the finished run folder ``run``, ready to predict."""
    run = Path(run)
    if not run.is_dir():
        raise DatasetError(
            f'"{run}" is not a folder: give the run folder `imgbalance train --out` wrote.'
        )
    path = run / INFERENCE_FILE
    record = _read_json(path) if path.is_file() else _legacy_record(run)
    if not isinstance(record, dict) or record.get("format") != 1:
        raise DatasetError(
            f'"{path}" is not an inference record this version reads (format 1); re-run '
            "`imgbalance train` with this version."
        )
    weights = run / str(record["weights_file"])
    if not weights.is_file():
        raise DatasetError(
            f'"{weights}" is missing: the run did not finish, or its model file was moved; '
            "re-run `imgbalance train`."
        )
    return Predictor(run=run, record=record)


@dataclass
class Predictor:
    """A run's model and what using it needs (``record``: ``inference.json``)."""

    run: Path
    record: dict[str, Any]
    _members: dict[str, list[Any]] = field(default_factory=dict, repr=False)

    @property
    def classes(self) -> list[str]:
        return list(self.record["classes"])

    @property
    def config(self) -> dict[str, Any]:
        """The run's ``config.json`` (empty when the folder does not hold it)."""
        path = self.run / "config.json"
        value = _read_json(path) if path.is_file() else {}
        return value if isinstance(value, dict) else {}

    @property
    def kind(self) -> str:
        return str(self.record["kind"])

    @property
    def image_size(self) -> int:
        return int(self.record["input"].get("image_size") or 64)

    def calibrated(self, proba: np.ndarray, posthoc: str) -> np.ndarray:
        """``proba`` under post-hoc variant ``posthoc`` (``none``: as the model gave it)."""
        if posthoc not in POSTHOC_CHOICES:
            raise ConfigError(
                f"Unknown post-hoc variant {posthoc!r}; choose one of {', '.join(POSTHOC_CHOICES)}."
            )
        if posthoc == "none":
            return proba
        ph = self.record["posthoc"]
        return posthoc_probabilities(
            proba,
            float(ph["temperature"]),
            ph["threshold_offsets"],
            ph["original_counts"],
            ph["trained_counts"],
        )[posthoc]

    def predict(
        self,
        paths: Sequence[str],
        *,
        tta: bool = False,
        device: str = "auto",
        batch_size: int | None = None,
        threads: int = 2,
        progress: Progress | None = None,
    ) -> tuple[np.ndarray, dict[int, str]]:
        """Class probabilities of the images at ``paths`` (rows that sum to 1), and the
        files that could not be decoded (``{index: error}``; their rows are zeros).

        ``tta`` averages each image with its horizontal mirror (torch models).
        ``batch_size`` defaults to the batch the run scored its test split in.
        """
        if self.kind == "linear":
            if tta:
                raise ConfigError(
                    "--tta needs a torch model; this run's model is linear (logistic "
                    "regression on features): drop --tta."
                )
            return self._predict_linear(paths)
        return self._predict_torch(paths, tta, device, batch_size, threads, progress)

    # -- torch ----------------------------------------------------------------------------

    def members(self, device: Any) -> list[Any]:
        """The run's model (one per ensemble member), in eval mode on ``device``."""
        import torch

        from ..torch.models import create_model

        if str(device) in self._members:
            return self._members[str(device)]
        path = self.run / str(self.record["weights_file"])
        try:
            with path.open("rb") as fh:
                checkpoint = torch.load(fh, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged or foreign file
            raise DatasetError(
                f'"{path}" cannot be read as imgbalance weights ({type(exc).__name__}: '
                f"{exc}); re-run `imgbalance train`."
            ) from None
        states = checkpoint.get("members") if isinstance(checkpoint, dict) else None
        if not states:
            raise DatasetError(f'"{path}" holds no model weights; re-run `imgbalance train`.')
        n = len(self.classes)
        models = []
        for state in states:
            model = create_model(
                str(self.record["model"]), n, None, head=str(self.record.get("head", "linear")),
                head_scale=float(self.record.get("head_scale", 30.0)),
            ).to(device)  # fmt: skip
            model.load_state_dict(state)
            models.append(model.eval())
        self._members[str(device)] = models
        return models

    def _predict_torch(
        self,
        paths: Sequence[str],
        tta: bool,
        device_name: str,
        batch_size: int | None,
        threads: int,
        progress: Progress | None,
    ) -> tuple[np.ndarray, dict[int, str]]:
        import torch

        from ..torch.data import MemoryBatches, decode_pixels
        from .torch_train import pick_device, predict_batches

        device = pick_device(device_name)
        members = self.members(device)
        bs = int(batch_size or self.record["batch_size"])
        if bs < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {bs}.")
        size = self.image_size
        # decoded a chunk at a time (memory stays bounded); a chunk is a whole number of
        # batches, so every batch holds the images the run's own scoring put in it
        chunk = bs * max(1, 1024 // bs)
        out = np.zeros((len(paths), len(self.classes)), dtype=np.float64)
        failed: dict[int, str] = {}
        with keep_freed_memory():  # each batch reuses the last one's pages (see _malloc)
            for s in range(0, len(paths), chunk):
                part = list(paths[s : s + chunk])
                px, bad = decode_pixels(part, size, threads=threads)
                failed.update({s + i: e for i, e in bad.items()})
                views = [px, np.ascontiguousarray(px[..., ::-1])] if tta else [px]
                probs = []
                for view in views:
                    batches = MemoryBatches(torch.from_numpy(view), device, "none")
                    probs += [predict_batches(m, batches, len(part), bs, device) for m in members]
                out[s : s + len(part)] = probability_rows(np.mean(probs, axis=0))
                if progress:
                    progress(s + len(part), len(paths))
        for i in failed:
            out[i] = 0.0
        return out, failed

    # -- linear ---------------------------------------------------------------------------

    def _predict_linear(self, paths: Sequence[str]) -> tuple[np.ndarray, dict[int, str]]:
        import joblib

        from ..planning.features import compute_features, parse_feature_spec

        path = self.run / str(self.record["weights_file"])
        try:
            with path.open("rb") as fh:
                clf = joblib.load(fh)
        except Exception as exc:
            raise DatasetError(
                f'"{path}" cannot be read as a scikit-learn model ({type(exc).__name__}: '
                f"{exc}); re-run `imgbalance train`."
            ) from None
        spec = parse_feature_spec(str(self.record["input"]["features"]))
        if spec.pca is not None and "pca" not in getattr(clf, "named_steps", {}):
            raise DatasetError(
                f'"{path}" was trained by an older imgbalance that fitted the PCA of '
                f'"{spec}" apart from the model (val and test were projected on their own '
                "components): it cannot be used; re-run `imgbalance train`."
            )
        # the saved pipeline holds the PCA fitted on the training rows: features without it
        X, failed = compute_features(
            list(paths), [""] * len(paths), replace(spec, pca=None), cache=False
        )
        p = np.zeros((len(paths), len(self.classes)))
        if len(paths):
            p[:, clf.classes_] = clf.predict_proba(X)
        p = probability_rows(p)
        for i in failed:
            p[i] = 0.0
        return p, failed


# -- finding the images -------------------------------------------------------------------


@dataclass
class Found:
    """The images ``predict`` was pointed at, and what was left out, with why."""

    #: (path to read, path as shown in the output, true class index or None)
    images: list[tuple[str, str, int | None]] = field(default_factory=list)
    #: (path, why it was left out)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _inside(path: str, tree: str) -> bool:
    target = os.path.realpath(path)
    return target == tree or target.startswith(tree.rstrip(os.sep) + os.sep)


def find_images(
    targets: Iterable[str | os.PathLike[str]], classes: Sequence[str], *, follow_links: bool
) -> Found:
    """The images in ``targets`` (files, or folders searched recursively, in sorted
    order). An image inside a folder ``DIR/<class>/`` named like one of ``classes`` gets
    that class as its true label. A file given by name that is not an image is an
    error; inside a folder, non-images, hidden files and links out of the folder (unless
    ``follow_links``) are left out and listed."""
    found = Found()
    index = {c: i for i, c in enumerate(classes)}
    for target in targets:
        t = Path(target)
        if t.is_file():
            if t.suffix.lower() not in IMAGE_EXTENSIONS:
                raise DatasetError(
                    f'"{t}" is not an image (its extension is not one of '
                    f"{', '.join(sorted(IMAGE_EXTENSIONS))}); give image files or folders."
                )
            found.images.append((str(t), t.as_posix(), None))
            continue
        if not t.is_dir():
            raise DatasetError(f'"{t}" does not exist; give image files or folders.')
        tree = os.path.realpath(t)
        before = len(found.images)
        for folder, dirs, files in os.walk(t, followlinks=follow_links):
            dirs[:] = sorted(d for d in dirs if not is_hidden(d))
            if not follow_links:
                dirs[:] = [d for d in dirs if _inside(os.path.join(folder, d), tree)]
            for name in sorted(files):
                path = os.path.join(folder, name)
                rel = Path(os.path.relpath(path, t))
                if is_hidden(name):
                    found.skipped.append((path, "hidden"))
                elif not follow_links and not _inside(path, tree):
                    found.skipped.append(
                        (path, "a link out of the folder: not followed (--follow-links)")
                    )
                elif rel.suffix.lower() not in IMAGE_EXTENSIONS:
                    found.skipped.append((path, "not an image (its extension)"))
                else:
                    label = index.get(rel.parts[0]) if len(rel.parts) > 1 else None
                    found.images.append((path, (t / rel).as_posix(), label))
        if len(found.images) == before:
            raise DatasetError(
                f'"{t}" holds no images (searched recursively; extensions '
                f"{', '.join(sorted(IMAGE_EXTENSIONS))})."
            )
    return found
