"""Exporting a finished run's model for deployment: TorchScript or ONNX, one file that
needs neither imgbalance nor the run folder, and a JSON sidecar saying how to feed it.

The exported module takes ``float32`` images ``N x 3 x S x S``, RGB, scaled to
``[0, 1]`` (decode, apply EXIF orientation, squash-resize to ``S x S`` with bilinear
filtering, divide by 255: the sidecar's ``input``), normalises them itself, averages the
softmax of every ensemble member and, when asked, applies one post-hoc variant fitted on
the run's validation split. It returns class probabilities ``N x C`` in the sidecar's
class order: the probabilities ``imgbalance predict`` gives, within float32 rounding.

Every post-hoc variant is ``softmax(a * log p + b)`` (temperature: ``a = 1 / T``;
prior correction: ``b = log w``; logit adjustment: ``b = -log prior``; threshold moving:
``b = offsets``), so one small head carries whichever was chosen.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._fs import atomic_path, atomic_write_text, output_faults, sha256_of
from .._options import option
from .._outfile import check_output_file, existing_folder_of
from .._version import __version__
from ..errors import ConfigError, MissingDependencyError, OutputError
from .calibration import prior_weights
from .predict import POSTHOC_CHOICES, Predictor
from .runfiles import PREPROCESSING

__all__ = ["FORMATS", "export_model", "posthoc_head"]

#: export formats and the file each writes
FORMATS = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx"}

#: the ONNX operator set the export targets (onnxruntime >= 1.16 runs it)
OPSET = 18

_FLOOR = 1e-12  # the floor the post-hoc variants put under a probability before its log


def posthoc_head(predictor: Predictor, posthoc: str) -> tuple[float, np.ndarray] | None:
    """``(a, b)`` of ``softmax(a * log p + b)`` for ``posthoc`` (``None`` for ``none``)."""
    if posthoc not in POSTHOC_CHOICES:
        raise ConfigError(
            f"Unknown post-hoc variant {posthoc!r}; choose one of {', '.join(POSTHOC_CHOICES)}."
        )
    ph = predictor.record["posthoc"]
    n = len(predictor.classes)
    zero = np.zeros(n)
    if posthoc == "none":
        return None
    if posthoc == "temperature":
        return 1.0 / float(ph["temperature"]), zero
    if posthoc == "threshold_moving":
        return 1.0, np.asarray(ph["threshold_offsets"], dtype=np.float64)
    if posthoc == "prior_correction":
        w = prior_weights(ph["original_counts"], ph["trained_counts"])
        return 1.0, np.log(np.clip(w, _FLOOR, None))
    counts = np.asarray(ph["original_counts"], dtype=np.float64)
    prior = counts / counts.sum()
    return 1.0, -np.log(np.clip(prior, _FLOOR, None))


def _module(predictor: Predictor, head: tuple[float, np.ndarray] | None) -> Any:
    import torch
    from torch import nn

    from ..torch.models import MEAN, STD

    class Deployed(nn.Module):
        mean: torch.Tensor
        std: torch.Tensor
        b: torch.Tensor

        def __init__(self, members: list[nn.Module]) -> None:
            super().__init__()
            self.members = nn.ModuleList(members)
            self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
            a, b = head if head is not None else (1.0, np.zeros(len(predictor.classes)))
            self.calibrate = head is not None
            self.a = float(a)
            self.register_buffer("b", torch.tensor(b, dtype=torch.float32).view(1, -1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = (x - self.mean) / self.std
            p = torch.stack([torch.softmax(m(x).float(), 1) for m in self.members]).mean(0)
            if self.calibrate:
                p = torch.softmax(self.a * torch.log(p.clamp_min(_FLOOR)) + self.b, 1)
            return p

    module = Deployed(predictor.members(torch.device("cpu"))).eval()
    # an inference model: its outputs carry no autograd graph for the caller to detach
    return module.requires_grad_(False)


def export_model(
    predictor: Predictor,
    fmt: str,
    out: str | os.PathLike[str],
    *,
    posthoc: str = "none",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``predictor``'s model to ``out`` in ``fmt`` (``torchscript`` or ``onnx``)
    and its sidecar ``out + ".json"``; returns the sidecar's content."""
    if fmt not in FORMATS:
        raise ConfigError(f"Unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if predictor.kind != "torch":
        raise ConfigError(
            "Only torch models can be exported; this run's model is linear (a scikit-learn "
            "pipeline in best_model.joblib: load it with joblib, or use `imgbalance predict`)."
        )
    out = Path(out)
    sidecar = out.with_name(out.name + ".json")
    for path in (out, sidecar):  # a folder, a device, a file without --overwrite: refused
        check_output_file(path, overwrite=overwrite, what="export", streams=False)
    then = f"run it again (--out FILE elsewhere, {option('overwrite', True)})"
    with output_faults(existing_folder_of(out), then):
        return _export(predictor, fmt, out, sidecar, posthoc)


def _export(
    predictor: Predictor, fmt: str, out: Path, sidecar: Path, posthoc: str
) -> dict[str, Any]:
    import torch

    head = posthoc_head(predictor, posthoc)
    module = _module(predictor, head)
    size = predictor.image_size
    example = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    out.parent.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    with torch.no_grad(), atomic_path(out) as tmp:
        if fmt == "torchscript":
            with warnings.catch_warnings(), tmp.open("wb") as fh:
                # torch deprecates TorchScript for torch.export; its runtime still loads it
                warnings.simplefilter("ignore", FutureWarning)
                traced = torch.jit.trace(module, example, check_trace=False)  # type: ignore[no-untyped-call]
                # through a file object: given a path, the archive's inner folder is named
                # after the temporary name and equal exports would differ
                torch.jit.save(traced, fh)
        else:
            _onnx(module, example, tmp)
            extra = {"opset": OPSET, "input_name": "images", "output_name": "probabilities"}
    record: dict[str, Any] = {
        "format": fmt,
        "file": out.name,
        "sha256": sha256_of(out),
        "imgbalance": __version__,
        "run": str(predictor.run),
        "model": predictor.record["model"],
        "members": len(module.members),
        "classes": predictor.classes,
        "input": {
            "shape": ["N", 3, size, size],
            "dtype": "float32",
            "image_size": size,
            "decode": predictor.record["input"].get("decode", PREPROCESSING["decode"]),
            "resize": predictor.record["input"].get("resize", PREPROCESSING["resize"]),
            "scale": "uint8 / 255, to [0, 1]",
            "normalise": "inside the model (ImageNet mean and std): do not normalise again",
        },
        "output": "class probabilities, N x C, rows sum to 1, in the order of `classes`",
        "posthoc": posthoc,
        **extra,
    }
    atomic_write_text(sidecar, json.dumps(record, indent=2) + "\n")
    return record


def _onnx(module: Any, example: Any, tmp: Path) -> None:
    import torch

    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "ONNX export needs onnx and onnxscript, which are not installed. Install the "
            "onnx extra: pip install 'imgbalance[onnx]'."
        ) from None
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        module,
        (example,),
        input_names=["images"],
        output_names=["probabilities"],
        dynamic_shapes={"x": {0: batch}},
        opset_version=OPSET,
        dynamo=True,
        verbose=False,
    )
    if program is None:  # pragma: no cover - dynamo=True always returns the program
        raise OutputError("torch.onnx.export returned nothing; please report this.")
    program.save(str(tmp))
