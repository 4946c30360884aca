"""One run's training batches shared out over several processes (data-parallel training).

PyTorch has no distributed *weighted* sampler (``DistributedSampler`` shuffles, it does
not draw by weight). :class:`DistributedWeightedSampler` gives each rank a disjoint share
of one seeded draw that every rank computes alike: the draw of a one-process run (a
weighted ``torch.multinomial``, or a ``torch.randperm`` without a sampler), cut into the
same global batches, each global batch split by stride (rank ``r`` takes positions
``r, r + N, ...``). So an epoch's images, and its class mix, are those of one process;
without replacement no index is drawn twice across ranks; and every rank takes the same
number of steps, one per global batch (DDP needs equal step counts). The global batch stays
``batch_size``: with ``N`` ranks each step is ``batch_size / N`` images a rank.

:class:`RankGroup` is what the training loop asks of its processes: one process by default
(every method the identity, so a local run is untouched), or the ranks of the default
``torch.distributed`` group (every rank must call its methods in the same order).
Torch only: the launcher (Ray Train) starts the processes and passes the DDP wrapper in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

__all__ = ["DistributedWeightedSampler", "RankGroup"]

T = TypeVar("T")


class DistributedWeightedSampler:
    """Rank ``rank`` of ``world_size``'s share of the seeded draw of ``n`` training indices.

    ``weights`` (per image, any scale): a weighted draw of ``n`` indices, with replacement
    unless ``replacement=False``; ``None``: a shuffle (every index once). A global batch
    smaller than two images a rank is skipped (BatchNorm needs two; for one process that is
    the last batch of one, as the training loop has always dropped).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        weights: torch.Tensor | np.ndarray | None = None,
        replacement: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not one of the {world_size} ranks")
        self.min_batch = 2 * world_size
        if world_size > 1 and (batch_size < self.min_batch or n < self.min_batch):
            raise ValueError(
                f"{world_size} workers need a batch_size and a training set of at least "
                f"{self.min_batch} images (two a worker, for BatchNorm); got batch_size "
                f"{batch_size} and {n} images"
            )
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.weights = None if weights is None else torch.as_tensor(weights)
        if self.weights is not None and len(self.weights) != n:
            raise ValueError(f"{len(self.weights)} weights for {n} images")
        self.replacement = replacement

    @property
    def batches_per_epoch(self) -> int:
        """Steps of one pass over the draw (the same on every rank)."""
        tail = self.n % self.batch_size
        short = 0 < tail < self.min_batch and self.n >= self.min_batch
        return -(-self.n // self.batch_size) - int(short)

    def _order(self, generator: torch.Generator) -> torch.Tensor:
        if self.weights is None:
            return torch.randperm(self.n, generator=generator)
        return torch.multinomial(
            self.weights, self.n, replacement=self.replacement, generator=generator
        )

    def _global_batches(self, order: torch.Tensor) -> Iterator[torch.Tensor]:
        for s in range(0, self.n, self.batch_size):
            idx = order[s : s + self.batch_size]
            if len(idx) < self.min_batch and self.n >= self.min_batch:
                continue
            yield idx

    def share(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's part of one global batch."""
        return batch if self.world_size == 1 else batch[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[torch.Tensor]:
        """This rank's share of each global batch, pass after pass (each pass drawn anew
        from one generator seeded with ``seed``): what the training loop consumes."""
        generator = torch.Generator().manual_seed(self.seed)
        while True:
            for batch in self._global_batches(self._order(generator)):
                yield self.share(batch)

    def global_epoch(self, epoch: int) -> list[torch.Tensor]:
        """Every global batch of pass ``epoch`` (0-based): the one-process draw."""
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(epoch):
            self._order(generator)
        return list(self._global_batches(self._order(generator)))

    def epoch(self, epoch: int) -> list[torch.Tensor]:
        """This rank's batches of pass ``epoch`` (0-based), a pure function of the
        arguments: the same as the ``epoch``-th pass of iterating the sampler."""
        return [self.share(b) for b in self.global_epoch(epoch)]


class RankGroup:
    """The processes of one run: ``world_size`` 1 (the default) is one process, where
    every method returns its input; otherwise the collectives of the default
    ``torch.distributed`` process group, on ``device`` (NCCL needs CUDA tensors).

    ``wrap`` makes a model data-parallel (``ray.train.torch.prepare_model``, or a
    ``DistributedDataParallel`` constructor); ``main`` (rank 0) validates and decides.
    """

    def __init__(
        self,
        rank: int = 0,
        world_size: int = 1,
        wrap: Callable[[nn.Module], nn.Module] | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.rank, self.world_size = rank, world_size
        self._wrap = wrap
        self.device = device or torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model that trains (its forward passes average gradients across ranks);
        ``model`` itself stays the one to validate and save."""
        return self._wrap(model) if self._wrap is not None and self.world_size > 1 else model

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over the ranks."""
        if self.world_size == 1:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return [float(v) for v in t.tolist()]

    def agree(self, flag: bool) -> bool:
        """True where every rank's ``flag`` is (a step is skipped on all ranks or none)."""
        if self.world_size == 1:
            return flag
        return self.sum([0.0 if flag else 1.0])[0] == 0

    def from_main(self, value: T) -> T:
        """Rank 0's ``value`` (a decision), on every rank."""
        if self.world_size == 1:
            return value
        import torch.distributed as dist

        box: list[Any] = [value]
        dist.broadcast_object_list(box, src=0, device=self.device)
        out: T = box[0]
        return out
