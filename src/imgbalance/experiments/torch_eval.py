"""The torch run's evaluation side: the device, batched prediction, the rule that selects
the tested checkpoint, and the files a trained run writes (``best_model.pt``,
``history.csv``) with the trainer's result. Shared by the one-process loop
(:mod:`.torch_train`) and the data-parallel one (:mod:`.ray_train`), so both write the same
run folder."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from .._fs import atomic_path
from .._tables import write_csv
from ..errors import ConfigError
from ..torch.data import MemoryBatches
from ..torch.models import create_model, final_linear
from ..torch.stream import StreamBatches
from .config import MIN_VAL_FOR_SELECTION, RunConfig
from .data import SplitData

__all__ = [
    "Batches", "Member", "Trained", "autocast", "balanced_nll", "channels_last",
    "model_out_features",
    "pick_device", "predict_batches", "selection_rule", "write_trained",
]  # fmt: skip

#: what the trainer takes images from: in memory, or decoded from the files
Batches = MemoryBatches | StreamBatches


class Member(NamedTuple):
    """One trained model: its tested state, history, tested epoch, the optimiser steps
    behind that state, and (cRT) the epoch of the first stage it was re-trained from."""

    state: dict[str, Any]
    history: list[dict[str, Any]]
    best_epoch: int
    steps: int
    stage1_epoch: int | None = None


class Trained(NamedTuple):
    """What training gives the evaluation: the members, the run's history, the training
    images left out (``{path: why}``), how images were read and why, and the seconds."""

    members: list[Member]
    history: list[dict[str, Any]]
    skipped: dict[str, str]
    mode: str
    why: str
    train_s: float


def pick_device(name: str) -> torch.device:
    """The device ``name`` names (``auto``: CUDA, then MPS, then the CPU). One that is not
    a device, or that this machine does not have, is a clear error, not torch's."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError:
            device = None
        if device is None or device.type not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, got {name!r}.")
        mps = getattr(torch.backends, "mps", None)
        have = {"cpu": 1, "cuda": torch.cuda.device_count() if torch.cuda.is_available() else 0,
                "mps": int(bool(mps and mps.is_available()))}[device.type]  # fmt: skip
        if (device.index or 0) >= have:
            raise ConfigError(
                f"device {name} was asked for, and torch sees {have} {device.type.upper()} "
                f"device(s) on this machine. Use device=auto (the best one there is) or cpu."
            )
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def channels_last(cfg: RunConfig, device: torch.device) -> bool:
    """Whether the run's CNN and its input batches are laid out NHWC (``channels_last``):
    ``auto`` is on for a CUDA device only, where cuDNN's bf16 tensor-core convolutions
    read NHWC; on the CPU the default layout keeps runs bit for bit what they were."""
    return cfg.channels_last == "on" or (cfg.channels_last == "auto" and device.type == "cuda")


def autocast(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def model_out_features(model: nn.Module) -> int:
    return int(final_linear(model)[2].out_features)


def predict_batches(
    model: nn.Module, batches: Batches, n: int, bs: int, device: torch.device
) -> np.ndarray:
    model.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, n, bs):
            idx = torch.arange(s, min(s + bs, n))
            with autocast(device):
                logits = model(batches.get(idx, train=False))
            out.append(torch.softmax(logits.float(), 1).cpu().numpy())
    n_cls = model_out_features(model)
    return np.concatenate(out) if out else np.zeros((0, n_cls))


def selection_rule(monitor: str, val_y: np.ndarray, n_classes: int) -> tuple[str, str]:
    """The rule that picks the tested checkpoint, and why: ``auto`` selects on validation
    loss unless validation is too small to select on, then trains a fixed budget."""
    if monitor != "auto":
        return monitor, "set by the run's monitor"
    counts = np.bincount(val_y, minlength=n_classes) if len(val_y) else np.zeros(n_classes)
    if len(val_y) < MIN_VAL_FOR_SELECTION or (counts == 0).any():
        return "none", (
            f"validation has {len(val_y)} image(s) and {int((counts == 0).sum())} class(es) "
            f"without any (under {MIN_VAL_FOR_SELECTION}, or a class missing, selection on "
            "it is noise): a fixed budget, the last epoch is tested"
        )
    return "val_balanced_loss", (
        "auto: class-balanced validation loss (smooth, unlike macro-F1 on a small split; "
        "per class, unlike plain loss, which favours models fitted to the training prior)"
    )


def balanced_nll(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean over the classes present in ``y`` of the mean negative log-likelihood of that
    class's images: the validation loss every class counts in equally, as in macro-F1."""
    if len(y) == 0:
        return float("nan")
    nll = -np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, 1.0))
    return float(np.mean([nll[y == c].mean() for c in np.unique(y)]))


def write_trained(
    cfg: RunConfig,
    split: SplitData,
    trained: Trained,
    sets: dict[str, tuple[Batches, np.ndarray]],
    out: Path,
    device: torch.device,
) -> dict[str, Any]:
    """Evaluate each member's tested checkpoint on ``sets`` (val and test), write
    ``best_model.pt`` and ``history.csv`` into ``out``; the trainer's result."""
    members, history, skipped = trained.members, trained.history, trained.skipped
    size = int(cfg.image_size or 64)
    n_classes = len(split.classes)
    model = create_model(cfg.model, n_classes, None, **cfg.model_head()).to(device)
    if channels_last(cfg, device):
        model = model.to(memory_format=torch.channels_last)
    probs: dict[str, list[np.ndarray]] = {"val": [], "test": []}
    for member in members:
        model.load_state_dict(member.state)
        for name in ("val", "test"):
            b, yy = sets[name]
            probs[name].append(predict_batches(model, b, len(yy), cfg.batch_size * 2, device))
    for b, _ in sets.values():
        b.close()
    # Saved through a file object: given a path, torch.save names the archive's inner
    # folder after it, and the temporary name would make equal checkpoints differ. Into
    # memory first, so a full disk is the OSError of a plain write (a clear error), not
    # the RuntimeError torch's zip writer turns it into.
    buf = io.BytesIO()
    torch.save(
        {
            "members": [m.state for m in members],
            "best_epochs": [m.best_epoch for m in members],
            "model": cfg.model,
            "classes": split.classes,
            "image_size": size,
            "config": cfg.to_dict(),
        },
        buf,
    )
    with atomic_path(out / "best_model.pt") as tmp:
        tmp.write_bytes(buf.getbuffer())
    write_csv(out / "history.csv", history)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    result: dict[str, Any] = {
        "val": (sets["val"][1], np.mean(probs["val"], axis=0)),
        "test": (sets["test"][1], np.mean(probs["test"], axis=0)),
        "train_s": trained.train_s,
        "best_epoch": members[0].best_epoch
        if len(members) == 1
        else [m.best_epoch for m in members],
        "epochs_run": len(history),
        "device": str(device),
        "data": {"mode": trained.mode, "why": trained.why, "skipped_images": len(skipped),
                 "skipped": [{"path": p, "reason": r} for p, r in sorted(skipped.items())]},
    }  # fmt: skip
    if peak is not None:
        result["gpu_peak_memory_mib"] = round(peak, 1)
    rule, why = selection_rule(cfg.monitor, sets["val"][1], n_classes)
    result["selection"] = {
        "rule": rule,
        "reason": why,
        "steps": int(sum(m.steps for m in members)),  # optimiser steps of the tested model(s)
        "steps_total": int(sum(m.history[-1]["steps"] for m in members)),
        "max_steps": cfg.max_steps,
        "stage": "crt" if cfg.crt_epochs else "train",  # the stage the tested model ends
    }
    if cfg.crt_epochs:  # which stage the tested model comes from, and what it started from
        stage1 = [m.stage1_epoch for m in members]
        result["selection"]["crt"] = {
            "epochs": cfg.crt_epochs,
            "stage1_epoch": stage1[0] if len(members) == 1 else stage1,
            "sampler": "class-balanced",
            "loss": "ce",
        }
    return result
