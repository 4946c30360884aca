"""The ``linear`` model: logistic regression on the engine's features (no torch needed).

It supports the losses in :data:`~imgbalance.experiments.config.LINEAR_LOSSES` (as
per-sample weights) and no online
mixing; its one "epoch" is the fit.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .._fs import atomic_path
from .._tables import write_csv
from ..errors import ImgBalanceError
from ..planning.features import compute_features, parse_feature_spec
from ..torch.weights import class_weights
from .config import RunConfig
from .data import SplitData, TrainSet
from .metrics import classification_metrics

__all__ = ["train_linear"]

Log = Any


def train_linear(
    cfg: RunConfig, split: SplitData, train: TrainSet, out: Path, log: Log
) -> dict[str, Any]:
    import joblib
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # PCA is fitted on the training rows only, inside the saved pipeline: validation,
    # test and later predictions are projected on the training set's components
    spec = parse_feature_spec(cfg.features)
    base = replace(spec, pca=None)

    def feats(paths: list[str], hashes: list[str]) -> np.ndarray:
        X, failed = compute_features(paths, hashes, base, workers=cfg.workers)
        if failed:
            i = min(failed)
            raise ImgBalanceError(f'"{paths[i]}" cannot be decoded ({failed[i]}).')
        return X

    t0 = time.perf_counter()
    X = feats(train.paths, train.hashes)
    y = np.asarray(train.labels)
    w = class_weights(train.original_counts, cfg.class_weights or "none", cfg.beta)
    weights = w[y] if cfg.loss == "weighted-ce" else None
    reduce = [PCA(n_components=min(spec.pca, *X.shape), random_state=cfg.seed)] if spec.pca else []
    clf = make_pipeline(
        *reduce,
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
    write_csv(
        out / "history.csv",
        [{"epoch": 1, "train_loss": "", "val_loss": "", "val_macro_f1": vm["macro_f1"],
          "val_balanced_accuracy": vm["balanced_accuracy"], "lr": "", "seconds": train_s}],
    )  # fmt: skip
    log(f"linear: val macro-F1 {vm['macro_f1']:.3f}")
    selection = {"rule": "none", "reason": "a convex fit to convergence: nothing to select",
                 "steps": None, "steps_total": None, "max_steps": None}  # fmt: skip
    return {"val": val, "test": test, "train_s": train_s, "best_epoch": 1, "epochs_run": 1,
            "selection": selection}  # fmt: skip
