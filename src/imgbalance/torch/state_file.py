"""A weights file read into a state dict, one way for torchvision and timm models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["read_state_dict"]


def read_state_dict(path: Path) -> dict[str, Any]:
    """The state dict in the weights file ``path``: a ``.safetensors`` file, or a
    ``torch.save`` file read with ``weights_only=True`` (tensors and plain containers,
    nothing else unpickled), holding the dict itself or under ``state_dict`` / ``model``
    (a training checkpoint). Raises what the reader raises, or ``TypeError`` for a file
    that holds no dict; the caller words the error for its model."""
    state: Any
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        with path.open("rb") as fh:
            head = fh.read(4)
        # torch.save writes a zip (or, before torch 1.6, a pickle): anything else gave a
        # bare "KeyError: 101" from the unpickler
        if not head.startswith((b"PK\x03\x04", b"\x80")):
            raise ValueError(
                f"it is not a file torch.save wrote (it starts with {head!r}, not a zip or "
                "a pickle), nor a .safetensors file"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise TypeError(f"it holds a {type(state).__name__}, not a state dict")
    return state
