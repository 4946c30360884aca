"""One training run: balance the training split, train, pick the best epoch, test it.

``run_training(config, out)`` is a self-contained function of its config (the
unit of work of an experiment grid): it writes the run folder and returns the
summary. The run folder keeps the tomato-leaf reference's file names.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._fs import atomic_path, atomic_write_text, check_output_dir
from ..catalog import ratios
from ..errors import ImgBalanceError
from ..features import cache_dir
from .config import RunConfig
from .data import SplitData, TrainSet, load_split
from .metrics import (
    apply_offsets,
    classification_metrics,
    confidence_table,
    logit_adjusted,
    tune_class_offsets,
)

__all__ = ["balanced_train_set", "environment", "run_training"]

Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


# -- offline balancing ----------------------------------------------------------------------


def balanced_train_set(
    split: SplitData,
    cfg: RunConfig,
    cache: Path | None = None,
    log: Log = _quiet,
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainSet:
    """The training set after the offline technique, rendered once and cached.

    The cache key is the training split's content + technique + parameters + target
    + seed + imgbalance version; concurrent runs wait on a lock instead of rendering twice.
    """
    original = [p for p, _ in split.rows["train"]]
    labels = [lab for _, lab in split.rows["train"]]
    counts = np.bincount(labels, minlength=len(split.classes)).astype(int).tolist()
    if cfg.technique in ("none", "", None):
        return TrainSet(
            original, labels, counts, {"technique": "none"}, [split.hashes[p] for p in original]
        )
    from ..balancing import balance

    key_src = json.dumps(
        {
            "train": split.train_fingerprint(),
            "root": str(split.root),
            "technique": cfg.technique,
            "params": cfg.technique_params,
            "target": cfg.target,
            "seed": cfg.seed,
            "version": __version__,
        },
        sort_keys=True,
        default=str,
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    root = (cache or cache_dir() / "balanced") / f"{cfg.technique.replace(',', '+')}-{key}"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "summary.json").is_file():
            log(f"balancing the training split with {cfg.technique} (cached in {root})")
            try:
                balance(
                    split.train_catalog(),
                    root,
                    method=cfg.technique,
                    target=cfg.target,
                    seed=cfg.seed,
                    manifest_only=True,
                    plots=False,
                    overwrite=True,
                    workers=cfg.workers,
                    progress=progress,
                    **cfg.technique_params,
                )
            except ImgBalanceError as exc:
                raise ImgBalanceError(
                    f"{exc} (In a training run, method options go in technique_params: "
                    "--technique-param small_class_fallback=augment, for example.)"
                ) from exc
    with (root / "manifest.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    summary = json.loads((root / "summary.json").read_text(encoding="utf-8"))
    paths = [r["path"] if os.path.isabs(r["path"]) else str(root / r["path"]) for r in rows]
    new_labels = [int(r["label"]) for r in rows]
    after = np.bincount(new_labels, minlength=len(split.classes)).astype(int).tolist()
    info = {
        "technique": cfg.technique,
        "params": cfg.technique_params,
        "target": cfg.target,
        "cache": str(root),
        "synthetic": sum(r["origin"] == "synthetic" for r in rows),
        "removed_originals": len(original) - sum(r["origin"] == "original" for r in rows),
        "counts_after": dict(zip(split.classes, after, strict=True)),
        "notes": summary.get("notes", []),
    }
    return TrainSet(
        paths,
        new_labels,
        counts,
        info,
        [r["sha256"] or p for r, p in zip(rows, paths, strict=True)],
    )


# -- environment ---------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """Package versions, git revision and hardware (instead of a code snapshot)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for pkg in (
        "imgbalance", "torch", "torchvision", "numpy", "scikit-learn",
        "imbalanced-learn", "pillow", "matplotlib",
    ):  # fmt: skip
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    rev: str | None = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        rev = proc.stdout.strip() or None
    hw: dict[str, Any] = {"cpus": os.cpu_count(), "machine": platform.machine()}
    try:
        import torch

        hw["torch_threads"] = torch.get_num_threads()
        hw["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git_revision": rev,
        "hardware": hw,
    }


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


def _nan_to_none(d: Any) -> Any:
    if isinstance(d, float) and d != d:
        return None
    if isinstance(d, dict):
        return {k: _nan_to_none(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_nan_to_none(v) for v in d]
    return d


# -- the run --------------------------------------------------------------------------------


class _PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 50 ms).

    ``ru_maxrss`` alone would report the largest run so far when several runs share a
    process (a grid with ``--jobs 1``); where ``/proc`` is missing it is the fallback.
    """

    def __init__(self) -> None:
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _now() -> float | None:
        try:
            with open("/proc/self/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def _sample(self) -> None:
        while not self._stop.is_set():
            now = self._now()
            if now is not None:
                self.peak_mib = max(self.peak_mib, now)
            self._stop.wait(0.05)

    def __enter__(self) -> _PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.peak_mib == 0.0:
            self.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
) -> dict[str, Any]:
    """Train and evaluate one run into ``out``; returns ``experiment_summary.json``'s content.

    ``tracker`` (``none``, ``mlflow`` or ``wandb``) also sends the finished run there.
    """
    cfg = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
    cfg.validate()
    cfg = cfg.resolved()
    out = Path(out)
    t_start = time.perf_counter()
    split = load_split(cfg.data)
    check_output_dir(out, split.inputs, overwrite=True, replaces=())
    if balanced_cache is not None:
        check_output_dir(balanced_cache, split.inputs, overwrite=True, replaces=())
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
    stats["train_after_balancing"] = {"counts": after, "total": len(train.labels), **ratios(after)}
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
    with _PeakRSS() as memory:
        if cfg.model == "linear":
            result = _train_linear(cfg, split, train, out, log)
        else:
            from .torch_loop import train_torch

            result = train_torch(cfg, split, train, out, log, progress)
    val_y, val_p = result["val"]
    test_y, test_p = result["test"]
    prior = np.asarray(train.original_counts, dtype=np.float64)
    prior = prior / max(prior.sum(), 1.0)
    test_metrics = classification_metrics(test_y, test_p, classes)
    val_metrics = classification_metrics(val_y, val_p, classes)
    offsets = tune_class_offsets(val_y, val_p) if len(val_y) else np.zeros(len(classes))
    posthoc = {
        "logit_adjustment": classification_metrics(test_y, logit_adjusted(test_p, prior), classes),
        "threshold_moving": classification_metrics(test_y, apply_offsets(test_p, offsets), classes),
    }
    _write_test_metrics(out / "test_metrics.csv", classes, test_metrics, posthoc)
    conf = confidence_table(test_y, test_p, classes)
    _write_csv(out / "confidence_analysis.csv", conf)
    from .plots import plot_confidence, plot_confusion

    plot_confusion(test_metrics, classes, out / "confusion_matrix.png", title=_title(cfg))
    plot_confidence(test_y, test_p, out / "confidence_distribution.png", title=_title(cfg))
    summary = {
        "status": "completed",
        "run": out.name,
        "config": cfg.to_dict(),
        "fingerprint": cfg.fingerprint(),
        "classes": classes,
        "best_epoch": result.get("best_epoch"),
        "epochs_run": result.get("epochs_run"),
        "final_metrics": test_metrics,
        "val_metrics": val_metrics,
        "val_test_gap": {
            k: val_metrics[k] - test_metrics[k]
            for k in ("macro_f1", "balanced_accuracy", "accuracy")
        },
        "posthoc": {
            name: {k: m[k] for k in ("macro_f1", "balanced_accuracy", "accuracy", "gmean")}
            for name, m in posthoc.items()
        },
        "threshold_offsets": offsets.tolist(),
        "training_time_s": round(result["train_s"], 3),
        "total_time_s": round(time.perf_counter() - t_start, 3),
        "peak_memory_mib": round(memory.peak_mib, 1),  # process RSS while training
        "gpu_peak_memory_mib": result.get("gpu_peak_memory_mib"),
        "train_size_before": len(split.rows["train"]),
        "train_size_after": len(train.labels),
        "device": result.get("device", "cpu"),
    }
    clean: dict[str, Any] = _nan_to_none(summary)
    _write_json(out / "experiment_summary.json", clean)
    if tracker != "none":
        from .trackers import log_run

        log_run(tracker, out, clean, experiment=experiment, uri=tracker_uri)
    return clean


def _title(cfg: RunConfig) -> str:
    bits = [cfg.model, cfg.technique, cfg.loss]
    if cfg.sampler != "none":
        bits.append(f"sampler {cfg.sampler}")
    if cfg.mixing != "none":
        bits.append(cfg.mixing)
    return " / ".join(bits) + f" / seed {cfg.seed}"


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import io

    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(v, float) and v != v else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def _write_test_metrics(
    path: Path, classes: list[str], m: dict[str, Any], posthoc: dict[str, dict[str, Any]]
) -> None:
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
        for key in ("accuracy", "balanced_accuracy", "gmean", "ece"):
            rows.append(
                {"variant": variant, "class": key, "precision": "", "recall": "", "f1": mm[key],
                 "support": mm["n"]}
            )  # fmt: skip
    _write_csv(path, rows)


# -- linear: logistic regression on the engine's features ------------------------------------


def _train_linear(
    cfg: RunConfig, split: SplitData, train: TrainSet, out: Path, log: Log
) -> dict[str, Any]:
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ..features import compute_features
    from .losses import class_weights

    def feats(paths: list[str], hashes: list[str]) -> np.ndarray:
        X, failed = compute_features(paths, hashes, cfg.features, workers=cfg.workers)
        if failed:
            i = min(failed)
            raise ImgBalanceError(f'"{paths[i]}" cannot be decoded ({failed[i]}).')
        return X

    t0 = time.perf_counter()
    X = feats(train.paths, train.hashes)
    y = np.asarray(train.labels)
    w = class_weights(train.original_counts, cfg.class_weights or "none", cfg.beta)
    weights = w[y] if cfg.loss == "weighted-ce" else None
    clf = make_pipeline(
        StandardScaler(),
        LogisticRegression(max_iter=2000, C=1.0, random_state=cfg.seed),
    )
    clf.fit(X, y, logisticregression__sample_weight=weights)
    train_s = time.perf_counter() - t0
    n_classes = len(split.classes)

    def proba(split_name: str) -> tuple[np.ndarray, np.ndarray]:
        rows = split.rows[split_name]
        yy = np.asarray([lab for _, lab in rows], dtype=np.int64)
        p = np.zeros((len(rows), n_classes))
        if rows:
            paths = [q for q, _ in rows]
            p[:, clf.classes_] = clf.predict_proba(feats(paths, [split.hashes[q] for q in paths]))
        return yy, p

    val, test = proba("val"), proba("test")
    with atomic_path(out / "best_model.joblib") as tmp, tmp.open("wb") as fh:
        joblib.dump(clf, fh)
    vm = classification_metrics(val[0], val[1], split.classes)
    _write_csv(
        out / "history.csv",
        [{"epoch": 1, "train_loss": "", "val_loss": "", "val_macro_f1": vm["macro_f1"],
          "val_balanced_accuracy": vm["balanced_accuracy"], "lr": "", "seconds": train_s}],
    )  # fmt: skip
    log(f"linear: val macro-F1 {vm['macro_f1']:.3f}")
    return {"val": val, "test": test, "train_s": train_s, "best_epoch": 1, "epochs_run": 1}
