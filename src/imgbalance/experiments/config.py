"""The configuration of one training run: every knob, validated, with its default."""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import ConfigError, ImgBalanceError, MissingDependencyError
from ..registry import Registry
from ..torch.mixing import MIXING
from ..torch.samplers import SAMPLERS
from ..torch.weights import CLASS_WEIGHTS

__all__ = [
    "ADDED_SETTINGS",
    "AUGMENT",
    "FREEZE",
    "HEADS",
    "LINEAR_LOSSES",
    "MIN_VAL_FOR_SELECTION",
    "MONITORS",
    "NATIVE_SIZE",
    "OPTIMIZERS",
    "PROTOCOLS",
    "SCHEDULES",
    "RunConfig",
]  # fmt: skip

#: online augmentation of training batches (see :class:`imgbalance.torch.data.MemoryBatches`)
AUGMENT = ("none", "light", "crop-flip")
#: settings added after runs were first fingerprinted, with their defaults: at the default
#: a setting is left out of the fingerprint, so a finished grid stays finished (its runs
#: are the same runs) when imgbalance learns a new setting
ADDED_SETTINGS: dict[str, Any] = {
    "freeze": "none", "backbone_lr_mult": 1.0, "crt_epochs": 0, "head": "linear",
    "head_scale": 30.0, "ldam_margin": 0.5, "optimizer": "adam", "momentum": 0.9,
    "warmup_epochs": 0, "schedule": "step", "milestones": None,
}  # fmt: skip
#: the image size a model is built for, when ``image_size`` is not given (else 224)
NATIVE_SIZE = {"small-cnn": 64, "resnet20": 32, "resnet32": 32}
#: the classifier head: ``auto`` is ``cosine`` for the LDAM loss (its margins are in cosine
#: units, as in Cao et al.), ``linear`` otherwise
HEADS = ("auto", "linear", "cosine")
#: the optimiser and learning-rate schedules (see :mod:`imgbalance.torch.finetune`)
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("step", "multistep", "cosine")
#: named protocols: settings a run starts from (the run's own settings win). ``cifar-lt``
#: is the long-tailed CIFAR protocol of Cao et al. 2019 (LDAM-DRW) and the papers after it:
#: SGD 0.1, momentum 0.9, weight decay 2e-4, batch 128, 200 epochs, 5 of linear warm-up,
#: lr x 0.01 after epochs 160 and 180 (their code's steps), pad-and-crop + flip, the last
#: epoch tested (no selection), effective-number beta 0.9999 for DRW
PROTOCOLS: dict[str, dict[str, Any]] = {
    "default": {},
    "cifar-lt": {
        "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 2e-4,
        "batch_size": 128, "epochs": 200, "warmup_epochs": 5, "schedule": "multistep",
        "milestones": [160, 180], "step_gamma": 0.01, "augment": "crop-flip",
        "monitor": "none", "beta": 0.9999,
    },
}  # fmt: skip
#: what trains: ``none`` every parameter, ``backbone`` only the classifier head (the final
#: linear layer; see :func:`imgbalance.torch.models.split_parameters`)
FREEZE = ("none", "backbone")
#: how the checkpoint that is tested is chosen: ``auto`` is ``val_balanced_loss`` (the
#: validation NLL averaged per class) unless the
#: validation split is too small to select on (see :data:`MIN_VAL_FOR_SELECTION`), then
#: ``none`` (a fixed budget: every epoch runs and the last one is tested)
MONITORS = (
    "auto", "val_balanced_loss", "val_loss", "val_macro_f1", "val_balanced_accuracy", "none",
)  # fmt: skip
#: fewer validation images than this (or a class missing from it): ``auto`` selects nothing
MIN_VAL_FOR_SELECTION = 20
#: the losses the ``linear`` model (logistic regression) can express, as sample weights
LINEAR_LOSSES = ("ce", "weighted-ce")


def _torch_registries() -> tuple[Registry[Any], Any]:
    """The loss registry and the model check of the torch wing (they need the torch extra)."""
    try:
        from ..torch import losses, models
    except (ImportError, MissingDependencyError) as exc:
        raise MissingDependencyError(
            "Training a CNN needs PyTorch and torchvision, which are not installed: "
            "pip install 'imgbalance[torch]' (or use --model linear)."
        ) from exc
    return losses.LOSSES, models


@dataclass
class RunConfig:
    """One run: data, model, one offline technique, training-time techniques, protocol.

    The defaults follow the tomato-leaf reference where it had one (Adam, lr
    5e-4, weight decay 1e-4, StepLR(15, 0.1), patience 5) and are the same for
    every arm of a comparison: batch size, epochs budget, initial weights (drawn
    from ``seed`` before any data pass).
    """

    data: str = ""
    model: str = "small-cnn"
    #: None: random init; "DEFAULT", a torchvision weights name or a .pth file
    pretrained: str | None = None
    image_size: int | None = None  # default: 64 for small-cnn, 224 otherwise
    #: none: every parameter trains; backbone: only the head (frozen BatchNorm in eval mode)
    freeze: str = "none"
    #: the backbone's learning rate is lr x this (the head's is lr)
    backbone_lr_mult: float = 1.0
    #: the classifier head (see HEADS) and a cosine head's logit scale
    head: str = "auto"
    head_scale: float = 30.0
    # offline balancing of the training split, through the engine
    technique: str = "none"
    technique_params: dict[str, Any] = field(default_factory=dict)
    target: Any = None
    # training-time techniques
    loss: str = "ce"
    class_weights: str | None = None  # default: inverse for weighted-ce, none otherwise
    beta: float = 0.999
    focal_gamma: float = 2.0
    tau: float = 1.0
    #: LDAM: the rarest class's margin, in cosine units
    ldam_margin: float = 0.5
    drw_epoch: int | None = None
    sampler: str = "none"
    mixing: str = "none"
    mixing_alpha: float = 1.0
    augment: str = "light"
    ensemble: int = 1  # EasyEnsemble: K members on balanced random-under subsets
    #: classifier re-training (cRT): after training, the head alone is re-drawn and trained
    #: this many epochs on the frozen backbone, class-balanced sampling, plain CE; 0: off
    crt_epochs: int = 0
    # protocol
    #: a named protocol (see PROTOCOLS) whose settings this run starts from
    protocol: str = "default"
    optimizer: str = "adam"
    #: SGD's momentum
    momentum: float = 0.9
    #: the first epochs' learning rate rises linearly to lr (0: no warm-up)
    warmup_epochs: int = 0
    #: step (x step_gamma every step_size epochs), multistep (x step_gamma at each of
    #: milestones), cosine
    schedule: str = "step"
    milestones: list[int] | None = None
    epochs: int = 30
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    step_size: int = 15
    step_gamma: float = 0.1
    patience: int = 5
    #: the selection rule (see MONITORS); the same for every arm of a comparison
    monitor: str = "auto"
    #: a budget in optimiser steps, the same for every arm: each of the ``epochs`` rounds
    #: is ``ceil(max_steps / epochs)`` steps, whatever the size of the (resampled) training
    #: set. None: an epoch is one pass over the training set.
    max_steps: int | None = None
    seed: int = 0
    device: str = "auto"
    features: str = "thumbnail"  # for model "linear"
    workers: int | None = None
    #: auto (in memory when the decoded images fit, else streamed), memory or stream;
    #: the same model either way, so it is not part of the fingerprint
    data_mode: str = "auto"
    #: the layout of a CNN's activations: auto (NHWC ``channels_last`` on a CUDA device,
    #: where cuDNN's tensor-core kernels want it; the default layout elsewhere), on or off.
    #: A matter of speed, so not part of the fingerprint (as the device is not)
    channels_last: str = "auto"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            close = [m for u in unknown for m in difflib.get_close_matches(u, names, 1)]
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ImgBalanceError(
                f"Unknown run setting(s) {unknown}.{hint} Valid settings: "
                f"{', '.join(sorted(names))}."
            )
        protocol = d.get("protocol", "default")
        if protocol not in PROTOCOLS:
            raise ConfigError(
                f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}. Write it "
                f"like protocol=cifar-lt (--set protocol=cifar-lt on the command line)."
            )
        cfg = cls(**{**copy.deepcopy(PROTOCOLS[protocol]), **d})
        cfg.validate()
        return cfg

    def model_head(self) -> dict[str, Any]:
        """The head keywords of :func:`imgbalance.torch.models.create_model` for this run."""
        head = self.head
        if head == "auto":
            head = "cosine" if self.loss == "ldam" else "linear"
        return {"head": head, "head_scale": float(self.head_scale)}

    def resolved(self) -> RunConfig:
        """A copy with every ``None`` default filled in."""
        d = asdict(self)
        if d["image_size"] is None:
            d["image_size"] = NATIVE_SIZE.get(self.model, 224)
        d["head"] = self.model_head()["head"]
        if d["class_weights"] is None:
            d["class_weights"] = "inverse" if self.loss == "weighted-ce" else "none"
        return RunConfig(**d)

    def validate(self) -> None:
        """Check every setting; names are checked against their registries."""
        self._check_kinds()

        def choice(key: str, options: tuple[str, ...]) -> None:
            if getattr(self, key) not in options:
                raise ConfigError(
                    f"{key} must be one of {', '.join(options)}; got {getattr(self, key)!r}."
                )

        def registered(key: str, registry: Registry[Any], none: bool) -> None:
            value = getattr(self, key)
            if not (none and value == "none") and value not in registry:
                raise registry.unknown(value, extra=["none"] if none else None)

        if self.class_weights is not None:
            registered("class_weights", CLASS_WEIGHTS, none=False)
        registered("sampler", SAMPLERS, none=True)
        registered("mixing", MIXING, none=True)
        choice("augment", AUGMENT)
        choice("data_mode", ("auto", "memory", "stream"))
        choice("channels_last", ("auto", "on", "off"))
        choice("monitor", MONITORS)
        if self.model == "linear":
            if self.loss not in LINEAR_LOSSES or self.mixing != "none":
                raise ConfigError(
                    f"model linear (logistic regression) supports losses "
                    f"{' and '.join(LINEAR_LOSSES)} and no mixing; got loss {self.loss}, "
                    f"mixing {self.mixing}."
                )
        else:
            losses, models = _torch_registries()
            registered("loss", losses, none=False)
            models.check_model_name(self.model)
        for key in ("lr", "weight_decay", "step_gamma", "beta", "focal_gamma", "tau",
                    "mixing_alpha"):  # fmt: skip
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v or v < 0:
                raise ConfigError(
                    f"{key} must be a number >= 0, got {v!r}. Write it like {key}=0.001 "
                    f"(--set {key}=0.001 on the command line)."
                )
        if self.mixing != "none" and self.mixing_alpha == 0:
            raise ConfigError(
                f"mixing_alpha must be > 0 with mixing {self.mixing} (the mixing weights are "
                "drawn from Beta(alpha, alpha)), got 0. Write it like mixing_alpha=0.2 "
                "(--set mixing_alpha=0.2 on the command line), or drop --mixing."
            )
        for key in ("epochs", "batch_size", "ensemble", "patience", "step_size", "max_steps",
                    "image_size", "drw_epoch", "workers", "seed"):  # fmt: skip
            v = getattr(self, key)
            if v is None and key in ("max_steps", "image_size", "drw_epoch", "workers"):
                continue
            least = 0 if key == "seed" else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < least:
                example = {"ensemble": 5, "max_steps": 1000, "image_size": 64, "drw_epoch": 10,
                           "workers": 4}.get(key, getattr(RunConfig, key))  # fmt: skip
                if key == "seed":
                    raise ConfigError(
                        f"seed must be an integer >= 0, got {v!r}. Write it like seed=0 "
                        "(--set seed=0 on the command line)."
                    )
                raise ConfigError(
                    f"{key} must be an integer >= 1, got {v!r}. Write it like {key}={example} "
                    f"(--set {key}={example} on the command line)."
                )
        if self.model == "linear" and (
            self.loss in ("focal", "balanced-softmax") or self.mixing != "none"
        ):
            raise ImgBalanceError(
                f"model linear (logistic regression) supports losses ce and weighted-ce and no "
                f"mixing; got loss {self.loss}, mixing {self.mixing}."
            )
        if self.model != "linear" and self.batch_size < 2:
            raise ConfigError(
                f"batch_size must be at least 2 for a CNN (BatchNorm needs two images a "
                f"batch), got {self.batch_size}."
            )
        if not isinstance(self.device, str) or not re.fullmatch(
            r"auto|cpu|mps|cuda(:\d+)?", self.device
        ):
            raise ConfigError(
                f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}. Write it "
                "like device=cuda (--set device=cuda on the command line)."
            )
        self._check_finetune()
        self._check_protocol()
        self._check_technique()
        if self.drw_epoch is not None and not 1 <= self.drw_epoch <= self.epochs:
            raise ImgBalanceError(
                f"drw_epoch must be between 1 and epochs ({self.epochs}), got {self.drw_epoch}: "
                f"re-weighting starts at that epoch and the model is taken from it on. "
                f"Lower drw_epoch or raise epochs."
            )

    def _check_kinds(self) -> None:
        """A name is a string and the technique's parameters a mapping (a list or a number
        there crashed a run, or every run of a grid, instead of this one message)."""
        for key in ("data", "pretrained"):  # a path may be given as a Path
            if isinstance(getattr(self, key), os.PathLike):
                setattr(self, key, os.fspath(getattr(self, key)))
        for f in fields(self):
            v, kind = getattr(self, f.name), str(f.type)
            if (kind == "str" and not isinstance(v, str)) or (
                kind == "str | None" and v is not None and not isinstance(v, str)
            ):
                raise ConfigError(
                    f"{f.name} must be a name (a string), got {v!r}. Write it like "
                    f"{f.name}={getattr(RunConfig, f.name, None) or 'NAME'}."
                )
        if not isinstance(self.technique_params, dict):
            raise ConfigError(
                f"technique_params must be a mapping of the technique's parameters, got "
                f"{self.technique_params!r}. Write it like technique_params: {{k_neighbors: 3}}."
            )
        if self.target is not None and not isinstance(self.target, (str, dict)):
            raise ConfigError(
                f"target must be auto, ratio:R, count:N, a YAML file or a mapping of class to "
                f"count, got {self.target!r}."
            )

    def _check_technique(self) -> None:
        """The offline technique's name and parameters, checked as balance checks them, so
        a misspelt method or ``k_neighbors: abc`` stops a grid before its first run instead
        of failing every run of the arm."""
        if self.technique in ("none", ""):  # parameters from a grid's defaults are unused
            return
        from ..methods import create_pipeline

        try:
            create_pipeline(self.technique, **self.technique_params).validate()
        except ImgBalanceError as exc:
            said = str(exc).split(":")[0].strip() in self.technique.split(",")  # "smote: ..."
            raise ConfigError(str(exc) if said else f"technique {self.technique}: {exc}") from exc

    def _check_finetune(self) -> None:
        """freeze, backbone_lr_mult and crt_epochs: each error names its setting."""
        if self.freeze not in FREEZE:
            raise ConfigError(
                f"freeze={self.freeze!r} is not one of {', '.join(FREEZE)}. Write it like "
                f"freeze=backbone (--set freeze=backbone on the command line)."
            )
        m = self.backbone_lr_mult
        if not isinstance(m, (int, float)) or isinstance(m, bool) or not 0 < m < float("inf"):
            raise ConfigError(
                f"backbone_lr_mult must be a finite number > 0, got {m!r}. Write it like "
                f"backbone_lr_mult=0.1 (--set backbone_lr_mult=0.1 on the command line)."
            )
        c = self.crt_epochs
        if not isinstance(c, int) or isinstance(c, bool) or c < 0:
            raise ConfigError(
                f"crt_epochs must be an integer >= 0 (0: no classifier re-training), got "
                f"{c!r}. Write it like crt_epochs=10 (--set crt_epochs=10 on the command line)."
            )
        if self.freeze == "backbone" and m != 1:
            raise ConfigError(
                f"backbone_lr_mult={m!r} has no effect with freeze=backbone (a frozen backbone "
                f"does not train). Drop one of them: freeze=none with backbone_lr_mult={m!r} "
                f"trains the backbone slower, or freeze=backbone alone trains the head only."
            )
        given = {"freeze": self.freeze != "none", "backbone_lr_mult": m != 1, "crt_epochs": c,
                 "pretrained": self.pretrained is not None}  # fmt: skip
        if self.model == "linear" and any(given.values()):
            named = ", ".join(f"{k}={getattr(self, k)!r}" for k, on in given.items() if on)
            raise ConfigError(
                f"model linear (logistic regression) has no backbone to load weights into, "
                f"freeze or re-train a classifier on: {named} is for CNNs. Drop it or choose "
                "a CNN model."
            )

    def _check_protocol(self) -> None:
        """The head, LDAM's settings, the optimiser and the schedule."""

        def number(key: str, low: float, high: float, example: str) -> None:
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not low <= v < high:
                raise ConfigError(
                    f"{key} must be a number in [{low:g}, {high:g}), got {v!r}. Write it like "
                    f"{key}={example} (--set {key}={example} on the command line)."
                )

        for key, options in (("head", HEADS), ("optimizer", OPTIMIZERS),
                             ("schedule", SCHEDULES)):  # fmt: skip
            if getattr(self, key) not in options:
                raise ConfigError(
                    f"{key} must be one of {', '.join(options)}; got {getattr(self, key)!r}."
                )
        number("head_scale", 1e-6, float("inf"), "30")
        number("ldam_margin", 1e-6, float("inf"), "0.5")
        number("momentum", 0.0, 1.0, "0.9")
        w = self.warmup_epochs
        if not isinstance(w, int) or isinstance(w, bool) or not 0 <= w < self.epochs:
            raise ConfigError(
                f"warmup_epochs must be an integer from 0 to epochs - 1 ({self.epochs - 1}), "
                f"got {w!r}: lower it or raise epochs (--set warmup_epochs=1 on the command "
                f"line; a protocol's warm-up counts too)."
            )
        ms = self.milestones
        if ms is not None and (
            not isinstance(ms, list)
            or not all(isinstance(m, int) and not isinstance(m, bool) for m in ms)
            or ms != sorted(set(ms))
            or not all(1 <= m < self.epochs for m in ms)
        ):
            raise ConfigError(
                f"milestones must be increasing epochs between 1 and epochs - 1 "
                f"({self.epochs - 1}), got {ms!r}. Write it like milestones: [160, 180] in a "
                f"grid (--set 'milestones=[160, 180]' on the command line)."
            )
        if (self.schedule == "multistep") != bool(ms):
            raise ConfigError(
                "milestones go with schedule=multistep, and schedule=multistep needs them; got "
                f"schedule={self.schedule!r}, milestones={ms!r}. Set both, e.g. "
                "schedule=multistep with milestones [160, 180], or neither."
            )
        if self.loss == "ldam" and self.head == "linear":
            raise ConfigError(
                "loss ldam puts its margins on a cosine head's logits (Cao et al. 2019); "
                "head=linear would take them off raw logits of any size. Leave head at auto "
                "(cosine for ldam) or set head=cosine."
            )
        given = [k for k in ("head", "optimizer", "schedule")
                 if getattr(self, k) not in ("auto", ADDED_SETTINGS[k])]  # fmt: skip
        if self.model == "linear" and (given or self.warmup_epochs):
            raise ConfigError(
                f"model linear (logistic regression) has no head, optimiser or schedule to "
                f"set: {', '.join(given) or 'warmup_epochs'} is for CNNs. Drop it or choose "
                f"a CNN model."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> str:
        """Hash of the resolved settings (what makes two runs the same run)."""
        d = self.resolved().to_dict()
        d.pop("workers", None)
        d.pop("device", None)
        d.pop("data_mode", None)
        d.pop("channels_last", None)
        d.pop("protocol", None)  # its settings are in d already
        for key, default in ADDED_SETTINGS.items():  # at its default, a run is what it was
            if d[key] == default:
                d.pop(key)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]
