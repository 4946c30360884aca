"""Training images decoded from their files batch by batch, for sets that do not fit in
memory, and the choice between that and the in-memory path.

:class:`StreamBatches` serves what :class:`~imgbalance.torch.data.MemoryBatches` serves
(``get`` for scoring, ``iterate`` for training) from the files: each image is decoded
and squashed by the same function, and the batch is scaled, augmented and normalised by
the same code, drawing from the same generator. So on a set that fits both ways, the
two paths give the same model bit for bit (a test checks it).

Decoding runs in a pool of threads a few batches ahead of the model (Pillow releases
the GIL while it decodes and resizes), not in ``DataLoader`` worker processes: the
index stream is already seeded and ordered by the trainer, no extra processes can
outlive the command, and a file that cannot be decoded is known to the trainer, which
leaves it out of the batch and counts it instead of crashing mid-epoch.

:func:`choose_data_mode` decides from real numbers: the decoded bytes of every split,
the model's own activations measured by one forward pass at the run's image size, and
the memory the machine has available now.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DatasetError
from .data import MemoryBatches, host_batch, pixels_of
from .pixel_cache import CachedRows

__all__ = [
    "DATA_MODES",
    "MEASURE_MAX",
    "StreamBatches",
    "available_memory",
    "choose_data_mode",
    "layer_outputs",
    "training_memory",
]

#: what ``--set data_mode=`` accepts
DATA_MODES = ("auto", "memory", "stream")


class StreamBatches:
    """Batches of the images at ``paths``, decoded when asked (``threads`` at a time)."""

    def __init__(
        self,
        paths: Sequence[str],
        size: int,
        device: torch.device,
        augment: str,
        generator: torch.Generator | None = None,
        *,
        threads: int = 2,
        ahead: int = 2,
        channels_last: bool = False,
        cache: CachedRows | None = None,
        owns_cache: bool = False,
    ) -> None:
        self.paths = list(paths)
        #: the set's decoded pixels on disk (see :func:`.pixel_cache.streamed_pixels`):
        #: read instead of decoding once complete; ``owns_cache``: finished by :meth:`close`
        self.cache = cache
        self.owns_cache = owns_cache
        self.size = size
        self.ahead = ahead
        self.device = device
        self._prep = MemoryBatches(torch.zeros(0, 3, size, size, dtype=torch.uint8), device,
                                   augment, generator, channels_last=channels_last)  # fmt: skip
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads))
        #: the images left out of training batches: ``{index: why}``
        self.failed: dict[int, str] = {}

    def _submit(self, idx: torch.Tensor) -> list[Future[np.ndarray | str]]:
        return [self._pool.submit(self._pixels, i) for i in idx.tolist()]

    def _pixels(self, i: int) -> np.ndarray | str:
        cached = self.cache.get(i) if self.cache is not None else None
        return cached if cached is not None else pixels_of(self.paths[i], self.size)

    def _collect(
        self, idx: torch.Tensor, futures: list[Future[np.ndarray | str]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keep, rows = [], []
        for k, (i, f) in enumerate(zip(idx.tolist(), futures, strict=True)):
            value = f.result()
            if self.cache is not None:
                self.cache.put(i, value)
            if isinstance(value, str):
                self.failed[i] = value
            else:
                keep.append(k)
                rows.append(value)
        if not rows:
            return idx[:0], torch.zeros(0, 3, self.size, self.size, dtype=torch.uint8)
        out = host_batch((len(rows), 3, self.size, self.size), self.device)
        np.stack(rows, out=out.numpy())  # straight into (page-locked, on CUDA) host memory
        return idx[keep], out

    def iterate(
        self, batches: Iterator[torch.Tensor]
    ) -> Generator[tuple[torch.Tensor, torch.Tensor], None, None]:
        """``(indices, uint8 pixels)`` of each index batch, decoded ``ahead`` batches in
        advance; an image that cannot be decoded is left out of its batch (and listed in
        :attr:`failed`)."""
        queue: collections.deque[tuple[torch.Tensor, list[Future[np.ndarray | str]]]]
        queue = collections.deque()
        try:
            for _ in range(self.ahead + 1):
                idx = next(batches)
                queue.append((idx, self._submit(idx)))
            while queue:
                idx, futures = queue.popleft()
                nxt = next(batches, None)
                if nxt is not None:
                    queue.append((nxt, self._submit(nxt)))
                yield self._collect(idx, futures)
        finally:
            for _, futures in queue:
                for f in futures:
                    f.cancel()

    def get(self, idx: torch.Tensor, train: bool) -> torch.Tensor:
        """The images ``idx`` as the model's input; one that cannot be decoded is an error
        (a scored split must keep every row)."""
        futures = self._submit(idx)
        kept, px = self._collect(idx, futures)
        if len(kept) < len(idx):
            i = next(i for i in idx.tolist() if i in self.failed)
            raise DatasetError(f'"{self.paths[i]}" cannot be decoded ({self.failed[i]}).')
        return self._prep.prepare(px, train)

    def prepare(self, pixels: torch.Tensor, train: bool) -> torch.Tensor:
        return self._prep.prepare(pixels, train)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.cache is not None and self.owns_cache:
            self.cache.finish()


def available_memory() -> int:
    """Bytes the kernel says can be had now without swapping (``MemAvailable``; the
    physical memory where ``/proc/meminfo`` does not exist)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 8 << 30


#: the largest image size a forward pass measures directly; above it the layer outputs
#: are measured at two smaller sizes and extrapolated (they grow with the pixels): asking
#: for 100,000 px is refused with its numbers instead of allocating 120 GB to find out
MEASURE_MAX = 512


def layer_outputs(model: nn.Module, size: int) -> int:
    """The number of values every layer of ``model`` outputs for one ``size`` px image,
    measured by a forward pass; an image too small for the model is a :class:`ConfigError`
    naming the smallest size it takes."""
    outputs = 0

    def count(_m: nn.Module, _i: object, out: object) -> None:
        nonlocal outputs
        if isinstance(out, torch.Tensor):
            outputs += out.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    was_training = model.training
    try:
        model.eval()
        _forward(model, size)
    except RuntimeError as exc:  # "Output size is too small", a kernel larger than the input
        if size >= 64:
            raise
        smallest = next(s for s in range(size + 1, 65) if _runs_at(model, s))
        raise ConfigError(
            f"image_size={size} is too small for this model ({str(exc).splitlines()[0]}). "
            f"The smallest size it takes is {smallest} px; write it like "
            f"--set image_size={max(smallest, 32)}."
        ) from None
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return outputs


def _forward(model: nn.Module, size: int) -> None:
    """One image of zeros at ``size`` px through ``model``, without gradients."""
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))


def _runs_at(model: nn.Module, size: int) -> bool:
    try:
        _forward(model, size)
    except RuntimeError:
        return False
    return True


def training_memory(model: nn.Module, size: int, batch_size: int) -> int:
    """Bytes one training step of ``model`` needs on the CPU at ``size`` px: the outputs
    of every layer for one image (:func:`layer_outputs`; extrapolated from two sizes above
    :data:`MEASURE_MAX`), times the batch, twice (kept for the backward pass, and their
    gradients), plus weights, gradients and Adam's two moments."""
    if size <= MEASURE_MAX:
        outputs = layer_outputs(model, size)
    else:
        a, b = MEASURE_MAX // 2, MEASURE_MAX
        at_a, at_b = layer_outputs(model, a), layer_outputs(model, b)
        outputs = int(at_b + (at_b - at_a) / (b * b - a * a) * (size * size - b * b))
    params = sum(p.numel() for p in model.parameters())
    return 4 * (2 * outputs * batch_size + 4 * params + 2 * 3 * size * size * batch_size)


def choose_data_mode(
    mode: str, n_images: int, size: int, step_bytes: int, *, available: int | None = None
) -> tuple[str, str]:
    """``("memory" | "stream", why)`` for ``n_images`` decoded at ``size`` px next to a
    training step of ``step_bytes``. ``auto`` keeps the images in memory when they and the
    step fit in half of the available memory; a forced mode, or a step that cannot fit
    at all, is refused here, before any image is decoded, with the numbers."""
    if mode not in DATA_MODES:
        raise ConfigError(f"data_mode must be one of {', '.join(DATA_MODES)}; got {mode!r}.")
    free = available_memory() if available is None else available
    pixels = n_images * 3 * size * size
    gib = 2**30
    numbers = (
        f"{n_images} images at {size}x{size} px are {pixels / gib:.2f} GiB decoded; a "
        f"training step needs about {step_bytes / gib:.2f} GiB; {free / gib:.1f} GiB of "
        "memory is available"
    )
    if step_bytes > 0.9 * free:
        raise ConfigError(
            f"The model cannot train here: {numbers}. Lower --set image_size or --set "
            "batch_size, or use a machine with more memory (or a GPU)."
        )
    if mode == "memory" and pixels + step_bytes > 0.9 * free:
        raise ConfigError(
            f"data_mode=memory does not fit: {numbers}. Use --set data_mode=stream (or auto), "
            "or a smaller --set image_size."
        )
    if mode != "auto":
        return mode, f"data_mode={mode} (set): {numbers}"
    if pixels + step_bytes <= 0.5 * free:
        return "memory", f"images held in memory: {numbers}"
    return "stream", f"images streamed from their files (they do not fit in half): {numbers}"
