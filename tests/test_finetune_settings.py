"""Fine-tuning settings: freeze=backbone, backbone_lr_mult and classifier re-training
(crt_epochs), on tiny generated images with small-cnn (CPU, seconds each)."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgbalance.errors import ConfigError
from imgbalance.experiments import RunConfig, run_training

torch = pytest.importorskip("torch", reason="training needs the torch extra")

from imgbalance.experiments import torch_train as torch_loop  # noqa: E402
from imgbalance.torch.data import MemoryBatches  # noqa: E402
from imgbalance.torch.finetune import (  # noqa: E402
    build_optimizer,
    freeze_backbone,
    group_lr,
    train_mode,
)
from imgbalance.torch.models import (  # noqa: E402
    create_model,
    head_parameters,
    split_parameters,
)
from imgbalance.torch.samplers import sample_weights  # noqa: E402

from imgtools import COLOURS, colour_image  # noqa: E402

HEAD = ("fc.weight", "fc.bias")  # small-cnn's head


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """conftest's split, once for the module: train 24/8/3, val 4/3/1, test 4/3/0."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("finetune") / "split"
    for part, ns in {"train": (24, 8, 3), "val": (4, 3, 1), "test": (4, 3, 0)}.items():
        for (name, colour), n in zip(COLOURS.items(), ns, strict=True):
            (root / part / name).mkdir(parents=True)
            for i in range(n):
                colour_image(rng, colour).save(root / part / name / f"{name} {i}.png")
    return root


@pytest.fixture(scope="module")
def plain(split: Path) -> dict[str, Any]:
    """The weights of a run with every fine-tuning setting at its default (2 epochs)."""
    run_training(_cfg(split), split.parent / "plain")
    return _state(split.parent / "plain")


def _cfg(data: Path, **kw: object) -> RunConfig:
    base = {"data": str(data), "image_size": 16, "epochs": 2, "batch_size": 8, "seed": 0}
    return RunConfig.from_dict({**base, **kw})


def _state(run: Path) -> dict[str, Any]:
    checkpoint = torch.load(run / "best_model.pt", weights_only=False)
    state: dict[str, Any] = checkpoint["members"][0]
    return state


def _initial_state(seed: int = 0, n_classes: int = 3) -> dict[str, Any]:
    """The weights a run starts from: drawn from the seed before anything else."""
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in create_model("small-cnn", n_classes).state_dict().items()}


def _history(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "history.csv").open()))


# -- the head and the parameter split ---------------------------------------------------------


def test_the_head_is_the_final_linear_layer() -> None:
    model = create_model("small-cnn", 3)
    assert [id(p) for p in head_parameters(model)] == [id(model.fc.weight), id(model.fc.bias)]
    backbone, head = split_parameters(model)
    assert len(backbone) + len(head) == len(list(model.parameters()))
    assert not {id(p) for p in backbone} & {id(p) for p in head}
    import torchvision

    for name, layer in (("resnet18", "fc"), ("mobilenet_v3_small", "classifier.3")):
        tv = torchvision.models.get_model(name, weights=None)
        expected = [id(p) for p in tv.get_submodule(layer).parameters()]
        assert [id(p) for p in head_parameters(tv)] == expected


def test_train_mode_keeps_frozen_batchnorm_in_eval_mode() -> None:
    model = create_model("small-cnn", 3)
    train_mode(model)  # nothing frozen: plain train()
    assert all(m.training for m in model.modules())
    freeze_backbone(model)
    train_mode(model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert model.fc.training and model.dropout.training  # the head and dropout still train
    before = [m.running_mean.clone() for m in norms]
    model(torch.randn(4, 3, 16, 16) * 5 + 3)  # a training-mode forward pass
    for m, b in zip(norms, before, strict=True):
        assert torch.equal(m.running_mean, b)


# -- the optimiser ----------------------------------------------------------------------------


def test_two_parameter_groups_with_their_learning_rates() -> None:
    model = create_model("small-cnn", 3)
    opt = build_optimizer(model, lr=1e-3, weight_decay=1e-4, backbone_lr_mult=0.1)
    backbone, head = split_parameters(model)
    groups = {g["name"]: g for g in opt.param_groups}
    assert list(groups) == ["backbone", "head"]
    assert groups["backbone"]["lr"] == pytest.approx(1e-4) and groups["head"]["lr"] == 1e-3
    assert [id(p) for p in groups["backbone"]["params"]] == [id(p) for p in backbone]
    assert [id(p) for p in groups["head"]["params"]] == [id(p) for p in head]
    assert all(g["weight_decay"] == 1e-4 for g in opt.param_groups)
    # the schedule scales both groups alike
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.5)
    opt.step()
    sched.step()
    assert group_lr(opt, "backbone") == pytest.approx(5e-5)
    assert group_lr(opt, "head") == pytest.approx(5e-4)


def test_a_frozen_backbone_gives_the_optimiser_the_head_only() -> None:
    model = create_model("small-cnn", 3)
    freeze_backbone(model)
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.0)
    given = [id(p) for g in opt.param_groups for p in g["params"]]
    assert given == [id(model.fc.weight), id(model.fc.bias)]
    assert [g["name"] for g in opt.param_groups] == ["head"]


# -- freeze=backbone in a run -----------------------------------------------------------------


def test_freeze_backbone_trains_the_head_only(
    split: Path, plain: dict[str, Any], tmp_path: Path
) -> None:
    init = _initial_state()
    run_training(_cfg(split, freeze="backbone"), tmp_path / "frozen")
    frozen = _state(tmp_path / "frozen")
    for key, value in frozen.items():
        if key in HEAD:
            assert not torch.equal(value, init[key]), f"{key} did not train"
        else:  # conv weights, BatchNorm affine parameters and running statistics
            assert torch.equal(value, init[key]), f"{key} changed under freeze=backbone"
    # the control: without freezing the backbone and its BatchNorm statistics move
    assert not torch.equal(plain["features.1.running_mean"], init["features.1.running_mean"])
    assert not torch.equal(plain["features.0.weight"], init["features.0.weight"])


def test_backbone_lr_mult_slows_the_backbone_only(
    split: Path, plain: dict[str, Any], tmp_path: Path
) -> None:
    init = _initial_state()
    run_training(_cfg(split, backbone_lr_mult=1e-6), tmp_path / "slow")
    slow = _state(tmp_path / "slow")
    history = _history(tmp_path / "slow")
    assert float(history[0]["lr"]) == pytest.approx(5e-4)
    assert float(history[0]["backbone_lr"]) == pytest.approx(5e-10)
    # Adam moves each weight by about lr a step: 10 steps of 5e-10 leave the convolutions
    # where they were, while the head moves by about 10 x 5e-4
    conv = (slow["features.0.weight"] - init["features.0.weight"]).abs().max()
    head = (slow["fc.weight"] - init["fc.weight"]).abs().max()
    assert float(conv) < 1e-7 < 1e-3 < float(head)
    # the control: lr for both
    assert float((plain["features.0.weight"] - init["features.0.weight"]).abs().max()) > 1e-3


# -- cRT --------------------------------------------------------------------------------------


def _record_draws(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The classes of the training images each stage draws (one list per stage), read from
    the pixels: the test images' mean colour is their class (red 0, green 1, blue 2)."""
    stages: list[list[int]] = []
    real = MemoryBatches.iterate

    def iterate(self: MemoryBatches, batches: Iterator[Any]) -> Iterator[Any]:
        drawn: list[int] = []
        stages.append(drawn)
        for idx, px in real(self, batches):
            drawn += px.float().mean((2, 3)).argmax(1).tolist()
            yield idx, px

    monkeypatch.setattr(MemoryBatches, "iterate", iterate)
    return stages


def test_crt_retrains_the_head_on_the_frozen_backbone_with_balanced_batches(
    split: Path, plain: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same seed's plain run is cRT's first stage (a fixed budget: its last epoch)."""
    drawn = _record_draws(monkeypatch)
    s = run_training(_cfg(split, crt_epochs=3), tmp_path / "crt")
    stage1, final = plain, _state(tmp_path / "crt")
    for key, value in final.items():
        if key in HEAD:
            assert not torch.equal(value, stage1[key]), f"{key} was not re-trained"
        else:  # the backbone and its BatchNorm statistics, bit for bit
            assert torch.equal(value, stage1[key]), f"{key} changed during cRT"
    # training draws each image once an epoch (red: 3 of 35); cRT draws classes equally
    assert len(drawn) == 2
    assert np.bincount(drawn[0], minlength=3).tolist() == [2 * 3, 2 * 8, 2 * 24]
    red, green, blue = np.bincount(drawn[1], minlength=3) / len(drawn[1])
    assert len(drawn[1]) == 3 * 35 and min(red, green, blue) > 0.2 and red > 3 * 3 / 35
    # what the summary and the history say
    assert s["selection"]["stage"] == "crt" and s["selection"]["crt"]["stage1_epoch"] == 2
    assert s["best_epoch"] == 5 and s["epochs_run"] == 5  # a fixed budget: the last epoch
    history = _history(tmp_path / "crt")
    assert [h["stage"] for h in history] == ["train"] * 2 + ["crt"] * 3
    assert [int(h["epoch"]) for h in history] == [1, 2, 3, 4, 5]
    assert s["selection"]["steps"] == s["selection"]["steps_total"] == 25


def test_crt_samples_with_the_class_balanced_sampler(
    split: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    real = torch_loop.sample_weights

    def recording(labels: np.ndarray, kind: str) -> np.ndarray:
        asked.append(kind)
        return real(labels, kind)

    monkeypatch.setattr(torch_loop, "sample_weights", recording)
    run_training(_cfg(split, crt_epochs=1, sampler="sqrt"), tmp_path / "run")
    assert asked == ["sqrt", "class-balanced"]
    np.testing.assert_allclose(sample_weights(np.array([0, 0, 0, 1]), "class-balanced"),
                               [1 / 3, 1 / 3, 1 / 3, 1])  # fmt: skip


def test_crt_selects_within_its_own_stage(
    split: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scripted validation: stage 1 peaks at epoch 2 (0.9), cRT at its second epoch (0.8,
    below stage 1's best): the tested model is cRT's epoch 2 (run epoch 5), re-trained from
    stage 1's epoch 2, and its steps are those behind it (2 x 5 + 2 x 5)."""
    real = torch_loop.classification_metrics
    script = iter([0.1, 0.9, 0.3, 0.2, 0.8, 0.4])

    def scripted(y: np.ndarray, p: np.ndarray, classes: list[str]) -> dict[str, Any]:
        m: dict[str, Any] = real(y, p, classes)
        m["macro_f1"] = next(script)
        return m

    monkeypatch.setattr(torch_loop, "classification_metrics", scripted)
    cfg = _cfg(split, epochs=3, crt_epochs=3, monitor="val_macro_f1", patience=5)
    s = run_training(cfg, tmp_path / "run")
    assert s["selection"]["crt"]["stage1_epoch"] == 2 and s["best_epoch"] == 5
    assert s["selection"]["steps"] == 2 * 5 + 2 * 5 and s["selection"]["steps_total"] == 30


def test_crt_is_deterministic_in_memory_and_streamed(split: Path, tmp_path: Path) -> None:
    """Same seed, same weights bit for bit, whether the images are held in memory or
    streamed (which draws batch indices ahead of use)."""
    for mode in ("memory", "stream"):
        cfg = _cfg(split, epochs=1, crt_epochs=2, backbone_lr_mult=0.5, data_mode=mode)
        run_training(cfg, tmp_path / mode)
    a, b = _state(tmp_path / "memory"), _state(tmp_path / "stream")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = _history(tmp_path / "memory")  # cRT trains no backbone
    assert [float(h["backbone_lr"]) for h in history] == [2.5e-4, 0.0, 0.0]
    run_training(_cfg(split, epochs=1, crt_epochs=2, backbone_lr_mult=0.5, seed=1),
                 tmp_path / "other")  # fmt: skip
    assert not torch.equal(_state(tmp_path / "other")["fc.weight"], a["fc.weight"])


def test_freeze_and_crt_run_with_an_ensemble(split: Path, tmp_path: Path) -> None:
    s = run_training(_cfg(split, ensemble=2, crt_epochs=1, freeze="backbone"),
                     tmp_path / "run")  # fmt: skip
    assert s["best_epoch"] == [3, 3] and s["selection"]["crt"]["stage1_epoch"] == [2, 2]


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"freeze": "head"}, "freeze='head' is not one of none, backbone"),
        ({"freeze": None}, "freeze must be a name"),
        ({"backbone_lr_mult": 0}, "backbone_lr_mult must be a finite number > 0, got 0"),
        ({"backbone_lr_mult": -0.1}, "backbone_lr_mult must be a finite number > 0"),
        ({"backbone_lr_mult": math.nan}, "backbone_lr_mult must be a finite number > 0"),
        ({"backbone_lr_mult": math.inf}, "backbone_lr_mult must be a finite number > 0"),
        ({"backbone_lr_mult": "fast"}, "backbone_lr_mult must be a finite number > 0"),
        ({"backbone_lr_mult": True}, "backbone_lr_mult must be a finite number > 0"),
        ({"crt_epochs": -1}, "crt_epochs must be an integer >= 0"),
        ({"crt_epochs": 1.5}, "crt_epochs must be an integer >= 0"),
        ({"crt_epochs": True}, "crt_epochs must be an integer >= 0"),
        ({"freeze": "backbone", "backbone_lr_mult": 0.1},
         "backbone_lr_mult=0.1 has no effect with freeze=backbone"),
        ({"model": "linear", "crt_epochs": 2}, "model linear .* crt_epochs=2 is for CNNs"),
        ({"model": "linear", "freeze": "backbone"}, "freeze='backbone' is for CNNs"),
    ],
)  # fmt: skip
def test_bad_values_are_one_clear_error_naming_the_setting(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict({"data": "x", **settings})


def test_the_settings_are_part_of_the_fingerprint() -> None:
    base = RunConfig()
    prints = {base.fingerprint()}
    for kw in ({"freeze": "backbone"}, {"backbone_lr_mult": 0.1}, {"crt_epochs": 5}):
        prints.add(RunConfig.from_dict(kw).fingerprint())
    assert len(prints) == 4


def test_a_bad_setting_on_the_command_line(split: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from imgbalance.cli import app

    args = ["train", str(split), "--out", str(tmp_path / "run"), "--set", "freeze=all"]
    r = CliRunner().invoke(app, args, terminal_width=200)
    assert r.exit_code == 1 and r.output.count("Error:") == 1
    message = " ".join(r.output.split())
    assert "freeze='all' is not one of none, backbone" in message
    assert "--set freeze=backbone" in message
    assert not (tmp_path / "run").exists()


def test_the_new_settings_at_their_defaults_keep_every_runs_fingerprint() -> None:
    # the fingerprint of a default run before freeze, backbone_lr_mult and crt_epochs
    # existed: finished grids must stay finished when imgbalance learns a setting
    assert RunConfig().fingerprint() == "cb4942525084"
    assert RunConfig(model="resnet18", loss="focal", seed=3).fingerprint() == "f53722fe2741"
    for change in ({"freeze": "backbone"}, {"backbone_lr_mult": 0.1}, {"crt_epochs": 2}):
        assert RunConfig(**change).fingerprint() != "cb4942525084", change


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"mixing": "mixup", "mixing_alpha": 0}, r"mixing_alpha must be > 0 with mixing mixup"),
        ({"model": "linear", "pretrained": "/no/such.pth"}, r"no backbone to load weights into"),
    ],
)
def test_settings_that_would_fail_later_are_refused_by_name(
    settings: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        RunConfig.from_dict({"data": "splits", **settings}).validate()


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("bogus", "device must be auto, cpu, cuda, cuda:N or mps, got 'bogus'"),
        ("cuda:7", r"device cuda:7 was asked for, and torch sees \d+ CUDA device\(s\)"),
    ],
)
def test_a_device_this_machine_lacks_is_a_clear_error_not_torchs(name: str, says: str) -> None:
    from imgbalance.experiments.torch_eval import pick_device

    with pytest.raises(ConfigError, match=says):
        pick_device(name)
    assert pick_device("cpu").type == "cpu"
