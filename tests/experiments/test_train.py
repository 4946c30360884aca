"""End-to-end training runs on tiny generated images (CPU, seconds each)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import imgbalance
from imgbalance.errors import ImgBalanceError
from imgbalance.experiments import RunConfig, run_training

from imgtools import COLOURS, colour_image

torch = pytest.importorskip("torch", reason="training needs the torch extra")

from imgbalance.experiments import torch_train as torch_loop  # noqa: E402

RUN_FILES = {
    "config.json",
    "dataset_statistics.json",
    "class_mapping.json",
    "best_model.pt",
    "history.csv",
    "test_metrics.csv",
    "confusion_matrix.png",
    "confidence_analysis.csv",
    "confidence_distribution.png",
    "balancing_analysis.json",
    "experiment_summary.json",
    "environment.json",
    "predictions.csv",
    "val_predictions.csv",
    "inference.json",
}


def _cfg(data: Path, **kw: object) -> RunConfig:
    base = {"data": str(data), "image_size": 16, "epochs": 3, "batch_size": 8, "seed": 0}
    return RunConfig.from_dict({**base, **kw})


def test_run_writes_every_file_with_real_values(split_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = run_training(
        _cfg(split_tree, technique="smote", loss="focal"), out, balanced_cache=tmp_path / "bal"
    )
    assert {p.name for p in out.iterdir()} == RUN_FILES
    on_disk = json.loads((out / "experiment_summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    m = on_disk["final_metrics"]
    assert m["n"] == 7 and 0 <= m["macro_f1"] <= 1 and m["per_class"]["red"]["support"] == 0
    assert on_disk["train_size_before"] == 35 and on_disk["train_size_after"] == 72
    assert on_disk["best_epoch"] in (1, 2, 3) and on_disk["training_time_s"] > 0
    posthoc = {"logit_adjustment", "threshold_moving", "temperature", "prior_correction"}
    assert set(on_disk["posthoc"]) == posthoc
    assert on_disk["temperature"] > 0 and len(on_disk["prior_correction_weights"]) == 3
    stats = json.loads((out / "dataset_statistics.json").read_text())
    assert stats["test"]["counts"] == {"blue": 4, "green": 3, "red": 0}
    assert stats["train_after_balancing"]["counts"] == {"blue": 24, "green": 24, "red": 24}
    assert stats["train"]["imbalance_ratio"] == pytest.approx(8.0)
    bal = json.loads((out / "balancing_analysis.json").read_text())
    assert bal["synthetic"] == 37 and bal["counts_before"]["red"] == 3
    history = list(csv.DictReader((out / "history.csv").open()))
    assert len(history) == on_disk["epochs_run"] and float(history[0]["train_loss"]) > 0
    rows = list(csv.DictReader((out / "test_metrics.csv").open()))
    assert {r["variant"] for r in rows} == {"model", *posthoc}
    assert {"nll", "brier", "ece"} <= {r["class"] for r in rows}
    predictions = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(predictions) == 7 and predictions[0]["path"].startswith("blue/")
    config = json.loads((out / "config.json").read_text())
    assert config["class_weights"] == "none" and config["image_size"] == 16
    env = json.loads((out / "environment.json").read_text())
    assert env["packages"]["torch"] and env["hardware"]["cpus"]
    assert json.loads((out / "class_mapping.json").read_text()) == {"blue": 0, "green": 1, "red": 2}
    # a second run of the same technique reuses the rendered training set
    before = sorted(p.name for p in (tmp_path / "bal").iterdir())
    run_training(_cfg(split_tree, technique="smote", epochs=1), tmp_path / "again",
                 balanced_cache=tmp_path / "bal")  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "bal").iterdir()) == before


def _script_val_macro_f1(monkeypatch: pytest.MonkeyPatch, scores: list[float]) -> None:
    """The training loop's validation macro-F1 becomes ``scores``, one per epoch, in order."""
    real = torch_loop.classification_metrics
    script = iter(scores)

    def scripted(y: np.ndarray, p: np.ndarray, classes: list[str]) -> dict:
        m = real(y, p, classes)
        m["macro_f1"] = next(script)
        return m

    monkeypatch.setattr(torch_loop, "classification_metrics", scripted)


def test_best_checkpoint_not_last_is_evaluated(
    split_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation scores are scripted so epoch 2 is best: a 4-epoch run must test epoch 2's
    weights, which (training being deterministic) are a 2-epoch run's final weights."""
    _script_val_macro_f1(monkeypatch, [0.1, 0.9, 0.2, 0.3, 0.1, 0.9])
    cfg = {"patience": 10, "monitor": "val_macro_f1"}
    a = run_training(_cfg(split_tree, epochs=4, **cfg), tmp_path / "a")
    b = run_training(_cfg(split_tree, epochs=2, **cfg), tmp_path / "b")
    assert a["best_epoch"] == 2 and a["epochs_run"] == 4 and b["best_epoch"] == 2
    state_a = torch.load(tmp_path / "a" / "best_model.pt", weights_only=False)["members"][0]
    state_b = torch.load(tmp_path / "b" / "best_model.pt", weights_only=False)["members"][0]
    for k in state_a:
        torch.testing.assert_close(state_a[k], state_b[k])
    assert a["final_metrics"] == b["final_metrics"]


def test_drw_takes_its_model_from_the_reweighted_phase(
    split_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation peaks at epoch 1, before re-weighting starts at epoch 3: the model must
    still come from epoch 3 or later, and patience counts from there."""
    _script_val_macro_f1(monkeypatch, [0.9, 0.8, 0.2, 0.3, 0.1, 0.1, 0.5])
    cfg = _cfg(split_tree, epochs=8, patience=2, drw_epoch=3, monitor="val_macro_f1")
    s = run_training(cfg, tmp_path / "run")
    assert s["best_epoch"] == 4 and s["epochs_run"] == 6
    with pytest.raises(ImgBalanceError, match=r"drw_epoch must be between 1 and epochs \(8\)"):
        _cfg(split_tree, epochs=8, drw_epoch=9).validate()


def test_same_seed_same_metrics(split_tree: Path, tmp_path: Path) -> None:
    runs = [run_training(_cfg(split_tree, epochs=2, mixing="mixup"), tmp_path / n) for n in "ab"]
    assert runs[0]["final_metrics"] == runs[1]["final_metrics"]
    # the checkpoints too, byte for byte (they are written through different temporary names)
    a, b = ((tmp_path / n / "best_model.pt").read_bytes() for n in "ab")
    assert a == b
    h = [(tmp_path / n / "history.csv").read_text().splitlines() for n in "ab"]
    assert [r.split(",")[:3] for r in h[0]] == [r.split(",")[:3] for r in h[1]]
    other = run_training(_cfg(split_tree, epochs=2, mixing="mixup", seed=1), tmp_path / "c")
    assert (
        other["val_metrics"]["confusion_matrix"] != runs[0]["val_metrics"]["confusion_matrix"]
        or other["final_metrics"]["ece"] != runs[0]["final_metrics"]["ece"]
    )


@pytest.mark.parametrize(
    "settings",
    [
        {"loss": "balanced-softmax"},
        {"loss": "weighted-ce", "class_weights": "effective", "beta": 0.9},
        {"loss": "ce", "drw_epoch": 2},
        {"sampler": "class-balanced", "augment": "none"},
        {"sampler": "sqrt", "mixing": "mixup-cutmix"},
        {"ensemble": 2},
        {"technique": "random-under"},
    ],
    ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()),
)
def test_training_time_techniques_run(split_tree: Path, tmp_path: Path, settings: dict) -> None:
    s = run_training(_cfg(split_tree, epochs=2, **settings), tmp_path / "run",
                     balanced_cache=tmp_path / "bal")  # fmt: skip
    assert 0 <= s["final_metrics"]["macro_f1"] <= 1
    if settings.get("ensemble"):
        assert len(s["best_epoch"]) == 2
        ckpt = torch.load(tmp_path / "run" / "best_model.pt", weights_only=False)
        assert len(ckpt["members"]) == 2
    if settings.get("technique") == "random-under":
        assert s["train_size_after"] == 9


def _data(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for (name, colour), n in zip(COLOURS.items(), (30, 12, 6), strict=True):
        for i in range(n):
            p = root / name / f"{i}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            colour_image(rng, colour).save(p, quality=95)
    return root


def test_linear_on_a_split_folder_from_the_cli(tmp_path: Path) -> None:
    data = _data(tmp_path / "data")
    result = imgbalance.split(data, random_state=0)
    imgbalance.write_split(result, tmp_path / "split")
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "imgbalance", "train", str(tmp_path / "split"), "--out", str(out),
         "--model", "linear", "--loss", "weighted-ce", "--set", "features=thumbnail:4"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "macro-F1" in proc.stdout
    summary = json.loads((out / "experiment_summary.json").read_text())
    assert summary["final_metrics"]["macro_f1"] > 0.8  # colours are easy for a linear model
    assert (out / "best_model.joblib").is_file()
    again = subprocess.run(
        [sys.executable, "-m", "imgbalance", "train", str(tmp_path / "split"), "--out", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_bad_settings_and_changed_files(tmp_path: Path) -> None:
    with pytest.raises(
        imgbalance.ImgBalanceError,
        match=r'Unknown loss "hinge".*Valid losses: balanced-softmax, ce, focal',
    ):
        RunConfig.from_dict({"loss": "hinge"})
    with pytest.raises(imgbalance.ImgBalanceError, match=r"Unknown run setting\(s\) \['lr_max'\]"):
        RunConfig.from_dict({"lr_max": 1})
    with pytest.raises(imgbalance.ImgBalanceError, match="supports losses ce and weighted-ce"):
        RunConfig.from_dict({"model": "linear", "loss": "focal"})
    data = _data(tmp_path / "data")
    imgbalance.write_split(imgbalance.split(data, random_state=0), tmp_path / "split")
    victim = next((data / "red").iterdir())
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(imgbalance.ImgBalanceError, match="changed or disappeared"):
        run_training(_cfg(tmp_path / "split", model="linear"), tmp_path / "run")
    with pytest.raises(imgbalance.ImgBalanceError, match="is not a split"):
        run_training(_cfg(data, model="linear"), tmp_path / "run2")


def test_a_run_never_writes_into_its_input(split_tree: Path) -> None:
    with pytest.raises(imgbalance.ImgBalanceError, match="never written to"):
        run_training(_cfg(split_tree, model="linear"), split_tree / "train" / "runs")
    with pytest.raises(imgbalance.ImgBalanceError, match="never written to"):
        run_training(_cfg(split_tree, model="linear"), split_tree / "run")


def test_the_selection_rule_is_validation_loss_unless_validation_is_too_small() -> None:
    rule, why = torch_loop.selection_rule("auto", np.repeat([0, 1, 2], 7), 3)
    assert rule == "val_balanced_loss" and "class-balanced validation loss" in why
    rule, why = torch_loop.selection_rule("auto", np.array([0] * 4 + [1] * 3 + [2]), 3)
    assert rule == "none" and "8 image(s)" in why and "fixed budget" in why
    rule, _ = torch_loop.selection_rule("auto", np.repeat([0, 1], 15), 3)  # class 2 missing
    assert rule == "none"
    assert torch_loop.selection_rule("val_macro_f1", np.array([0]), 3)[0] == "val_macro_f1"


def test_a_fixed_budget_runs_every_epoch_and_tests_the_last(
    split_tree: Path, tmp_path: Path
) -> None:
    # split_tree's validation split has 8 images: auto selects nothing
    s = run_training(_cfg(split_tree, epochs=4, patience=1), tmp_path / "run")
    assert s["selection"]["rule"] == "none" and "fixed budget" in s["selection"]["reason"]
    assert s["best_epoch"] == 4 and s["epochs_run"] == 4  # patience does not stop it
    history = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    assert s["selection"]["steps"] == s["selection"]["steps_total"] == int(history[-1]["steps"])
    # 35 training images, batches of 8: 5 steps an epoch (the last batch has 3)
    assert [int(h["steps"]) for h in history] == [5, 10, 15, 20]


def test_balanced_nll_by_hand() -> None:
    y = np.array([0, 0, 0, 1])
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.5, 0.5]])
    # class 0: -log 0.9 for each of its three; class 1: -log 0.5; each class counts once
    expected = (-np.log(0.9) - np.log(0.5)) / 2
    assert torch_loop.balanced_nll(y, p) == pytest.approx(expected)
    assert torch_loop.balanced_nll(y, p) > float(np.mean(-np.log([0.9, 0.9, 0.9, 0.5])))


def test_validation_loss_picks_the_epoch_of_the_lowest_validation_loss(
    split_tree: Path, tmp_path: Path
) -> None:
    s = run_training(_cfg(split_tree, epochs=5, patience=10, monitor="val_loss"), tmp_path / "r")
    history = list(csv.DictReader((tmp_path / "r" / "history.csv").open()))
    losses = [float(h["val_loss"]) for h in history]
    assert s["best_epoch"] == 1 + losses.index(min(losses))
    assert s["selection"]["rule"] == "val_loss"


def test_a_step_budget_gives_every_arm_the_same_optimiser_steps(
    split_tree: Path, tmp_path: Path
) -> None:
    """Oversampling makes an epoch 2-3 times longer; a budget in steps does not."""
    runs = {
        name: run_training(
            _cfg(split_tree, epochs=3, max_steps=12, **kw), tmp_path / name,
            balanced_cache=tmp_path / "bal",
        )
        for name, kw in (("plain", {}), ("over", {"technique": "random-over"}))
    }  # fmt: skip
    assert runs["over"]["train_size_after"] > 2 * runs["plain"]["train_size_after"]
    for s in runs.values():
        assert s["selection"]["steps_total"] == 12 and s["selection"]["max_steps"] == 12
    unbudgeted = run_training(_cfg(split_tree, epochs=3, technique="random-over"),
                              tmp_path / "long", balanced_cache=tmp_path / "bal")  # fmt: skip
    assert unbudgeted["selection"]["steps_total"] > 12
    with pytest.raises(ImgBalanceError, match="max_steps must be an integer >= 1"):
        _cfg(split_tree, max_steps=0)


@pytest.mark.parametrize(("key", "value"), [("lr", "abc"), ("weight_decay", -1.0),
                                            ("tau", True), ("beta", None)])  # fmt: skip
def test_numeric_settings_are_checked_up_front(split_tree: Path, key: str, value: object) -> None:
    with pytest.raises(ImgBalanceError, match=f"{key} must be a number >= 0, got"):
        _cfg(split_tree, **{key: value})


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("image_size", -5, "image_size must be an integer >= 1"),
        ("image_size", 0, "image_size must be an integer >= 1"),
        ("drw_epoch", "x", "drw_epoch must be an integer >= 1"),
        ("workers", "x", "workers must be an integer >= 1"),
        ("seed", "x", "seed must be an integer >= 0"),
        ("seed", -1, "seed must be an integer >= 0"),
        ("device", "tpu", "device must be auto, cpu, cuda, cuda:N or mps"),
        ("device", 3, "device must be a name"),
    ],
)
def test_integer_and_device_settings_are_checked_up_front(
    split_tree: Path, key: str, value: object, expected: str
) -> None:
    """Each was a traceback from deep in the run (or silently accepted) before."""
    with pytest.raises(ImgBalanceError, match=expected):
        _cfg(split_tree, **{key: value})
    for fine in ({"device": "cuda:1"}, {"seed": 0}, {"image_size": None}, {"workers": None}):
        _cfg(split_tree, **fine)
    assert RunConfig.from_dict({"data": split_tree}).data == str(split_tree)  # a Path is a path


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"sampler": ["x"]}, "sampler must be a name"),
        ({"mixing": {"a": 1}}, "mixing must be a name"),
        ({"class_weights": {"a": 1}}, "class_weights must be a name"),
        ({"technique": 3}, "technique must be a name"),
        ({"features": {"a": 1}}, "features must be a name"),
        ({"technique": "smote", "target": [1]}, "target must be auto, ratio:R"),
        ({"technique_params": [1]}, "technique_params must be a mapping"),
        ({"technique_params": 3}, "technique_params must be a mapping"),
        # the technique itself: each failed every run of its arm, one after another
        ({"technique": "smoet"}, 'technique smoet: Unknown method "smoet"'),
        (
            {"technique": "smote", "technique_params": {"k_neighbors": "abc"}},
            "smote: k_neighbors must be an integer >= 1, got 'abc'",
        ),
        (
            {"technique": "smote,enn", "technique_params": {"k": 3}},
            r"Parameter\(s\) \['k'\] are not accepted by smote, enn",
        ),
    ],
)
def test_settings_of_the_wrong_kind_are_refused(
    split_tree: Path, tmp_path: Path, settings: dict[str, object], expected: str
) -> None:
    """In a grid's arm these crashed each run (TypeError: unhashable type, AttributeError)
    or were accepted (technique_params: 3), or failed each run of the arm in turn (an
    unknown technique, a bad parameter); now one error before any run starts."""
    import yaml

    from imgbalance.experiments.grid import load_grid, plan_grid

    with pytest.raises(ImgBalanceError, match=expected):
        _cfg(split_tree, **settings)
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"data": str(split_tree), "seeds": [0], "models": ["linear"],
                                    "arms": {"bad": settings}}))  # fmt: skip
    with pytest.raises(ImgBalanceError, match=f'arm "bad" .*{expected}'):
        plan_grid(load_grid(grid))


def test_weights_are_checked_before_decoding_and_a_failed_run_leaves_no_folder(
    split_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision

    decoded: list[int] = []
    monkeypatch.setattr(torch_loop, "cached_pixels", lambda paths, size: decoded.append(1))
    out = tmp_path / "run"
    with pytest.raises(ImgBalanceError, match="neither a torchvision weights name"):
        run_training(_cfg(split_tree, model="resnet18", pretrained=str(tmp_path / "no.pth")), out)
    with pytest.raises(ImgBalanceError, match="small-cnn has no pretrained weights"):
        run_training(_cfg(split_tree, pretrained="DEFAULT"), out)
    assert not decoded and not out.exists()

    # weights that cannot be downloaded: the hint names the training option, not a feature
    def offline(*args: object, **kw: object) -> None:
        raise OSError("no network")

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    with pytest.raises(ImgBalanceError, match=r"--pretrained /path/to/resnet18-\w+\.pth") as e:
        run_training(_cfg(split_tree, model="resnet18", pretrained="DEFAULT"), out)
    assert "embedding:" not in str(e.value) and not out.exists()
    monkeypatch.undo()

    # a run that fails half-way removes what it wrote, so the retry is not blocked...
    def broken(*args: object, **kw: object) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(torch_loop, "train_torch", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_training(_cfg(split_tree), out)
    assert not out.exists()
    # ...but a folder that held something before keeps it
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError):
        run_training(_cfg(split_tree), out)
    assert (out / "notes.txt").read_text() == "mine"


def test_weights_of_another_shape_or_a_folder_are_clear_errors(
    split_tree: Path, tmp_path: Path
) -> None:
    """A resnet18 state dict with a 1-channel first layer was load_state_dict's
    RuntimeError traceback; a folder was "nor an existing file"; DEFAULT was listed
    twice among the weights names."""
    import torchvision

    state = torchvision.models.resnet18(num_classes=3).state_dict()
    state["conv1.weight"] = torch.randn(64, 1, 7, 7)
    torch.save(state, tmp_path / "gray.pth")
    out = tmp_path / "run"
    said = r"does not fit ResNet: 1 tensor\(s\) have another shape: conv1.weight \(64, 1, 7, 7\)"
    with pytest.raises(ImgBalanceError, match=said + r" \(the model's \(64, 3, 7, 7\)\)"):
        run_training(_cfg(split_tree, model="resnet18", pretrained=str(tmp_path / "gray.pth")), out)
    (tmp_path / "notes.pth").write_text("hello")  # was "(KeyError: 101)"
    with pytest.raises(
        ImgBalanceError, match=r"not a file torch.save wrote \(it starts with b'hell'"
    ):
        run_training(
            _cfg(split_tree, model="resnet18", pretrained=str(tmp_path / "notes.pth")), out
        )
    with pytest.raises(ImgBalanceError, match="are a folder; name the weights file in it"):
        run_training(_cfg(split_tree, model="resnet18", pretrained=str(tmp_path)), out)
    with pytest.raises(ImgBalanceError, match=r"\(DEFAULT, IMAGENET1K_V1\) nor an existing"):
        run_training(_cfg(split_tree, model="resnet18", pretrained="IMAGENET9"), out)
    assert not out.exists()


def test_a_cnn_checkpoint_on_a_full_disk_is_a_clear_error(
    split_tree: Path, small_disk: Path
) -> None:
    """torch's zip writer turned ENOSPC into a RuntimeError traceback ("unexpected pos");
    the checkpoint is now written as plain bytes, so the disk-full error names it."""
    from imgtools import run_cli

    out = small_disk / "run"
    r = run_cli("train", split_tree, "--out", out, "--set", "image_size=16",
                "--set", "epochs=1", "--set", "batch_size=8")  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "best_model.pt" in r.stderr and "the disk is full" in r.stderr
    assert not out.exists()  # the failed run's folder is gone: the retry is not blocked


def test_a_run_into_a_finished_runs_folder_removes_that_run_first(
    split_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train --overwrite over a finished run, interrupted: the old model, summary and
    exports stayed beside the new config.json, and predict served the old model as if
    it were the new run's. Now the earlier run's files go first (the user's stay)."""
    from imgbalance.experiments.runfiles import RUN_FILES as REMOVED

    out = tmp_path / "run"
    run_training(_cfg(split_tree, epochs=1), out)
    assert {p.name for p in out.iterdir()} <= set(REMOVED)  # all a run writes, a run removes
    (out / "model.onnx").write_bytes(b"an export of the old model")
    (out / "notes.txt").write_text("mine")

    def interrupted(*args: object, **kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(torch_loop, "cached_pixels", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_training(_cfg(split_tree, epochs=2), out)
    left = {p.name for p in out.iterdir()}
    assert "best_model.pt" not in left and "experiment_summary.json" not in left
    assert "model.onnx" not in left and "notes.txt" in left
    assert json.loads((out / "config.json").read_text())["epochs"] == 2  # the new run's
    with pytest.raises(ImgBalanceError, match="not a finished imgbalance run"):
        from imgbalance.experiments.predict import load_run

        load_run(out)


@pytest.mark.slow
def test_sigterm_stops_train_like_ctrl_c(split_tree: Path, tmp_path: Path) -> None:
    """SIGTERM (kill, a scheduler, a container runtime) ended train on the spot: no
    message, and a half-written run folder that blocked the retry. Now it stops as Ctrl-C
    does: one line, exit 143, no folder left."""
    import signal
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "imgbalance", "train", str(split_tree), "--out", str(out),
           "--epochs", "100000", "--set", "image_size=16", "--set", "patience=100000"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out / "config.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    text = err.decode(errors="replace")
    assert proc.returncode == 143, text[-2000:]
    assert "Stopped by SIGTERM" in " ".join(text.split()) and "Traceback" not in text
    assert not out.exists()
