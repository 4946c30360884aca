"""The streaming data path: the same model as the in-memory path on a set that fits both
ways, an undecodable training image left out and counted (never a crash mid-epoch), and
the memory decision made from real numbers before any image is decoded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgbalance.errors import ImgBalanceError
from imgbalance.experiments import RunConfig, run_training

from imgtools import differing_run_files

torch = pytest.importorskip("torch", reason="the torch extra")

from imgbalance.torch.models import create_model  # noqa: E402
from imgbalance.torch.stream import (  # noqa: E402
    MEASURE_MAX,
    choose_data_mode,
    layer_outputs,
    training_memory,
)


def _cfg(data: Path, **kw: object) -> RunConfig:
    base = {"data": str(data), "image_size": 16, "epochs": 2, "batch_size": 8, "seed": 3}
    return RunConfig.from_dict({**base, **kw})


@pytest.mark.parametrize("extra", [{}, {"ensemble": 2, "sampler": "class-balanced"}])
def test_streaming_gives_the_in_memory_model_bit_for_bit(
    split_tree: Path, tmp_path: Path, extra: dict[str, object]
) -> None:
    a = run_training(_cfg(split_tree, data_mode="memory", **extra), tmp_path / "memory")
    b = run_training(_cfg(split_tree, data_mode="stream", **extra), tmp_path / "stream")
    assert a["data"]["mode"] == "memory" and b["data"]["mode"] == "stream"
    assert a["fingerprint"] == b["fingerprint"]
    assert not differing_run_files(tmp_path / "memory", tmp_path / "stream")


@pytest.mark.parametrize("mode", ["stream", "memory"])
def test_an_undecodable_training_image_is_left_out_and_counted(
    split_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """In both data modes (memory mode, which auto picks for a small set, stopped the run
    with "cannot be decoded" where streaming left the image out)."""
    from imgbalance.experiments import torch_train

    bad = split_tree / "train" / "blue" / "blue 0.png"

    def truncate_then_choose(*args: object, **kw: object) -> tuple[str, str]:
        # the file breaks after the split was scanned, as a disk or a copy can break it
        bad.write_bytes(bad.read_bytes()[:60])
        return choose_data_mode(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(torch_train, "choose_data_mode", truncate_then_choose)
    summary = run_training(_cfg(split_tree, data_mode=mode), tmp_path / "run")
    assert summary["data"]["mode"] == mode and summary["data"]["skipped_images"] == 1
    assert summary["data"]["skipped"][0]["path"].endswith("blue 0.png")
    on_disk = json.loads((tmp_path / "run" / "experiment_summary.json").read_text())
    assert on_disk["data"]["skipped_images"] == 1


def test_the_memory_decision_uses_the_numbers() -> None:
    gib = 2**30
    assert choose_data_mode("auto", 1000, 64, gib // 10, available=8 * gib)[0] == "memory"
    mode, why = choose_data_mode("auto", 50_000, 224, gib // 2, available=8 * gib)
    assert mode == "stream" and "7.01 GiB decoded" in why
    with pytest.raises(ImgBalanceError, match="data_mode=memory does not fit"):
        choose_data_mode("memory", 50_000, 224, gib // 2, available=8 * gib)
    with pytest.raises(ImgBalanceError, match=r"cannot train here.*image_size"):
        choose_data_mode("stream", 10, 2400, 30 * gib, available=24 * gib)
    with pytest.raises(ImgBalanceError, match="data_mode must be one of"):
        choose_data_mode("disk", 10, 16, 0, available=gib)


def test_training_memory_grows_with_the_image_and_the_batch() -> None:
    model = create_model("small-cnn", 3)
    small = training_memory(model, 64, 32)
    assert training_memory(model, 128, 32) > 3.5 * small - 4 * 4 * 10**6
    assert training_memory(model, 64, 64) > 1.9 * small - 4 * 4 * 10**6
    # small-cnn at 2400 px, batch 32: the first block's output alone is 11.8 GB
    assert training_memory(model, 2400, 32) > 20 * 2**30


def test_a_huge_image_size_is_estimated_without_allocating_it() -> None:
    """image_size=100000 ran a forward pass at that size to measure it: a 120 GB
    allocation and a RuntimeError traceback. Above MEASURE_MAX the outputs are measured at
    two sizes and extrapolated; the estimate agrees with a direct measurement."""
    import resource

    model = create_model("small-cnn", 3)
    size = MEASURE_MAX + 256
    measured = layer_outputs(model, size)
    params = sum(p.numel() for p in model.parameters())
    estimated = (training_memory(model, size, 1) / 4 - 4 * params - 6 * size * size) / 2
    assert abs(estimated - measured) / measured < 0.02
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert training_memory(model, 100_000, 32) > 100_000 * 2**30  # about 230 TiB
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 2**20  # KiB: < 1 GiB


@pytest.mark.parametrize("size", [1, 3])
def test_an_image_size_too_small_for_the_model_names_the_smallest(size: int) -> None:
    """image_size=1 was "Output size is too small", a traceback from inside training."""
    with pytest.raises(
        ImgBalanceError, match=r"image_size=\d+ is too small .* smallest size it takes is 16 px"
    ):
        layer_outputs(create_model("small-cnn", 3), size)
    assert layer_outputs(create_model("small-cnn", 3), 16) > 0


def test_an_image_size_that_cannot_fit_fails_before_decoding(
    split_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgbalance.experiments import torch_train

    monkeypatch.setattr(torch_train, "choose_data_mode",
                        lambda *a, **k: choose_data_mode(*a, **k, available=4 * 2**30))  # fmt: skip
    monkeypatch.setattr(torch_train, "cached_pixels", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(ImgBalanceError, match="cannot train here"):
        run_training(_cfg(split_tree, image_size=1024, batch_size=32), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("mode", ["stream", "memory"])
def test_a_pre_split_trees_unreadable_image_is_counted_or_named(
    split_tree: Path, tmp_path: Path, mode: str
) -> None:
    """The scan of a train/ val/ test/ tree knows which files it cannot read: a training
    image is left out and counted (it vanished without a trace), a scored one is an
    error naming it, before any training."""
    bad = split_tree / "train" / "blue" / "blue 0.png"
    bad.write_bytes(bad.read_bytes()[:60])
    summary = run_training(_cfg(split_tree, data_mode=mode), tmp_path / "run")
    assert summary["data"]["skipped_images"] == 1
    assert summary["data"]["skipped"][0]["path"].endswith("blue 0.png")
    (split_tree / "test" / "red").mkdir(exist_ok=True)
    (split_tree / "test" / "red" / "notes.png").write_text("not an image")
    with pytest.raises(ImgBalanceError, match=r'notes\.png" in the test split cannot be read'):
        run_training(_cfg(split_tree, data_mode=mode), tmp_path / "run2")
    assert not (tmp_path / "run2" / "history.csv").exists()
