"""A training run keeps the memory it frees for its next step (glibc only): large
blocks come from the heap instead of a fresh mapping each, the defaults come back when
the run ends, and the run's files are the same bytes either way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgbalance import _malloc
from imgbalance.experiments import RunConfig, run_training

from imgtools import differing_run_files

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
    assert not differing_run_files(tmp_path / "kept", tmp_path / "system")


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


_PROBE = """
import ctypes, json, sys
from imgbalance import _malloc
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def mapped(size):
    seen = []
    for _ in range(3):
        before = _malloc.mmapped_blocks()
        p = libc.malloc(size)
        seen.append(_malloc.mmapped_blocks() != before)
        libc.free(p)
    return seen
took = None
if sys.argv[1] == "enter":
    with _malloc.keep_freed_memory() as took:
        pass
print(json.dumps({"took": took, "4MiB": mapped(4 << 20), "64MiB": mapped(64 << 20)}))
"""


@pytest.mark.parametrize("tunables", ["", "glibc.malloc.mmap_max=0"])
def test_after_the_block_malloc_behaves_as_if_it_had_never_been_entered(tunables: str) -> None:
    """Any mallopt turns glibc's dynamic mmap threshold off for good: what comes back must
    not be a fixed 128 KiB one that maps (and faults in) every larger block from then on.
    A user's own settings of the same knobs are left alone."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "IMGBALANCE_MALLOC"}
    env["GLIBC_TUNABLES"] = tunables

    def probe(arg: str) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-c", _PROBE, arg], env=env, check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        return json.loads(out)

    never, after = probe("never"), probe("enter")
    assert after["took"] is not bool(tunables)
    assert after["4MiB"].count(True) <= never["4MiB"].count(True), (never, after)
    assert not any(after["4MiB"][1:])  # reused from the heap, as glibc's own threshold does
    if tunables:  # the user's mmap_max=0: nothing is ever mapped, before or after
        assert not any(never["64MiB"]) and not any(after["64MiB"])
    else:
        assert all(after["64MiB"])  # above the ceiling: mapped, and given back when freed
