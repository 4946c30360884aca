"""The training set of a run after its offline technique: balanced through the engine
once, cached on disk by content, and shared by every run that asks for the same."""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import ImgBalanceError
from ..planning.features import cache_dir
from .config import RunConfig
from .data import SplitData, TrainSet

__all__ = ["balanced_train_set"]

Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


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
    from ..balancing import balance  # the engine: imported only for offline techniques

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
                    random_state=cfg.seed,
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
