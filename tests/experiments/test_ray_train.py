"""One run trained across Ray Train workers (DDP, CPU, a local Ray instance) writes the run
folder a local run writes, with the same steps and close metrics."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgbalance.errors import ConfigError
from imgbalance.experiments import run_training

from imgtools import differing_run_files

torch = pytest.importorskip("torch", reason="training needs the torch extra")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="the Ray backend needs the ray extra")
    pytest.importorskip("ray.train", reason="training across workers needs ray[train]")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    assert not ray.is_initialized()


def _settings(data: Path, **kw: object) -> dict[str, Any]:
    # 35 training images, batch 7: five global batches a pass, shares of 4 and 3 images on
    # two workers (no short last batch to drop); 8 validation images: a fixed budget (no
    # selection on noise), so both runs test the same epoch
    base = {"data": str(data), "image_size": 16, "epochs": 3, "batch_size": 7, "seed": 0,
            "sampler": "class-balanced", "augment": "none"}  # fmt: skip
    return {**base, **kw}


def _probabilities(run: Path) -> np.ndarray:
    with (run / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    cols = [c for c in rows[0] if c.startswith("p:")]
    return np.array([[float(r[c]) for c in cols] for r in rows])


@pytest.mark.slow
def test_a_run_across_two_workers_matches_one_process(
    local_ray: Any, split_tree: Path, tmp_path: Path
) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each Ray Train worker (cpus_per_worker 1) computes with
    try:
        local = run_training(_settings(split_tree), tmp_path / "local")
    finally:
        torch.set_num_threads(threads)
    lines: list[str] = []
    one = run_training(_settings(split_tree), tmp_path / "one", backend="ray",
                       resources={"workers": 1})  # fmt: skip
    two = run_training(_settings(split_tree), tmp_path / "two", backend="ray",
                       resources={"workers": 2}, log=lines.append)  # fmt: skip
    names = {p.name for p in (tmp_path / "local").iterdir()}
    assert names == {p.name for p in (tmp_path / "two").iterdir()}  # no Ray leftovers
    assert names == {p.name for p in (tmp_path / "one").iterdir()}
    assert two["device"] == "cpu x 2 (Ray Train)" and local["device"] == "cpu"
    assert any("2 Ray Train worker(s)" in m for m in lines)
    assert any(m.startswith("epoch 3/3 loss") for m in lines)  # rank 0's log, replayed

    # one worker is the one-process loop, bit for bit
    assert one["device"] == "cpu x 1 (Ray Train)"
    assert not differing_run_files(tmp_path / "one", tmp_path / "local")
    # two workers: the same global batches and steps, so the same schedule...
    for key in ("best_epoch", "epochs_run", "selection"):
        assert two[key] == local[key], key
    hist = [list(csv.DictReader((tmp_path / r / "history.csv").open())) for r in ("local", "two")]
    assert [h["steps"] for h in hist[0]] == [h["steps"] for h in hist[1]] == ["5", "10", "15"]
    # ...and close, not equal, models: BatchNorm normalises each worker's share (4 or 3
    # images) instead of the batch of 7, and DDP averages the two shares' gradients equally
    p_local, p_two = _probabilities(tmp_path / "local"), _probabilities(tmp_path / "two")
    assert p_local.shape == p_two.shape == (7, 3)
    assert np.abs(p_local - p_two).max() < 0.05
    for key in ("accuracy", "macro_f1", "balanced_accuracy"):
        assert abs(two["final_metrics"][key] - local["final_metrics"][key]) <= 1 / 7 + 1e-9
    on_disk = json.loads((tmp_path / "two" / "experiment_summary.json").read_text())
    assert on_disk["status"] == "completed"


@pytest.mark.slow
def test_crt_across_two_workers(local_ray: Any, split_tree: Path, tmp_path: Path) -> None:
    """Classifier re-training on a frozen backbone across two workers: the second stage
    wraps the model again after freezing (DDP then averages only the head's gradients),
    takes the same global class-balanced batches, and ends close to one process."""
    settings = _settings(split_tree, crt_epochs=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = run_training(settings, tmp_path / "local")
    finally:
        torch.set_num_threads(threads)
    run_training(settings, tmp_path / "one", backend="ray", resources={"workers": 1})
    for name in ("predictions.csv", "val_predictions.csv"):  # one worker: the local run
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    timed = [list(csv.DictReader((tmp_path / r / "history.csv").open())) for r in ("local", "one")]
    for row in (*timed[0], *timed[1]):
        row.pop("seconds")
    assert timed[0] == timed[1]  # both stages, every number but the seconds
    two = run_training(settings, tmp_path / "two", backend="ray", resources={"workers": 2})
    assert two["selection"] == local["selection"]  # stage, epochs, steps, selected epoch
    assert two["selection"]["stage"] == "crt" and two["selection"]["crt"]["epochs"] == 2
    hist = [list(csv.DictReader((tmp_path / r / "history.csv").open())) for r in ("local", "two")]
    assert [h["steps"] for h in hist[0]] == [h["steps"] for h in hist[1]]
    assert len(hist[1]) == 3 + 2  # both stages, every epoch
    # close: the per-share BatchNorm of the first stage (see the test above) is carried
    # into the frozen backbone, then the head trains on it (0.05 measured at most)
    p_local, p_two = _probabilities(tmp_path / "local"), _probabilities(tmp_path / "two")
    assert np.abs(p_local - p_two).max() < 0.1
    for key in ("accuracy", "macro_f1", "balanced_accuracy"):
        assert abs(two["final_metrics"][key] - local["final_metrics"][key]) <= 1 / 7 + 1e-9


def test_backend_settings_are_checked_before_any_work(split_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="resources are for backend ray"):
        run_training(_settings(split_tree), out, resources={"workers": 2})
    with pytest.raises(ConfigError, match="backend must be local or ray"):
        run_training(_settings(split_tree), out, backend="dask")
    with pytest.raises(ConfigError, match="model linear runs here"):
        run_training(_settings(split_tree, model="linear", sampler="none"), out, backend="ray")
    assert not out.exists()


def test_resources_are_checked() -> None:
    from imgbalance.experiments.ray_train import TrainResources

    assert TrainResources.from_dict({"workers": 2, "gpus_per_worker": 1}).gpus_per_worker == 1
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['gpus'\]"):
        TrainResources.from_dict({"gpus": 1})
    with pytest.raises(ConfigError, match="workers must be an integer >= 1"):
        TrainResources.from_dict({"workers": 0})
    with pytest.raises(ConfigError, match="gpus_per_worker must be a number >= 0"):
        TrainResources.from_dict({"gpus_per_worker": -1})
