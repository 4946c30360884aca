"""CNN embeddings as planning features: the penultimate layer of a torchvision model.

The feature of an image is the input of the model's last linear layer (its
classification head) after the weights' own preprocessing (resize, centre
crop, normalisation). Images are decoded and preprocessed in threads, the next
batch while the model runs on this one; decoding failures are returned, not raised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from .._malloc import keep_freed_memory
from ..dataset.images import load_image

__all__ = ["embed_images"]


def _prepare(path: str, transforms: Any) -> Any:
    try:
        return transforms(load_image(path).convert("RGB"))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def embed_images(
    paths: Sequence[str],
    loaded: Any,
    *,
    batch_size: int = 32,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, dict[int, str]]:
    """``(n, d)`` float32 penultimate features of ``paths`` under a
    :class:`~imgbalance.torch.models.LoadedModel`, and ``{index: error}`` for failures."""
    import torch

    from ..torch.models import final_linear

    model = loaded.model.to(device).eval()
    _, _, head = final_linear(model)
    captured: list[Any] = []
    hook = head.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0]))
    feats = np.zeros((len(paths), head.in_features), dtype=np.float32)
    failed: dict[int, str] = {}

    def submit(start: int) -> tuple[list[int], list[Future[Any]]] | None:
        if start >= len(paths):
            return None
        idx = list(range(start, min(start + batch_size, len(paths))))
        return idx, [pool.submit(_prepare, paths[i], loaded.transforms) for i in idx]

    try:
        # each batch reuses the last one's freed pages (see imgbalance._malloc)
        with ThreadPoolExecutor(max_workers=2) as pool, torch.inference_mode(), keep_freed_memory():
            # The next batch is decoded while the model runs on this one (Pillow's decode
            # and resize release the GIL), as a DataLoader's workers would.
            ahead = submit(0)
            while ahead is not None:
                idx, futures = ahead
                items = [f.result() for f in futures]
                ahead = submit(idx[-1] + 1)
                ok = [i for i, item in zip(idx, items, strict=True) if not isinstance(item, str)]
                for i, item in zip(idx, items, strict=True):
                    if isinstance(item, str):
                        failed[i] = item
                if ok:
                    batch = torch.stack([items[i - idx[0]] for i in ok]).to(device)
                    captured.clear()
                    model(batch)
                    out = captured[-1].reshape(len(ok), -1).float().cpu().numpy()
                    feats[ok] = out
                if progress:
                    progress(len(idx))
    finally:
        hook.remove()
    return feats, failed
