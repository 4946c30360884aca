"""timm models as ``timm:<name>``: an ``n_classes`` head, weights from a file (no
download here), clear errors, and a real run whose predictions the loaded run reproduces."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

from imgbalance.errors import ImgBalanceError
from imgbalance.experiments import RunConfig, run_training
from imgbalance.experiments.predict import load_run

torch = pytest.importorskip("torch", reason="the torch extra")
timm = pytest.importorskip("timm", reason="the timm extra")

from imgbalance.torch.models import create_model, final_linear, split_parameters  # noqa: E402


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """timm's test_resnet weights with a 1000-class head, as a user would pass them."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "test resnet.pth"
    torch.save(timm.create_model("test_resnet", num_classes=1000).state_dict(), path)
    return path


def test_a_timm_model_gets_an_n_classes_head_and_its_weights_from_a_file(
    resnet_file: Path,
) -> None:
    torch.manual_seed(1)
    model = create_model("timm:test_resnet", 3, str(resnet_file))
    _, _, head = final_linear(model)
    assert head.out_features == 3 and model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    saved = torch.load(resnet_file, weights_only=True)
    stem = next(k for k in saved if k.endswith("weight") and saved[k].dim() == 4)
    assert torch.equal(model.state_dict()[stem], saved[stem])  # the backbone is the file's
    safetensors = pytest.importorskip("safetensors.torch")
    as_st = resnet_file.with_suffix(".safetensors")
    safetensors.save_file(saved, str(as_st))
    same = create_model("timm:test_resnet", 3, str(as_st))
    assert torch.equal(same.state_dict()[stem], saved[stem])
    backbone, head_params = split_parameters(model)
    assert backbone and len(head_params) == 2  # freeze and backbone_lr find the head
    cosine = create_model("timm:test_resnet", 3, None, head="cosine")
    assert type(final_linear(cosine)[2]).__name__ == "CosineLinear"


def test_timm_errors_are_clear(
    resnet_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(
        ImgBalanceError, match=r'Unknown timm model "test_resnett".*timm:test_resnet'
    ):
        RunConfig.from_dict({"model": "timm:test_resnett"})
    with pytest.raises(ImgBalanceError, match="neither DEFAULT nor an existing file"):
        create_model("timm:test_resnet", 3, str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ImgBalanceError, match="cannot be loaded into timm:test_resnet"):
        create_model("timm:test_resnet", 3, str(tmp_path / "junk.pth"))
    with pytest.raises(ImgBalanceError, match="does not fit timm:test_vit"):
        create_model("timm:test_vit", 3, str(resnet_file))  # another architecture's file
    torch.save({"conv1.0.weight": torch.zeros(1)}, tmp_path / "part.pth")
    with pytest.raises(ImgBalanceError, match="does not fit timm:test_resnet"):
        create_model("timm:test_resnet", 3, str(tmp_path / "part.pth"))

    def offline(*args: object, **kw: object) -> None:
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ImgBalanceError, match="never falls back to random weights"):
        create_model("timm:test_resnet", 3, "DEFAULT")


def test_without_timm_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # an import of timm now fails
    with pytest.raises(ImgBalanceError, match=r"pip install 'imgbalance\[timm\]'"):
        RunConfig.from_dict({"model": "timm:test_resnet"})


def test_a_timm_run_trains_frozen_and_predict_reproduces_it(
    split_tree: Path, tmp_path: Path, resnet_file: Path
) -> None:
    settings = {"data": str(split_tree), "model": "timm:test_resnet",
                "pretrained": str(resnet_file), "freeze": "backbone",
                "image_size": 32, "epochs": 1, "batch_size": 8, "seed": 0}  # fmt: skip
    cfg = RunConfig.from_dict(settings)
    run_training(cfg, tmp_path / "run")
    rows = list(csv.DictReader((tmp_path / "run" / "predictions.csv").open()))
    predictor = load_run(tmp_path / "run")  # rebuilds timm:test_resnet from the run's record
    proba, failed = predictor.predict([str(split_tree / "test" / r["path"]) for r in rows])
    want = np.array([[float(r[f"p:{c}"]) for c in predictor.classes] for r in rows])
    assert not failed and np.array_equal(proba, want)
