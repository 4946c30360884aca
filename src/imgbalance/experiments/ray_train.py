"""One torch run trained across workers with Ray Train (``train --backend ray``).

``ray.train.torch.TorchTrainer`` starts ``workers`` processes (DDP: gloo on CPUs, NCCL on
GPUs). Each builds the same model from the run's seed and trains it with the one-process
loop (:func:`imgbalance.experiments.torch_train.train_members`), on its share of every
global batch (:class:`imgbalance.torch.distributed.DistributedWeightedSampler`): the global
batch stays ``batch_size``, so the steps, the images a step and the learning rate are those
of one process. Rank 0 validates, selects and stops early for all, and hands the selected
state(s) and the history back as a Ray Train checkpoint; the driver evaluates them and
writes the run folder with the same code as a local run, so it holds the same files.

BatchNorm statistics are each rank's own (its share of the batch; the buffers of rank 0
are the model's, as DDP broadcasts them), and each rank draws its own augmentations, so a
run over several workers is close to, not the same as, one process; over one worker it is.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ImgBalanceError
from .config import RunConfig
from .data import SplitData, TrainSet

__all__ = ["TrainResources", "require_ray_train", "train_torch_on_ray"]

#: the file in rank 0's checkpoint that holds what training gave
TRAINED_FILE = "trained.pt"


@dataclass(frozen=True)
class TrainResources:
    """What one run asks Ray Train for: ``workers`` processes, each with
    ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs (0: train on CPUs)."""

    workers: int = 1
    gpus_per_worker: float = 0
    cpus_per_worker: int = 1

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainResources:
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ConfigError(f"resources: unknown key(s) {unknown}; use {', '.join(names)}.")
        res = cls(**d)
        for key, low in (("workers", 1), ("cpus_per_worker", 1)):
            v = getattr(res, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ConfigError(f"resources: {key} must be an integer >= {low}, got {v!r}.")
        g = res.gpus_per_worker
        if not isinstance(g, (int, float)) or isinstance(g, bool) or not 0 <= g < float("inf"):
            raise ConfigError(f"resources: gpus_per_worker must be a number >= 0, got {g!r}.")
        return res


def require_ray_train() -> Any:
    """``ray.train``, or an error naming the extra (checked before any work)."""
    try:
        import ray.train
    except ImportError as exc:
        raise ImgBalanceError(
            "--backend ray for train needs Ray Train, which is not installed: "
            "pip install 'imgbalance[ray]' (or use the default local backend)."
        ) from exc
    return ray.train


def _worker(config: dict[str, Any]) -> None:
    """The train loop of one Ray Train worker (rank)."""
    import ray.train
    import ray.train.torch
    import torch

    from .._malloc import keep_freed_memory
    from ..torch.distributed import RankGroup
    from .torch_train import eval_sets, plan_data, train_members

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = RunConfig(**config["cfg"])
    split: SplitData = config["split"]
    train: TrainSet = config["train"]
    threads = int(config["threads"])
    torch.set_num_threads(threads)
    device = ray.train.torch.get_device()
    group = RankGroup(rank, world, wrap=ray.train.torch.prepare_model, device=device)
    lines: list[str] = []

    def log(message: str) -> None:
        if group.main:
            lines.append(message)

    data = plan_data(cfg, split, train, device, log)
    with keep_freed_memory():  # each step reuses the last one's pages (see _malloc)
        sets = eval_sets(cfg, split, ("val",), data[0], device, threads)
        trained = train_members(cfg, len(split.classes), train, sets["val"], data, device, log,
                                threads=threads, group=group)  # fmt: skip
        sets["val"][0].close()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if group.main:
            peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
            payload = {"trained": trained, "log": lines, "device": device.type, "peak": peak}
            torch.save(payload, Path(folder) / TRAINED_FILE)
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report({"epochs": len(trained.history)}, checkpoint=checkpoint)


def train_torch_on_ray(
    cfg: RunConfig,
    split: SplitData,
    train: TrainSet,
    out: Path,
    log: Any,
    resources: TrainResources,
    address: str | None = None,
) -> dict[str, Any]:
    """Train the run on ``resources.workers`` Ray Train workers and evaluate the result here;
    the same result (and files in ``out``) as :func:`.torch_train.train_torch`.

    Ray Train keeps its checkpoint under ``out`` until the run is evaluated, so on a
    cluster ``out`` must be on storage every node sees (as for a grid on Ray)."""
    import torch

    from .._cluster import ensure_ray
    from .torch_eval import pick_device, write_trained
    from .torch_train import eval_sets

    ensure_ray(address)
    ray_train = require_ray_train()
    from ray.train.torch import TorchTrainer

    n = resources.workers
    kind = "GPU" if resources.gpus_per_worker > 0 else "CPU"
    log(f"training on {n} Ray Train worker(s), {kind} DDP, global batch {cfg.batch_size}")
    per_worker: dict[str, float] = {"CPU": resources.cpus_per_worker}
    if resources.gpus_per_worker > 0:
        per_worker["GPU"] = resources.gpus_per_worker
    storage = out / ".ray-train"
    trainer = TorchTrainer(
        _worker,
        train_loop_config={
            "cfg": cfg.to_dict(),
            "split": split,
            "train": train,
            "threads": resources.cpus_per_worker,
        },
        scaling_config=ray_train.ScalingConfig(
            num_workers=n, use_gpu=resources.gpus_per_worker > 0, resources_per_worker=per_worker
        ),
        run_config=ray_train.RunConfig(name="run", storage_path=str(storage.resolve())),
    )
    try:
        fitted = trainer.fit()
        if fitted.checkpoint is None:  # rank 0 always reports one
            raise ImgBalanceError("Ray Train finished without the run's checkpoint.")
        with fitted.checkpoint.as_directory() as folder:
            payload = torch.load(
                Path(folder) / TRAINED_FILE, map_location="cpu", weights_only=False
            )
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    for line in payload["log"]:
        log(line)
    device = pick_device(cfg.device)
    threads = cfg.workers or resources.cpus_per_worker
    sets = eval_sets(cfg, split, ("val", "test"), payload["trained"].mode, device, threads)
    result = write_trained(cfg, split, payload["trained"], sets, out, device)
    result["device"] = f"{payload['device']} x {n} (Ray Train)"
    result.pop("gpu_peak_memory_mib", None)
    if payload["peak"] is not None:
        result["gpu_peak_memory_mib"] = round(payload["peak"], 1)
    return result
