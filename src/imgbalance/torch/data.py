"""Training images for the torch loop: decoded once into memory, served as batches.

:func:`load_pixels` decodes and squashes every image to ``size`` x ``size`` uint8 RGB;
:class:`MemoryBatches` turns index batches into normalised float tensors, with the
``light`` online augmentation drawn from a ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from ..dataset.images import load_image
from ..errors import DatasetError
from .models import MEAN, STD

__all__ = [
    "MemoryBatches", "decode_pixels", "host_batch", "load_pixels", "pixels_of", "resident",
]  # fmt: skip

#: the share of a GPU's free memory the decoded images of a run may take there
GPU_PIXEL_SHARE = 0.3


def resident(pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 ``pixels`` moved onto a CUDA ``device`` when they fit in
    :data:`GPU_PIXEL_SHARE` of its free memory: every batch is then gathered on the GPU,
    with no copy from the host and no CPU work at all. Elsewhere, or when they do not
    fit, they stay in host memory (batches are then copied from page-locked memory)."""
    if device.type != "cuda" or not len(pixels):
        return pixels
    free, _total = torch.cuda.mem_get_info(device)
    if pixels.numel() * pixels.element_size() > GPU_PIXEL_SHARE * free:
        return pixels
    return pixels.to(device)


def host_batch(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """An empty uint8 batch in host memory, page-locked when it goes to a CUDA device
    (so its copy to the GPU runs asynchronously, as ``DataLoader(pin_memory=True)``
    does). PyTorch's host allocator caches these blocks and keeps one that a copy still
    reads from until the copy is done, so a fresh one per batch is cheap and safe."""
    return torch.empty(shape, dtype=torch.uint8, pin_memory=device.type == "cuda")


def pixels_of(path: str, size: int) -> np.ndarray | str:
    """One image as ``(3, size, size)`` uint8 RGB, or the reason it cannot be decoded."""
    try:
        im = load_image(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        return np.ascontiguousarray(np.asarray(im).transpose(2, 0, 1))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def load_pixels(
    paths: Sequence[str],
    size: int,
    *,
    max_bytes: int | None = None,
    threads: int = 2,
    failed: dict[int, str] | None = None,
) -> np.ndarray:
    """``(n, 3, size, size)`` uint8 RGB, every image squashed to ``size`` x ``size``.

    The whole set is held in memory (decoded once, then every epoch is cheap on a
    CPU); a set larger than ``max_bytes`` is refused with the numbers (the trainer
    decides beforehand, from the memory available: :mod:`imgbalance.torch.stream`).
    A file that cannot be decoded is an error, or, with ``failed`` (a dict to fill), a
    row of zeros and ``failed[index] = why``.
    """
    need = len(paths) * 3 * size * size
    if max_bytes is not None and need > max_bytes:
        raise DatasetError(
            f"{len(paths)} images at {size}x{size} need {need / 2**30:.1f} GiB in memory, more "
            f"than the {max_bytes / 2**30:.1f} GiB allowed. Use a smaller --image-size."
        )
    out, bad = decode_pixels(paths, size, threads=threads)
    if bad and failed is None:
        i = min(bad)
        raise DatasetError(f'"{paths[i]}" cannot be decoded ({bad[i]}).')
    if failed is not None:
        failed.update(bad)
    return out


def decode_pixels(
    paths: Sequence[str], size: int, *, threads: int = 2
) -> tuple[np.ndarray, dict[int, str]]:
    """:func:`load_pixels` without the memory check, and failures returned, not raised:
    ``(pixels, {index: error})``; a file that cannot be decoded gets a row of zeros."""
    out = np.zeros((len(paths), 3, size, size), dtype=np.uint8)
    failed: dict[int, str] = {}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for i, value in enumerate(pool.map(lambda p: pixels_of(p, size), paths)):
            if isinstance(value, str):
                failed[i] = value
            else:
                out[i] = value
    return out, failed


class MemoryBatches:
    """Normalised float batches from an in-memory uint8 tensor, with online augmentation.

    ``light`` augmentation is a random horizontal flip and a small random affine
    (rotation up to 10 degrees, shift up to 5%, zoom 0.95-1.05, reflected borders),
    drawn per image from ``generator`` and applied to the whole batch at once with
    ``affine_grid`` / ``grid_sample`` (a per-image torchvision transform loop costs
    more than the model's forward pass at these sizes). ``crop-flip`` is the CIFAR
    recipe (He et al. 2016, and every CIFAR-LT paper): pad 4 pixels of black on each
    side, take a random crop of the original size, flip half the images horizontally.

    On a CUDA device a batch is gathered into page-locked memory and copied without
    blocking; with ``channels_last`` the model's input is laid out NHWC (what cuDNN's
    tensor-core kernels read under bf16 autocast; the model is converted to match).
    """

    def __init__(
        self,
        pixels: torch.Tensor,
        device: torch.device,
        augment: str,
        generator: torch.Generator | None = None,
        *,
        channels_last: bool = False,
    ) -> None:
        self.pixels = pixels
        self.device = device
        self.channels_last = channels_last
        self.mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
        self.augment = augment
        self.generator = generator or torch.Generator().manual_seed(0)

    def _affine(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        n = x.shape[0]
        g = self.generator
        angle = (torch.rand(n, generator=g) * 2 - 1) * (10.0 * torch.pi / 180.0)
        zoom = 0.95 + torch.rand(n, generator=g) * 0.10
        shift = (torch.rand(n, 2, generator=g) * 2 - 1) * 0.10  # 5% of the size, in [-1, 1] units
        flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [
                torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                torch.stack([sin * flip, cos, shift[:, 1]], 1),
            ],
            1,
        ).to(x.device)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(
            x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )

    def _crop_flip(self, x: torch.Tensor, pad: int = 4) -> torch.Tensor:
        import torch.nn.functional as F

        n, _, h, w = x.shape
        g = self.generator
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=g).tolist()
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=g).tolist()
        flip = (torch.rand(n, generator=g) < 0.5).tolist()
        padded = F.pad(x, (pad, pad, pad, pad))  # zeros: black before normalisation
        out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
        flipped = torch.tensor(flip, device=x.device)
        return torch.where(flipped.view(n, 1, 1, 1), out.flip(3), out)

    def _gather(self, idx: torch.Tensor) -> torch.Tensor:
        if self.pixels.device.type == "cuda":  # resident on the GPU
            return self.pixels[idx.to(self.pixels.device)]
        if self.device.type != "cuda":
            return self.pixels[idx]
        out = host_batch((len(idx), *self.pixels.shape[1:]), self.device)
        return torch.index_select(self.pixels, 0, idx, out=out)

    def get(self, idx: torch.Tensor, train: bool) -> torch.Tensor:
        return self.prepare(self._gather(idx), train)

    def prepare(self, pixels: torch.Tensor, train: bool) -> torch.Tensor:
        """uint8 ``pixels`` (a batch) as the model's input: scaled, augmented when
        ``train``, normalised."""
        x = pixels.to(self.device, non_blocking=True).float().div_(255.0)
        if train and self.augment == "light":
            x = self._affine(x)
        elif train and self.augment == "crop-flip":
            x = self._crop_flip(x)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def iterate(
        self, batches: Iterator[torch.Tensor]
    ) -> Generator[tuple[torch.Tensor, torch.Tensor], None, None]:
        """``(indices, uint8 pixels)`` of each index batch of ``batches``."""
        for idx in batches:
            yield idx, self._gather(idx)

    def close(self) -> None:
        """Nothing to release (the streaming batches' counterpart)."""
