"""A training run keeps the memory it frees for its next step (glibc only): large
blocks come from the heap instead of a fresh mapping each, the defaults come back when
the run ends, and the run's files are the same bytes either way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgbalance import _malloc
from imgbalance.experiments import RunConfig, run_training

pytest.importorskip("torch", reason="the torch extra")

if _malloc.mmapped_blocks() is None:  # pragma: no cover - macOS, musl
    pytest.skip("glibc's malloc is what this setting changes", allow_module_level=True)

#: well above glibc's largest mmap threshold (32 MiB)
BIG = 64 * 2**20


def _mapped_while_held() -> bool:
    """Whether a 64 MiB block gets its own mapping (what every training step paid for)."""
    before = _malloc.mmapped_blocks()
    block = np.empty(BIG, dtype=np.uint8)
    mapped = _malloc.mmapped_blocks() != before
    del block
    return mapped


def test_large_blocks_come_from_the_heap_within_and_are_mapped_again_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("IMGBALANCE_MALLOC", raising=False)
    assert _mapped_while_held()  # glibc's default
    with _malloc.keep_freed_memory() as took:
        assert took
        assert not _mapped_while_held()
        with _malloc.keep_freed_memory():
            assert not _mapped_while_held()
        assert not _mapped_while_held()  # an inner block's end does not end the outer one
    assert _mapped_while_held()


def test_imgbalance_malloc_system_leaves_malloc_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGBALANCE_MALLOC", "system")
    with _malloc.keep_freed_memory() as took:
        assert not took
        assert _mapped_while_held()


def test_a_run_is_the_same_bytes_with_the_system_allocator(
    split_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks reused from the heap hold the last step's bytes, not zeros: a read of
    memory never written would show here as a different model."""
    monkeypatch.setenv("IMGBALANCE_CACHE_DIR", str(tmp_path / "cache"))
    cfg = RunConfig.from_dict({"data": str(split_tree), "image_size": 16, "epochs": 2,
                               "batch_size": 8, "seed": 5})  # fmt: skip
    run_training(cfg, tmp_path / "kept")
    monkeypatch.setenv("IMGBALANCE_MALLOC", "system")
    run_training(cfg, tmp_path / "system")
    for name in ("predictions.csv", "val_predictions.csv", "test_metrics.csv"):
        assert (tmp_path / "kept" / name).read_bytes() == (tmp_path / "system" / name).read_bytes()


def test_training_and_prediction_hold_it_and_give_it_back(
    split_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgbalance.experiments import predict as predict_mod
    from imgbalance.experiments import torch_train

    monkeypatch.delenv("IMGBALANCE_MALLOC", raising=False)
    seen: list[bool] = []
    real_member, real_proba = torch_train._train_member, predict_mod.probability_rows

    def member(*args: object, **kwargs: object) -> object:
        seen.append(_mapped_while_held())
        return real_member(*args, **kwargs)  # type: ignore[arg-type]

    def proba(*args: object, **kwargs: object) -> object:
        seen.append(_mapped_while_held())
        return real_proba(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch_train, "_train_member", member)
    monkeypatch.setattr(predict_mod, "probability_rows", proba)
    cfg = RunConfig.from_dict({"data": str(split_tree), "image_size": 16, "epochs": 1,
                               "batch_size": 8, "seed": 5})  # fmt: skip
    run_training(cfg, tmp_path / "run")
    image = next((split_tree / "test").rglob("*.png"))
    predict_mod.load_run(tmp_path / "run").predict([str(image)])
    assert seen == [False, False]  # within the run and within prediction: from the heap
    assert _mapped_while_held()  # and glibc's default after each
