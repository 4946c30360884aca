"""Training a torch model for one run: seeded, early-stopped on validation, the best
checkpoint tested. It assembles the torch wing's parts (:mod:`imgbalance.torch`: model,
loss, class weights, sampler, mixing, in-memory batches) from a :class:`RunConfig`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from .._fs import atomic_path, write_csv
from ..errors import ConfigError
from ..torch.data import MemoryBatches, load_pixels
from ..torch.finetune import build_optimizer, freeze_backbone, group_lr, reset_head, train_mode
from ..torch.losses import ClassLoss, LossSpec, create_loss
from ..torch.mixing import create_mixing
from ..torch.models import create_model, final_linear
from ..torch.samplers import sample_weights
from ..torch.stream import StreamBatches, choose_data_mode, training_memory
from ..torch.weights import class_weights
from .config import MIN_VAL_FOR_SELECTION, RunConfig
from .data import SplitData, TrainSet
from .metrics import classification_metrics

__all__ = ["check_model", "pick_device", "predict_batches", "train_torch"]


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


#: what the trainer takes images from: in memory, or decoded from the files
Batches = MemoryBatches | StreamBatches


def _left_out(batches: Batches) -> dict[str, str]:
    """``{path: why}`` of the training images a streamed source could not decode."""
    if isinstance(batches, StreamBatches):
        return {batches.paths[i]: why for i, why in batches.failed.items()}
    return {}


def predict_batches(
    model: nn.Module, batches: Batches, n: int, bs: int, device: torch.device
) -> np.ndarray:
    model.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, n, bs):
            idx = torch.arange(s, min(s + bs, n))
            with _autocast(device):
                logits = model(batches.get(idx, train=False))
            out.append(torch.softmax(logits.float(), 1).cpu().numpy())
    n_cls = model_out_features(model)
    return np.concatenate(out) if out else np.zeros((0, n_cls))


def model_out_features(model: nn.Module) -> int:

    return int(final_linear(model)[2].out_features)


def _autocast(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


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


def _batch_stream(
    n: int, bs: int, gen: torch.Generator, sample_w: torch.Tensor | None
) -> Iterator[torch.Tensor]:
    """Batches of indices, pass after pass (each pass a new seeded order)."""
    while True:
        if sample_w is not None:
            order = torch.multinomial(sample_w, n, replacement=True, generator=gen)
        else:
            order = torch.randperm(n, generator=gen)
        for s in range(0, n, bs):
            idx = order[s : s + bs]
            if len(idx) < 2 and n >= 2:
                continue  # BatchNorm needs two samples; a last batch of one is dropped
            yield idx


#: cRT draws its head (seed + _CRT_SEED) and its batches (+ 1) apart from the first stage
_CRT_SEED = 104_729


class Member(NamedTuple):
    """One trained model: its tested state, history, tested epoch, the optimiser steps
    behind that state, and (cRT) the epoch of the first stage it was re-trained from."""

    state: dict[str, Any]
    history: list[dict[str, Any]]
    best_epoch: int
    steps: int
    stage1_epoch: int | None = None


def _train_member(
    cfg: RunConfig,
    n_classes: int,
    batches: Batches,
    y_train: torch.Tensor,
    val: tuple[Batches, np.ndarray],
    original_counts: list[int],
    device: torch.device,
    seed: int,
    log: Any,
    tag: str = "",
    progress: Any = None,
) -> Member:
    """Train one model (then, with ``crt_epochs``, re-train its classifier)."""
    # Initial weights first, before any data pass. Module constructors take no generator,
    # so the global one is seeded; torchvision's MixUp/CutMix draw from it as well.
    torch.manual_seed(seed)
    model = create_model(cfg.model, n_classes, cfg.pretrained).to(device)
    if cfg.freeze == "backbone":
        freeze_backbone(model)
        if cfg.pretrained is None:
            log(f"{tag}freeze=backbone without pretrained weights: the head learns alone")
    gen = torch.Generator().manual_seed(seed)
    prior = np.asarray(original_counts, dtype=np.float64)
    w_none = class_weights(original_counts, "none")
    w_main = class_weights(original_counts, cfg.class_weights or "none", cfg.beta)
    spec = LossSpec(
        weight=w_main,
        weighted=cfg.class_weights != "none",
        prior=prior,
        gamma=cfg.focal_gamma,
        tau=cfg.tau,
    )
    loss = create_loss(cfg.loss, n_classes, spec)
    set_weight = getattr(loss, "set_weight", None)
    if cfg.drw_epoch is not None:  # deferred re-weighting: plain weights until drw_epoch
        if set_weight is None:
            raise ConfigError(f"loss {cfg.loss} has no class weights to defer (drw_epoch).")
        set_weight(w_none)
    loss = loss.to(device)
    eval_loss = ClassLoss(n_classes).to(device)
    val_batches, val_y = val
    n = len(y_train)
    rule, _why = selection_rule(cfg.monitor, val_y, n_classes)
    history: list[dict[str, Any]] = []
    steps = 0

    def fit(
        stage: str, epochs: int, opt: torch.optim.Optimizer, loss: nn.Module, mixer: Any,
        sample_w: torch.Tensor | None, drw_epoch: int | None, gen: torch.Generator,
    ) -> tuple[int, int, dict[str, Any]]:  # fmt: skip
        """``epochs`` epochs of one stage; the selected epoch, its steps and its state."""
        nonlocal steps
        sched = torch.optim.lr_scheduler.StepLR(opt, cfg.step_size, cfg.step_gamma)
        first = len(history)  # epochs are numbered on across stages
        best: tuple[float, int, int, dict[str, Any]] | None = None
        bad = 0
        stream = batches.iterate(_batch_stream(n, cfg.batch_size, gen, sample_w))
        for k in range(1, epochs + 1):
            t0 = time.perf_counter()
            if drw_epoch is not None and k == drw_epoch and set_weight is not None:
                set_weight(class_weights(original_counts, "effective", cfg.beta))
            train_mode(model)
            total, seen = 0.0, 0
            full = -(-n // cfg.batch_size) - (1 if n % cfg.batch_size == 1 and n >= 2 else 0)
            n_batches = -(-cfg.max_steps // cfg.epochs) if cfg.max_steps else full
            for b in range(1, n_batches + 1):
                if progress is not None:
                    progress("train", b, n_batches)
                idx, px = next(stream)
                if len(idx) < 2 and n >= 2:
                    continue  # images that could not be decoded left fewer than BatchNorm needs
                x = batches.prepare(px, train=True)
                target: torch.Tensor = y_train[idx].to(device)
                if mixer is not None:
                    x, target = mixer(x, target)
                with _autocast(device):
                    logits = model(x)
                batch_loss = loss(logits, target)
                opt.zero_grad(set_to_none=True)
                batch_loss.backward()
                opt.step()
                steps += 1
                total += float(batch_loss.detach()) * len(idx)
                seen += len(idx)
            sched.step()
            val_p = predict_batches(model, val_batches, len(val_y), cfg.batch_size * 2, device)
            vm = classification_metrics(val_y, val_p, [str(i) for i in range(n_classes)])
            with torch.no_grad():
                vl = (
                    float(
                        eval_loss(
                            torch.log(torch.as_tensor(val_p).clamp_min(1e-12)).to(device),
                            torch.as_tensor(val_y).to(device),
                        )
                    )
                    if len(val_y)
                    else float("nan")
                )
            epoch = first + k
            row = {
                "epoch": epoch,
                "train_loss": total / max(seen, 1),
                "val_loss": vl,
                "val_balanced_loss": balanced_nll(val_y, val_p),
                "val_macro_f1": vm["macro_f1"],
                "val_balanced_accuracy": vm["balanced_accuracy"],
                "val_accuracy": vm["accuracy"],
                "lr": group_lr(opt, "head"),
                "steps": steps,
                "seconds": round(time.perf_counter() - t0, 3),
                "stage": stage,
            }
            if cfg.backbone_lr_mult != 1:
                row["backbone_lr"] = group_lr(opt, "backbone")
            if tag:
                row["member"] = tag
            history.append(row)
            if rule == "none":  # a fixed budget: the latest epoch is the one tested
                score = float(epoch)
            else:
                loss_rule = rule in ("val_loss", "val_balanced_loss")
                score = -row[rule] if loss_rule else row[rule]
                score = float("-inf") if score != score else score  # NaN never wins
            # Deferred re-weighting is the model after its re-weighted phase: epochs before
            # drw_epoch are neither checkpoints nor a reason to stop (else DRW with early
            # stopping could end as the plain-CE model, before re-weighting ever ran).
            warming = drw_epoch is not None and k < drw_epoch
            improved = not warming and (best is None or score > best[0])
            if improved:
                state = {key: v.detach().clone() for key, v in model.state_dict().items()}
                best = (score, epoch, steps, state)
                bad = 0
            elif not warming:
                bad += 1
            label = f"epoch {epoch}/{cfg.epochs}" if stage == "train" else f"cRT epoch {k}/{epochs}"
            log(
                f"{tag}{label} loss {row['train_loss']:.4f} "
                f"val macro-F1 {vm['macro_f1']:.3f}{' *' if improved else ''}"
            )
            if bad >= cfg.patience and rule != "none":
                break
        stream.close()
        assert best is not None
        return best[1], best[2], best[3]

    opt = build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.backbone_lr_mult)
    sample_w = None
    if cfg.sampler != "none":
        sample_w = torch.as_tensor(sample_weights(y_train.numpy(), cfg.sampler))
    mixer = create_mixing(cfg.mixing, n_classes, cfg.mixing_alpha)
    epoch, at, state = fit("train", cfg.epochs, opt, loss, mixer, sample_w, cfg.drw_epoch, gen)
    if not cfg.crt_epochs:
        batches.close()
        return Member(state, history, epoch, at)
    # cRT: the selected model's backbone, frozen (BatchNorm in eval mode), under a head
    # drawn again and trained alone on class-balanced batches with plain cross-entropy.
    # Its draws have their own generators: a streamed run draws indices ahead, so the
    # first stage's generator ends elsewhere than in memory.
    stage1_steps = steps
    model.load_state_dict(state)
    reset_head(model, seed + _CRT_SEED)
    freeze_backbone(model)
    balanced = torch.as_tensor(sample_weights(y_train.numpy(), "class-balanced"))
    opt = build_optimizer(model, cfg.lr, cfg.weight_decay)
    plain = ClassLoss(n_classes).to(device)
    crt_gen = torch.Generator().manual_seed(seed + _CRT_SEED + 1)
    crt_epoch, crt_at, crt_state = fit(
        "crt", cfg.crt_epochs, opt, plain, None, balanced, None, crt_gen
    )
    batches.close()
    # the tested model's steps: stage 1 up to its selected epoch, then stage 2's own
    return Member(crt_state, history, crt_epoch, at + crt_at - stage1_steps, epoch)


def check_model(cfg: RunConfig, n_classes: int) -> None:
    """Build the run's model once, with its pretrained weights, before any image is
    decoded: an unknown model or weights that cannot be had fail in a second, not after
    the decoding, and before the run folder is written."""
    create_model(cfg.model, n_classes, cfg.pretrained)


def train_torch(
    cfg: RunConfig, split: SplitData, train: TrainSet, out: Path, log: Any, progress: Any = None
) -> dict[str, Any]:
    device = pick_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.cuda.reset_peak_memory_stats()
    size = int(cfg.image_size or 64)
    n_classes = len(split.classes)
    t_load = time.perf_counter()
    n_images = len(train.paths) + len(split.rows["val"]) + len(split.rows["test"])
    step = 0  # on a GPU the step's memory is the GPU's
    if device.type == "cpu":
        step = training_memory(create_model(cfg.model, n_classes, None), size, cfg.batch_size)
    mode, why = choose_data_mode(cfg.data_mode, n_images, size, step)
    log(why)
    threads = cfg.workers or min(8, os.cpu_count() or 2)
    y_train = torch.as_tensor(train.labels, dtype=torch.long)
    if mode == "memory":
        x_train = torch.from_numpy(load_pixels(train.paths, size))

        def source(idx: np.ndarray | None, gen: torch.Generator) -> Batches:
            px = x_train if idx is None else x_train[idx]
            return MemoryBatches(px, device, cfg.augment, gen)

    else:

        def source(idx: np.ndarray | None, gen: torch.Generator) -> Batches:
            paths = train.paths if idx is None else [train.paths[i] for i in idx]
            return StreamBatches(paths, size, device, cfg.augment, gen, threads=threads)

    sets: dict[str, tuple[Batches, np.ndarray]] = {}
    for name in ("val", "test"):
        rows = split.rows[name]
        paths = [p for p, _ in rows]
        batches: Batches = (
            MemoryBatches(torch.from_numpy(load_pixels(paths, size) if rows else
                                           np.zeros((0, 3, size, size), np.uint8)), device, "none")
            if mode == "memory"
            else StreamBatches(paths, size, device, "none", threads=threads)
        )  # fmt: skip
        sets[name] = (batches, np.array([lab for _, lab in rows], dtype=np.int64))
    took = time.perf_counter() - t_load
    if mode == "memory":
        log(f"decoded {len(train.paths)} training images at {size}px in {took:.1f} s")
    skipped: dict[str, str] = {}
    t0 = time.perf_counter()
    members: list[Member] = []
    history: list[dict[str, Any]] = []
    if cfg.ensemble > 1:  # EasyEnsemble: each member on a balanced random-under subset
        rng = np.random.default_rng(cfg.seed)
        y_np = y_train.numpy()
        present = [c for c in range(n_classes) if (y_np == c).any()]
        smallest = min(int((y_np == c).sum()) for c in present)
        for k in range(cfg.ensemble):
            idx = np.sort(
                np.concatenate(
                    [
                        rng.choice(np.flatnonzero(y_np == c), smallest, replace=False)
                        for c in present
                    ]
                )
            )
            member_seed = cfg.seed * 1000 + k
            member = source(idx, torch.Generator().manual_seed(member_seed + 1))
            trained = _train_member(
                cfg, n_classes, member, y_train[idx], sets["val"], train.original_counts,
                device, member_seed, log, tag=f"member {k + 1}/{cfg.ensemble}: ",
                progress=progress,
            )  # fmt: skip
            skipped.update(_left_out(member))
            members.append(trained)
            history += trained.history
    else:
        whole = source(None, torch.Generator().manual_seed(cfg.seed + 1))
        trained = _train_member(
            cfg, n_classes, whole, y_train, sets["val"], train.original_counts, device,
            cfg.seed, log, progress=progress,
        )  # fmt: skip
        skipped.update(_left_out(whole))
        members.append(trained)
        history = trained.history
    train_s = time.perf_counter() - t0
    if skipped:
        log(f"{len(skipped)} training image(s) could not be decoded and were left out")
    # the best checkpoint of each member, reloaded, is what is evaluated
    model = create_model(cfg.model, n_classes, None).to(device)
    probs: dict[str, list[np.ndarray]] = {"val": [], "test": []}
    for trained in members:
        model.load_state_dict(trained.state)
        for name in ("val", "test"):
            b, yy = sets[name]
            probs[name].append(predict_batches(model, b, len(yy), cfg.batch_size * 2, device))
    for b, _ in sets.values():
        b.close()
    # Saved through a file object: given a path, torch.save names the archive's inner
    # folder after it, and the temporary name would make equal checkpoints differ.
    with atomic_path(out / "best_model.pt") as tmp, tmp.open("wb") as f:
        torch.save(
            {
                "members": [m.state for m in members],
                "best_epochs": [m.best_epoch for m in members],
                "model": cfg.model,
                "classes": split.classes,
                "image_size": size,
                "config": cfg.to_dict(),
            },
            f,
        )
    write_csv(out / "history.csv", history)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    result: dict[str, Any] = {
        "val": (sets["val"][1], np.mean(probs["val"], axis=0)),
        "test": (sets["test"][1], np.mean(probs["test"], axis=0)),
        "train_s": train_s,
        "best_epoch": members[0].best_epoch
        if len(members) == 1
        else [m.best_epoch for m in members],
        "epochs_run": len(history),
        "device": str(device),
        "data": {"mode": mode, "why": why, "skipped_images": len(skipped),
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
