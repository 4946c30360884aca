"""Models, by registry name: ``small-cnn`` (our CPU-sized CNN), the CIFAR ResNets of He
et al. 2016 (``resnet20``, ``resnet32``: the long-tailed CIFAR literature's model), any
torchvision classifier and, with the ``timm`` extra, any timm model as ``timm:<name>``
(:mod:`.timm_models`), with pretrained weights or a clear error.

:func:`create_model` is the way in for training (a fresh ``n_classes`` head);
``@register_model("name")`` adds a model (a function ``(n_classes, weights) ->
nn.Module``); :func:`list_models` lists the registered names (every torchvision
classifier is accepted too: :func:`classification_models`).

``build_model(name, weights)`` never falls back to random weights when
weights were asked for: ``weights`` is ``None`` (random initialisation, asked
for explicitly), ``"DEFAULT"`` or a weights name such as ``"IMAGENET1K_V1"``
(torchvision downloads the file into its cache the first time, and reads it
from there afterwards, offline too), or the path of a ``.pth`` file holding a
state dict (for machines without internet). Import this module only when
torch is wanted: it imports torch.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from .._fs import sha256_of
from ..errors import ConfigError, ImgBalanceError, MissingDependencyError
from ..registry import Registry
from .state_file import read_state_dict
from .timm_models import check_timm_name, create_timm_model, is_timm

try:
    import torch
    import torch.nn.functional as F
    import torchvision
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised by the no-torch test
    raise MissingDependencyError(
        "This feature needs PyTorch and torchvision, which are not installed. Install the "
        "torch extra: pip install 'imgbalance[torch]'."
    ) from exc

__all__ = [
    "HEADS",
    "MEAN",
    "MODELS",
    "STD",
    "CifarResNet",
    "CosineLinear",
    "LoadedModel",
    "SmallCNN",
    "build_model",
    "check_model_name",
    "classification_models",
    "create_model",
    "final_linear",
    "head_parameters",
    "list_models",
    "register_model",
    "split_parameters",
    "weights_id",
]

#: ImageNet statistics: the normalisation torchvision's pretrained weights expect
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

ModelBuilder = Callable[[int, "str | None"], "nn.Module"]
#: models built by imgbalance itself; every torchvision classifier is accepted besides
MODELS: Registry[ModelBuilder] = Registry("model", "See `imgbalance list models`.")


def register_model(name: str, *, help: str = "") -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering ``build(n_classes, weights) -> nn.Module`` as model ``name``."""
    return MODELS.register(name, help=help)


def list_models() -> list[str]:
    """Registered model names (any torchvision classifier name is accepted as well)."""
    return MODELS.names()


def classification_models() -> list[str]:
    """Names of torchvision's image-classification models."""
    return list(torchvision.models.list_models(module=torchvision.models))


@dataclass
class LoadedModel:
    model: nn.Module
    name: str
    #: ``None`` (random init), a torchvision weights name, or a file path
    weights: str | None
    #: a stable identifier of the weights: enum name, or ``file-<sha256 prefix>``
    weights_id: str
    #: the preprocessing of the weights (resize, crop, normalise), or ImageNet's
    transforms: Any


def _check_name(name: str) -> None:
    names = classification_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ImgBalanceError(
            f'Unknown torchvision model "{name}".{hint} See torchvision.models.list_models().'
        )


def final_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The classification head: the last ``nn.Linear`` registered, with its parent and name."""
    found: tuple[nn.Module, str, nn.Linear] | None = None
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, child_name, child)
    if found is None:
        raise ImgBalanceError(
            f"{type(model).__name__} has no final linear layer, so imgbalance cannot take its "
            "penultimate features or replace its head. Choose another model, e.g. resnet18."
        )
    return found


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The classification head's parameters: those of the final linear layer, the one
    :func:`create_model` replaces with an ``n_classes`` head (resnet's ``fc``, the last
    linear layer of efficientnet's and mobilenet's ``classifier``, small-cnn's ``fc``)."""
    return list(final_linear(model)[2].parameters())


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(backbone, head)``: every parameter of ``model``, in order, the head's
    (:func:`head_parameters`) apart; freezing and per-part learning rates use it."""
    head = {id(p) for p in head_parameters(model)}
    params = list(model.parameters())
    return [p for p in params if id(p) not in head], [p for p in params if id(p) in head]


def _default_transforms(name: str) -> Any:
    enum = torchvision.models.get_model_weights(name)
    return enum.DEFAULT.transforms()


def _weights_file(name: str, weights: str) -> Path:
    path = Path(os.path.expanduser(weights))
    if path.is_dir():
        raise ImgBalanceError(
            f'Weights "{weights}" for {name} are a folder; name the weights file in it '
            "(a .pth or .safetensors state dict)."
        )
    if not path.is_file():
        members = list(torchvision.models.get_model_weights(name).__members__)
        names = ["DEFAULT", *(m for m in members if m != "DEFAULT")]  # an alias in some enums
        raise ImgBalanceError(
            f'Weights "{weights}" for {name} are neither a torchvision weights name '
            f"({', '.join(names)}) nor an existing file."
        )
    return path


def weights_id(name: str, weights: str | None) -> str:
    """A stable identifier of ``weights`` without loading them (used in cache keys)."""
    _check_name(name)
    if weights is None:
        return "random"
    enum = torchvision.models.get_model_weights(name)
    if weights.upper() == "DEFAULT":
        return str(enum.DEFAULT.name)
    if weights in enum.__members__:
        return weights
    return f"file-{sha256_of(_weights_file(name, weights))[:16]}"


def build_model(
    name: str, weights: str | None = "DEFAULT", *, file_option: str | None = None
) -> LoadedModel:
    """A torchvision model in eval mode with the asked-for weights (see module doc).

    ``file_option`` is how the caller's user passes a weights file, for the hint when
    weights cannot be downloaded (``{file}`` stands for the file; default: the feature
    syntax ``embedding:NAME:/path/to/FILE``)."""
    _check_name(name)
    enum = torchvision.models.get_model_weights(name)
    if weights is None:
        model = torchvision.models.get_model(name, weights=None)
        return LoadedModel(model.eval(), name, None, "random", _default_transforms(name))
    if weights.upper() == "DEFAULT" or weights in enum.__members__:
        w = enum.DEFAULT if weights.upper() == "DEFAULT" else enum[weights]
        try:
            model = torchvision.models.get_model(name, weights=w)
        except Exception as exc:  # no network, a proxy, a damaged download...
            checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
            raise ImgBalanceError(
                f"Pretrained weights {w} for {name} are not available here: loading "
                f"{w.url} failed ({type(exc).__name__}: {exc}). imgbalance never falls back to "
                f"random weights. On a machine with internet, download that file into "
                f'"{checkpoints}" (or set TORCH_HOME), or pass the file itself: '
                + (file_option or f"embedding:{name}:{{file}}").format(
                    file=f"/path/to/{Path(w.url).name}"
                )
                + "."
            ) from exc
        return LoadedModel(model.eval(), name, w.name, w.name, w.transforms())
    path = _weights_file(name, weights)
    model = torchvision.models.get_model(name, weights=None)
    try:
        state = read_state_dict(path)
    except Exception as exc:
        raise ImgBalanceError(
            f'"{path}" is not a state dict (.pth or .safetensors) of {name} '
            f"({type(exc).__name__}: {exc})."
        ) from exc
    _load_state(model, state, path)
    return LoadedModel(
        model.eval(), name, str(path), f"file-{sha256_of(path)[:16]}", _default_transforms(name)
    )


def _load_state(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    """Load a state dict; a head of another size (a fine-tuned model) is resized to fit."""
    parent, attr, head = final_linear(model)
    prefix = next(n for n, m in model.named_modules() if m is head)
    w = state.get(f"{prefix}.weight")
    if w is not None and tuple(w.shape) != tuple(head.weight.shape):
        setattr(parent, attr, nn.Linear(head.in_features, int(w.shape[0])))
    own = model.state_dict()
    other = [
        f"{k} {tuple(v.shape)} (the model's {tuple(own[k].shape)})"
        for k, v in state.items()
        if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)
    ]
    if other:  # load_state_dict's RuntimeError was a traceback
        raise ImgBalanceError(
            f'"{path}" does not fit {type(model).__name__}: {len(other)} tensor(s) have '
            f"another shape: {', '.join(other[:3])}. It holds weights of another model or "
            "another variant of it; pass the weights of this model."
        )
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ImgBalanceError(
            f'"{path}" does not fit {type(model).__name__}: missing '
            f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}."
        )


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU-pool blocks (16-32-64-128), global average pooling, dropout, linear.

    About 0.1 M parameters, small enough to train on a CPU: an epoch over a
    thousand 64 x 64 images takes seconds on two cores.
    """

    def __init__(self, n_classes: int, width: int = 16, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for k in range(4):
            c_out = width * 2**k
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(self.dropout(self.pool(self.features(x)).flatten(1)))
        return out


@register_model("small-cnn", help="four conv blocks, ~0.1 M parameters: trains on a CPU")
def _small_cnn(n_classes: int, weights: str | None = None) -> nn.Module:
    if weights is not None:
        raise ConfigError("small-cnn has no pretrained weights; drop --pretrained.")
    return SmallCNN(n_classes)


#: the classification heads :func:`create_model` can put on a model
HEADS = ("linear", "cosine")


class CosineLinear(nn.Linear):
    """A cosine classifier: ``scale * cos(x, w_c)``, the normalised linear layer LDAM is
    defined on (Cao et al. 2019, their ``NormedLinear``), no bias. The logits are bounded by
    ``scale``; the loss's margins are in those units. It is an ``nn.Linear``, so freezing,
    cRT's re-drawn head and export treat it as the head it is."""

    scale: torch.Tensor

    def __init__(self, in_features: int, out_features: int, scale: float = 30.0) -> None:
        super().__init__(in_features, out_features, bias=False)
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cos = F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))
        return cos * self.scale


class _Shortcut(nn.Module):
    """Option A of He et al.: subsample by 2 and pad the new channels with zeros (no
    parameters; the CIFAR ResNets' 0.27 M / 0.46 M counts assume it)."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = (
            _Shortcut((c_out - c_in) // 2) if stride != 1 or c_in != c_out else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNet of He et al. 2016 (section 4.2): a 3x3 convolution, three stages of
    ``n`` basic blocks at 16, 32 and 64 channels (32, 16 and 8 px for a 32 px input), global
    average pooling, a linear head; depth ``6n + 2`` (ResNet-20: n=3, 0.27 M parameters;
    ResNet-32: n=5, 0.46 M). Shortcuts are option A, weights Kaiming-normal, as in the code
    of the LDAM-DRW paper the CIFAR-LT results come from."""

    def __init__(self, depth: int, n_classes: int) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ConfigError(f"A CIFAR ResNet's depth is 6n + 2 (20, 32, 44, 56), not {depth}.")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages: list[nn.Module] = []
        c_in = 16
        for k, c_out in enumerate((16, 32, 64)):
            blocks = [_Block(c_in if i == 0 else c_out, c_out, 2 if i == 0 and k else 1)
                      for i in range(n)]  # fmt: skip
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, n_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(self.layers(F.relu(self.bn1(self.conv1(x))))).flatten(1)
        logits: torch.Tensor = self.fc(out)
        return logits


def _cifar_resnet(depth: int, n_classes: int, weights: str | None = None) -> nn.Module:
    if weights is not None:
        raise ConfigError(f"resnet{depth} (CIFAR) has no pretrained weights; drop --pretrained.")
    return CifarResNet(depth, n_classes)


for _depth in (20, 32):
    register_model(
        f"resnet{_depth}",
        help=f"the CIFAR ResNet-{_depth} (He et al. 2016), "
        f"{'0.27' if _depth == 20 else '0.46'} M parameters, for 32 px images",
    )(partial(_cifar_resnet, _depth))


def check_model_name(name: str) -> None:
    """A clear error unless ``name`` is a registered model, a torchvision classifier or
    ``timm:<name>`` (the ``timm`` extra)."""
    if is_timm(name):
        check_timm_name(name)
    elif name not in MODELS and name not in classification_models():
        raise MODELS.unknown(
            name, extra=["linear", "<any torchvision classifier>", "timm:<any timm model>"]
        )


def create_model(
    name: str,
    n_classes: int,
    weights: str | None = None,
    *,
    head: str = "linear",
    head_scale: float = 30.0,
) -> nn.Module:
    """A registered model or a torchvision classifier (random init, or ``weights``) with an
    ``n_classes`` head: ``linear``, or ``cosine`` (:class:`CosineLinear`, logits
    ``head_scale * cos``). The caller seeds torch first: the initial weights come from it."""
    if head not in HEADS:
        raise ConfigError(f"head must be one of {', '.join(HEADS)}; got {head!r}.")
    if is_timm(name):
        model: nn.Module = create_timm_model(name, n_classes, weights)
    elif name in MODELS:
        model = MODELS.get(name)(n_classes, weights)
    elif name not in classification_models():
        raise MODELS.unknown(name, extra=["<any torchvision classifier>", "timm:<any timm model>"])
    else:
        option = "--pretrained {file} (in Python or a grid: pretrained: {file})"
        model = build_model(name, weights, file_option=option).model
        parent, attr, old = final_linear(model)
        setattr(parent, attr, nn.Linear(old.in_features, n_classes))
    if head == "cosine":
        parent, attr, old = final_linear(model)
        setattr(parent, attr, CosineLinear(old.in_features, n_classes, head_scale))
    return model
