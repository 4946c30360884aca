"""timm models for training, named ``timm:<name>`` (``timm:convnext_tiny``,
``timm:efficientnet_b0``, ``timm:vit_small_patch16_224``), through the optional ``timm``
extra: what many users fine-tune. Never required.

Weights, as for torchvision models, never fall back to random ones when weights were
asked for: ``None`` (random initialisation), ``DEFAULT`` (timm's default pretrained
weights, downloaded from the Hugging Face Hub the first time and read from its cache
afterwards) or the path of a weights file (a state dict, ``.pth`` or
``.safetensors``, for machines without internet), loaded strictly: every parameter
but the classifier must come from the file, and the file's classifier is left out
when its size differs from the ``n_classes`` one.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from .._optional import require
from ..errors import ImgBalanceError

__all__ = ["PREFIX", "check_timm_name", "create_timm_model", "is_timm"]

PREFIX = "timm:"


def is_timm(name: str) -> bool:
    return name.startswith(PREFIX)


def _timm() -> Any:
    return require("timm", "timm", f"A model named {PREFIX}<name>", "or choose a torchvision model")


def check_timm_name(name: str) -> str:
    """The timm architecture of ``timm:<arch>``, or a clear error naming close ones."""
    timm = _timm()
    arch = name[len(PREFIX) :]
    if arch and timm.is_model(arch):
        return arch
    close = difflib.get_close_matches(arch, timm.list_models(), n=3)
    hint = f" Did you mean {', '.join(PREFIX + c for c in close)}?" if close else ""
    raise ImgBalanceError(
        f'Unknown timm model "{arch}".{hint} See timm.list_models() (e.g. '
        f"{PREFIX}resnet18, {PREFIX}convnext_tiny)."
    )


def create_timm_model(name: str, n_classes: int, weights: str | None) -> Any:
    """``timm:<arch>`` with an ``n_classes`` classifier and the asked-for weights."""
    timm = _timm()
    arch = check_timm_name(name)
    if weights is None:
        return timm.create_model(arch, pretrained=False, num_classes=n_classes)
    if weights.upper() == "DEFAULT":
        try:
            return timm.create_model(arch, pretrained=True, num_classes=n_classes)
        except Exception as exc:  # no network, no weights for this name, a damaged download
            raise ImgBalanceError(
                f"Pretrained weights for {name} are not available here ({type(exc).__name__}: "
                f"{exc}). imgbalance never falls back to random weights. On a machine with "
                "internet, run once to fill the Hugging Face cache (HF_HOME), or pass the "
                "file itself: --pretrained /path/to/weights.safetensors (in Python or a "
                "grid: pretrained: FILE)."
            ) from exc
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ImgBalanceError(
            f'Weights "{weights}" for {name} are neither DEFAULT nor an existing file. Pass '
            "--pretrained DEFAULT (downloads timm's default weights) or the path of a weights "
            "file (.pth or .safetensors)."
        )
    model = timm.create_model(arch, pretrained=False, num_classes=n_classes)
    _load_file(model, path, name)
    return model


def _load_file(model: Any, path: Path, name: str) -> None:
    """Load a weights file strictly: every parameter but the classifier must come from
    it (timm's own loading only warns about a file of another architecture, which
    would leave random weights), and a classifier of another size is left out."""
    from .state_file import read_state_dict

    try:
        state = read_state_dict(path)
    except Exception as exc:
        raise ImgBalanceError(
            f'"{path}" cannot be loaded into {name} ({type(exc).__name__}: {exc}): it must be a '
            "state dict (.pth or .safetensors) of that architecture."
        ) from exc
    head = model.get_classifier()
    prefix = next((n for n, m in model.named_modules() if m is head), "")
    own = model.state_dict()
    head_keys = {k for k in own if prefix and k.startswith(prefix + ".")}
    state = {k: v for k, v in state.items()
             if not (k in head_keys and tuple(v.shape) != tuple(own[k].shape))}  # fmt: skip
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a parameter of another shape
        raise ImgBalanceError(
            f'"{path}" does not fit {name}: {str(exc).splitlines()[1:2] or exc}. It must be a '
            "state dict of that architecture."
        ) from exc
    missing = [k for k in result.missing_keys if k not in head_keys]
    if missing or result.unexpected_keys:
        raise ImgBalanceError(
            f'"{path}" does not fit {name}: missing {missing[:5]}, unexpected '
            f"{result.unexpected_keys[:5]}. It must be a state dict of that architecture."
        )
