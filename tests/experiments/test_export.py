"""``imgbalance export``: the exported TorchScript and ONNX files give the probabilities
``imgbalance predict`` gives (within 1e-5), post-hoc variants included, from any batch
size; exports are byte-stable and never replace a file unasked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgbalance.errors import ImgBalanceError
from imgbalance.experiments import RunConfig, run_training
from imgbalance.experiments.export import export_model
from imgbalance.experiments.predict import load_run
from imgbalance.experiments.runfiles import PREPROCESSING

from imgtools import COLOURS, colour_image

torch = pytest.importorskip("torch", reason="export needs the torch extra")

_SCRIPT = Path(sys.executable).parent / "imgbalance"
ENTRY = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "imgbalance"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(3)
    for split, ns in {"train": (16, 6, 3), "val": (4, 3, 2), "test": (5, 3, 3)}.items():
        for (name, colour), n in zip(COLOURS.items(), ns, strict=True):
            folder = base / "split" / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                colour_image(rng, colour, size=18 + i).save(folder / f"{i}.png")
    cfg = {"data": str(base / "split"), "image_size": 16, "epochs": 2, "batch_size": 4,
           "ensemble": 2, "seed": 2}  # fmt: skip
    run_training(RunConfig.from_dict(cfg), base / "run")
    return base / "run"


def _inputs(run: Path) -> tuple[list[str], np.ndarray]:
    from imgbalance.torch.data import decode_pixels

    paths = sorted(str(p) for p in (run.parent / "split" / "test").rglob("*.png"))
    px, failed = decode_pixels(paths, 16)
    assert not failed
    return paths, px.astype(np.float32) / 255.0


def test_the_recorded_normalisation_is_the_models() -> None:
    from imgbalance.torch.models import MEAN, STD

    assert tuple(PREPROCESSING["mean"]) == MEAN and tuple(PREPROCESSING["std"]) == STD


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("posthoc", ["none", "temperature", "prior_correction"])
def test_torchscript_gives_predicts_probabilities(run: Path, tmp_path: Path, posthoc: str) -> None:
    p = load_run(run)
    paths, x = _inputs(run)
    record = export_model(p, "torchscript", tmp_path / "m.pt", posthoc=posthoc)
    assert record["members"] == 2 and record["classes"] == list(COLOURS)
    model = torch.jit.load(str(tmp_path / "m.pt"))
    got = model(torch.from_numpy(x)).numpy()  # 11 images: not the traced batch of 2
    want = p.calibrated(p.predict(paths)[0], posthoc)
    assert got.shape == (11, 3) and np.abs(got - want).max() < 1e-5
    sidecar = json.loads((tmp_path / "m.pt.json").read_text())
    assert sidecar["posthoc"] == posthoc and sidecar["input"]["image_size"] == 16


@pytest.mark.parametrize("posthoc", ["none", "logit_adjustment", "threshold_moving"])
def test_onnx_gives_predicts_probabilities(run: Path, tmp_path: Path, posthoc: str) -> None:
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra")
    p = load_run(run)
    paths, x = _inputs(run)
    export_model(p, "onnx", tmp_path / "m.onnx", posthoc=posthoc)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    want = p.calibrated(p.predict(paths)[0], posthoc)
    for rows in (slice(0, 11), slice(0, 1), slice(3, 10)):
        (got,) = session.run(["probabilities"], {"images": x[rows]})
        assert np.abs(got - want[rows]).max() < 1e-5


def test_exports_are_byte_stable_and_never_replace_unasked(run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="the onnx extra")
    p = load_run(run)
    for fmt, name in (("torchscript", "a.pt"), ("onnx", "a.onnx")):
        first = export_model(p, fmt, tmp_path / "1" / name)
        if fmt == "onnx":  # TorchScript numbers the classes it traces within a process
            second = export_model(p, fmt, tmp_path / "2" / name)
            assert first["sha256"] == second["sha256"]
        with pytest.raises(ImgBalanceError, match="pass overwrite=True"):
            export_model(p, fmt, tmp_path / "1" / name)
        assert export_model(p, fmt, tmp_path / "1" / name, overwrite=True)["sha256"]


def test_the_command(run: Path, tmp_path: Path) -> None:
    def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
        return subprocess.run([*ENTRY, *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip

    for name in ("x.pt", "y.pt"):  # one export per process: byte-stable
        r = cli("export", run, "--format", "torchscript", "--out", tmp_path / name)
        assert r.returncode == 0, r.stderr
        assert "FutureWarning" not in r.stderr
    assert (tmp_path / "x.pt").read_bytes() == (tmp_path / "y.pt").read_bytes()
    assert json.loads((tmp_path / "x.pt.json").read_text())["members"] == 2
    r = cli("export", run, "--format", "torchscript", "--out", run / "predictions.csv")
    assert r.returncode == 1 and "inside the run folder" in r.stderr
    assert (run / "predictions.csv").read_text().startswith("path,")
    r = cli("export", run, "--format", "tflite")
    assert r.returncode == 1 and "onnx" in r.stderr
    r = cli("export", run, "--posthoc", "nope", "--out", tmp_path / "y.onnx")
    assert r.returncode == 1 and "temperature" in r.stderr and "Traceback" not in r.stderr
    linear = tmp_path / "linear"
    run_training(RunConfig.from_dict({"data": str(run.parent / "split"), "model": "linear",
                                      "features": "thumbnail:8"}), linear)  # fmt: skip
    r = cli("export", linear, "--out", tmp_path / "l.onnx")
    assert r.returncode == 1 and "linear" in r.stderr and "Traceback" not in r.stderr
