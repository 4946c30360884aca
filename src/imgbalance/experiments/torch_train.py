"""Training a torch model for one run: seeded, early-stopped on validation, the best
checkpoint tested. It assembles the torch wing's parts (:mod:`imgbalance.torch`: model,
loss, class weights, sampler, mixing, in-memory batches) from a :class:`RunConfig`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._malloc import keep_freed_memory
from ..errors import ConfigError
from ..torch.data import MemoryBatches, resident
from ..torch.distributed import DistributedWeightedSampler, RankGroup
from ..torch.finetune import (
    build_optimizer,
    build_schedule,
    freeze_backbone,
    group_lr,
    reset_head,
    train_mode,
)  # fmt: skip
from ..torch.losses import ClassLoss, LossSpec, create_loss
from ..torch.mixing import create_mixing
from ..torch.models import create_model
from ..torch.pixel_cache import CachedRows, cached_pixels, streamed_pixels
from ..torch.samplers import sample_weights
from ..torch.stream import StreamBatches, choose_data_mode, layer_outputs, training_memory
from ..torch.weights import class_weights
from .config import RunConfig
from .data import SplitData, TrainSet
from .metrics import classification_metrics
from .torch_eval import (
    Batches,
    Member,
    Trained,
    autocast,
    balanced_nll,
    channels_last,
    pick_device,
    predict_batches,
    selection_rule,
    write_trained,
)

__all__ = [
    "check_model", "eval_sets", "pick_device", "plan_data", "predict_batches", "train_members",
    "train_torch",
]  # fmt: skip


def _left_out(batches: Batches) -> dict[str, str]:
    """``{path: why}`` of the training images a streamed source could not decode."""
    if isinstance(batches, StreamBatches):
        return {batches.paths[i]: why for i, why in batches.failed.items()}
    return {}


#: cRT draws its head (seed + _CRT_SEED) and its batches (+ 1) apart from the first stage
_CRT_SEED = 104_729


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
    group: RankGroup | None = None,
) -> Member:
    """Train one model (then, with ``crt_epochs``, re-train its classifier). With a
    ``group`` of several ranks, each trains on its share of every batch (DDP), and rank 0
    validates and decides (selection, early stopping) for all."""
    group = group or RankGroup()
    # Initial weights first, before any data pass. Module constructors take no generator,
    # so the global one is seeded; torchvision's MixUp/CutMix draw from it as well.
    torch.manual_seed(seed)
    model = create_model(cfg.model, n_classes, cfg.pretrained, **cfg.model_head()).to(device)
    if channels_last(cfg, device):
        model = model.to(memory_format=torch.channels_last)
    if cfg.freeze == "backbone":
        freeze_backbone(model)
        if cfg.pretrained is None:
            log(f"{tag}freeze=backbone without pretrained weights: the head learns alone")
    prior = np.asarray(original_counts, dtype=np.float64)
    w_none = class_weights(original_counts, "none")
    w_main = class_weights(original_counts, cfg.class_weights or "none", cfg.beta)
    spec = LossSpec(
        weight=w_main,
        weighted=cfg.class_weights != "none",
        prior=prior,
        gamma=cfg.focal_gamma,
        tau=cfg.tau,
        max_margin=cfg.ldam_margin,
        scale=cfg.head_scale,
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

    def validate(
        stage: str, epoch: int, train_loss: float, lrs: tuple[float, float], t0: float
    ) -> tuple[dict[str, Any], float]:
        """The model after an epoch on validation: its history row (``lrs``: the head's and
        the backbone's learning rates during the epoch), and its score under the selection
        rule (higher is better)."""
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
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": vl,
            "val_balanced_loss": balanced_nll(val_y, val_p),
            "val_macro_f1": vm["macro_f1"],
            "val_balanced_accuracy": vm["balanced_accuracy"],
            "val_accuracy": vm["accuracy"],
            "lr": lrs[0],
            "steps": steps,
            "seconds": round(time.perf_counter() - t0, 3),
            "stage": stage,
        }
        if cfg.backbone_lr_mult != 1:
            row["backbone_lr"] = lrs[1]
        if tag:
            row["member"] = tag
        history.append(row)
        if rule == "none":  # a fixed budget: the latest epoch is the one tested
            score = float(epoch)
        else:
            loss_rule = rule in ("val_loss", "val_balanced_loss")
            score = -row[rule] if loss_rule else row[rule]
            score = float("-inf") if score != score else score  # NaN never wins
        return row, score

    def fit(
        stage: str, epochs: int, opt: torch.optim.Optimizer, loss: nn.Module, mixer: Any,
        sample_w: torch.Tensor | None, drw_epoch: int | None, draw_seed: int,
    ) -> tuple[int, int, dict[str, Any]]:  # fmt: skip
        """``epochs`` epochs of one stage; the selected epoch, its steps and its state."""
        nonlocal steps
        net = group.wrap(model)  # what trains; ``model`` is what validates and is saved
        sampler = DistributedWeightedSampler(n, cfg.batch_size, weights=sample_w,
                                             seed=draw_seed, rank=group.rank,
                                             world_size=group.world_size)  # fmt: skip
        # cRT (Kang et al.) re-trains the head on a cosine schedule when the run's own is
        # not today's step schedule; no warm-up, no milestones (they count stage 1's epochs)
        sched = build_schedule(
            opt, cfg.schedule if stage == "train" or cfg.schedule == "step" else "cosine",
            epochs, step_size=cfg.step_size, gamma=cfg.step_gamma,
            milestones=cfg.milestones or (), warmup_epochs=cfg.warmup_epochs * (stage == "train"),
        )  # fmt: skip
        first = len(history)  # epochs are numbered on across stages
        best: tuple[float, int, int, dict[str, Any]] | None = None
        bad = 0
        stream = batches.iterate(iter(sampler))
        for k in range(1, epochs + 1):
            t0 = time.perf_counter()
            if drw_epoch is not None and k == drw_epoch and set_weight is not None:
                set_weight(class_weights(original_counts, "effective", cfg.beta))
            train_mode(model)
            total, seen = 0.0, 0
            full = sampler.batches_per_epoch
            n_batches = -(-cfg.max_steps // cfg.epochs) if cfg.max_steps else full
            for b in range(1, n_batches + 1):
                if progress is not None:
                    progress("train", b, n_batches)
                idx, px = next(stream)
                if not group.agree(len(idx) >= 2 or n < 2):
                    continue  # images that could not be decoded left fewer than BatchNorm needs
                x = batches.prepare(px, train=True)
                target: torch.Tensor = y_train[idx].to(device)
                if mixer is not None:
                    x, target = mixer(x, target)
                with autocast(device):
                    logits = net(x)
                batch_loss = loss(logits, target)
                opt.zero_grad(set_to_none=True)
                batch_loss.backward()
                opt.step()
                steps += 1
                total += float(batch_loss.detach()) * len(idx)
                seen += len(idx)
            lrs = (group_lr(opt, "head"), group_lr(opt, "backbone"))  # this epoch's
            sched.step()
            total, seen_all = group.sum([total, float(seen)])
            epoch = first + k
            # Deferred re-weighting is the model after its re-weighted phase: epochs before
            # drw_epoch are neither checkpoints nor a reason to stop (else DRW with early
            # stopping could end as the plain-CE model, before re-weighting ever ran).
            warming = drw_epoch is not None and k < drw_epoch
            decision: tuple[bool, bool, float] | None = None
            if group.main:  # rank 0 validates and decides for every rank
                row, score = validate(stage, epoch, total / max(seen_all, 1), lrs, t0)
                improved = not warming and (best is None or score > best[0])
                bad = 0 if improved else bad + int(not warming)
                label = (
                    f"epoch {epoch}/{cfg.epochs}" if stage == "train" else f"cRT epoch {k}/{epochs}"
                )
                log(
                    f"{tag}{label} loss {row['train_loss']:.4f} "
                    f"val macro-F1 {row['val_macro_f1']:.3f}{' *' if improved else ''}"
                )
                decision = (improved, bad >= cfg.patience and rule != "none", score)
            verdict = group.from_main(decision)
            assert verdict is not None
            improved, stop, score = verdict
            if improved:
                # saved in the default layout, whatever the run trained in
                state = {key: v.detach().clone(memory_format=torch.contiguous_format)
                         for key, v in model.state_dict().items()}  # fmt: skip
                best = (score, epoch, steps, state)
            if stop:
                break
        stream.close()
        assert best is not None
        return best[1], best[2], best[3]

    opt = build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.backbone_lr_mult,
                          kind=cfg.optimizer, momentum=cfg.momentum)  # fmt: skip
    sample_w = None
    if cfg.sampler != "none":
        sample_w = torch.as_tensor(sample_weights(y_train.numpy(), cfg.sampler))
    mixer = create_mixing(cfg.mixing, n_classes, cfg.mixing_alpha)
    epoch, at, state = fit("train", cfg.epochs, opt, loss, mixer, sample_w, cfg.drw_epoch, seed)
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
    opt = build_optimizer(model, cfg.lr, cfg.weight_decay, kind=cfg.optimizer,
                          momentum=cfg.momentum)  # fmt: skip
    plain = ClassLoss(n_classes).to(device)
    crt_epoch, crt_at, crt_state = fit(
        "crt", cfg.crt_epochs, opt, plain, None, balanced, None, seed + _CRT_SEED + 1
    )
    batches.close()
    # the tested model's steps: stage 1 up to its selected epoch, then stage 2's own
    return Member(crt_state, history, crt_epoch, at + crt_at - stage1_steps, epoch)


def check_model(cfg: RunConfig, n_classes: int) -> None:
    """Build the run's model once, with its pretrained weights, before any image is
    decoded: an unknown model or weights that cannot be had fail in a second, not after
    the decoding, and before the run folder is written."""
    model = create_model(cfg.model, n_classes, cfg.pretrained, **cfg.model_head())
    size = int(cfg.image_size or 64)
    if size < 64:  # too small for the model: an error naming the smallest size, not a traceback
        layer_outputs(model, size)


def plan_data(
    cfg: RunConfig, split: SplitData, train: TrainSet, device: torch.device, log: Any
) -> tuple[str, str]:
    """How the run reads its images (``memory`` or ``stream``) and why, decided from the
    memory they need; on a GPU, deterministic kernels and the peak-memory count reset."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.cuda.reset_peak_memory_stats()
    size = int(cfg.image_size or 64)
    n_images = len(train.paths) + len(split.rows["val"]) + len(split.rows["test"])
    step = 0  # on a GPU the step's memory is the GPU's
    if device.type == "cpu":
        model = create_model(cfg.model, len(split.classes), None, **cfg.model_head())
        step = training_memory(model, size, cfg.batch_size)
    mode, why = choose_data_mode(cfg.data_mode, n_images, size, step)
    log(why)
    return mode, why


def eval_sets(
    cfg: RunConfig,
    split: SplitData,
    names: tuple[str, ...],
    mode: str,
    device: torch.device,
    threads: int,
) -> dict[str, tuple[Batches, np.ndarray]]:
    """The splits ``names`` (val, test) as batches to predict, with their labels."""
    size = int(cfg.image_size or 64)
    nhwc = channels_last(cfg, device)
    sets: dict[str, tuple[Batches, np.ndarray]] = {}
    for name in names:
        rows = split.rows[name]
        paths = [p for p, _ in rows]
        batches: Batches = (
            MemoryBatches(resident(torch.from_numpy(cached_pixels(paths, size) if rows else
                                           np.zeros((0, 3, size, size), np.uint8)), device),
                          device, "none", channels_last=nhwc)
            if mode == "memory"
            else StreamBatches(paths, size, device, "none", threads=threads, channels_last=nhwc,
                               cache=streamed_pixels(paths, size, [split.hashes[p] for p in paths]),
                               owns_cache=True)
        )  # fmt: skip
        sets[name] = (batches, np.array([lab for _, lab in rows], dtype=np.int64))
    return sets


#: rank r > 0 of a data-parallel run draws its augmentations from seed + 1 + r x this
AUGMENT_STRIDE = 1_000_003


def train_members(
    cfg: RunConfig,
    n_classes: int,
    train: TrainSet,
    val: tuple[Batches, np.ndarray],
    data: tuple[str, str],
    device: torch.device,
    log: Any,
    *,
    threads: int,
    progress: Any = None,
    group: RankGroup | None = None,
    t_load: float | None = None,
) -> Trained:
    """Decode the training images (``data``: the mode and why) and train the run's
    model(s) on them, validated on ``val``: one, or the EasyEnsemble's members."""
    group = group or RankGroup()
    mode, why = data
    size = int(cfg.image_size or 64)
    t_load = time.perf_counter() if t_load is None else t_load
    y_train = torch.as_tensor(train.labels, dtype=torch.long)
    aug = 1 + group.rank * AUGMENT_STRIDE  # rank 0 augments as one process does
    nhwc = channels_last(cfg, device)
    skipped: dict[str, str] = {}
    cache: CachedRows | None = None
    if mode == "memory":
        failed: dict[int, str] = {}
        px_train = cached_pixels(train.paths, size, failed=failed)
        if failed:  # left out and counted, as streaming leaves them out of their batches
            keep = np.array([i for i in range(len(train.paths)) if i not in failed], np.int64)
            px_train, y_train = px_train[keep], y_train[torch.from_numpy(keep)]
            skipped = {train.paths[i]: why for i, why in sorted(failed.items())}
        x_train = resident(torch.from_numpy(px_train), device)

        def source(idx: np.ndarray | None, seed: int) -> Batches:
            gen = torch.Generator().manual_seed(seed + aug)
            px = x_train if idx is None else x_train[idx]
            return MemoryBatches(px, device, cfg.augment, gen, channels_last=nhwc)

    else:  # one process: its decoded images cached (a rank of a run would cache a share)
        digests = train.hashes if len(train.hashes) == len(train.paths) else None
        cache = streamed_pixels(train.paths, size, digests) if group.world_size == 1 else None

        def source(idx: np.ndarray | None, seed: int) -> Batches:
            gen = torch.Generator().manual_seed(seed + aug)
            paths = train.paths if idx is None else [train.paths[i] for i in idx]
            rows = cache if cache is None or idx is None else cache.subset(idx)
            return StreamBatches(paths, size, device, cfg.augment, gen, threads=threads,
                                 channels_last=nhwc, cache=rows)  # fmt: skip

    took = time.perf_counter() - t_load
    if mode == "memory":
        where = "GPU memory" if x_train.device.type == "cuda" else "memory"
        log(
            f"{len(train.paths)} training images at {size}px in {where} after {took:.1f} s "
            "(decoded, or read from the pixel cache)"
        )
    t0 = time.perf_counter()
    try:
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
                member = source(idx, member_seed)
                trained = _train_member(
                    cfg, n_classes, member, y_train[idx], val, train.original_counts,
                    device, member_seed, log, tag=f"member {k + 1}/{cfg.ensemble}: ",
                    progress=progress, group=group,
                )  # fmt: skip
                skipped.update(_left_out(member))
                members.append(trained)
                history += trained.history
        else:
            whole = source(None, cfg.seed)
            trained = _train_member(
                cfg, n_classes, whole, y_train, val, train.original_counts, device,
                cfg.seed, log, progress=progress, group=group,
            )  # fmt: skip
            skipped.update(_left_out(whole))
            members.append(trained)
            history = trained.history
    finally:  # a complete cache file goes into place, an incomplete one away
        if cache is not None:
            cache.finish()
    train_s = time.perf_counter() - t0
    if skipped:
        log(f"{len(skipped)} training image(s) could not be decoded and were left out")
    return Trained(members, history, skipped, mode, why, train_s)


def train_torch(
    cfg: RunConfig, split: SplitData, train: TrainSet, out: Path, log: Any, progress: Any = None
) -> dict[str, Any]:
    """Train and evaluate one torch run in this process; writes the model and history."""
    device = pick_device(cfg.device)
    t_load = time.perf_counter()
    data = plan_data(cfg, split, train, device, log)
    threads = cfg.workers or min(8, os.cpu_count() or 2)
    with keep_freed_memory():  # each step reuses the last one's pages (see _malloc)
        sets = eval_sets(cfg, split, ("val", "test"), data[0], device, threads)
        trained = train_members(cfg, len(split.classes), train, sets["val"], data, device, log,
                                threads=threads, progress=progress, t_load=t_load)  # fmt: skip
        return write_trained(cfg, split, trained, sets, out, device)
