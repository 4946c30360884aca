"""Decoded pixels on disk: the same bytes as decoding, keyed by content, bounded, and
never the reason a run fails; a grid's second run decodes nothing it already has."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from imgbalance.experiments import RunConfig, run_training

from imgtools import differing_run_files, rgb, save

torch = pytest.importorskip("torch", reason="the torch extra")

from imgbalance.torch import data as torch_data  # noqa: E402
from imgbalance.torch.pixel_cache import cached_pixels, pixel_set_key  # noqa: E402


def _files(root: Path, n: int, seed: int = 0) -> list[str]:
    paths = []
    for i in range(n):
        p = root / f"img {i}.png"
        save(rgb(seed + i, (20 + i, 14)), p)
        paths.append(str(p))
    return paths


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: str, size: int) -> str:
        raise AssertionError(f"decoded {path} although its pixels were cached")

    monkeypatch.setattr(torch_data, "pixels_of", refuse)


def _cached(root: Path) -> list[Path]:
    return sorted((root / "pixels").glob("*.npy"))


def test_hits_are_the_decoded_bytes_and_decode_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGBALANCE_CACHE_DIR", str(tmp_path / "cache"))
    paths = _files(tmp_path / "a", 5)
    decoded = torch_data.load_pixels(paths, 12)
    first = cached_pixels(paths, 12)
    np.testing.assert_array_equal(first, decoded)
    assert len(_cached(tmp_path / "cache")) == 1
    with monkeypatch.context() as m:
        _no_decoding(m)
        np.testing.assert_array_equal(cached_pixels(paths, 12), decoded)
        # the same content elsewhere (a split copied to another folder) is the same set
        copies = []
        for p in paths:
            q = tmp_path / "copy" / Path(p).name
            q.parent.mkdir(exist_ok=True)
            q.write_bytes(Path(p).read_bytes())
            copies.append(str(q))
        np.testing.assert_array_equal(cached_pixels(copies, 12), decoded)
    # another size, another order, or an edited file: another key, decoded again
    keys = {pixel_set_key(paths, 12), pixel_set_key(paths, 16), pixel_set_key(paths[::-1], 12)}
    assert len(keys) == 3
    save(rgb(99, (20, 14)), Path(paths[2]))
    np.testing.assert_array_equal(cached_pixels(paths, 12), torch_data.load_pixels(paths, 12))
    assert len(_cached(tmp_path / "cache")) == 2


def test_a_broken_cache_file_is_decoded_again_and_an_unwritable_cache_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGBALANCE_CACHE_DIR", str(tmp_path / "cache"))
    paths = _files(tmp_path / "a", 4)
    decoded = cached_pixels(paths, 10)
    (entry,) = _cached(tmp_path / "cache")
    entry.write_bytes(entry.read_bytes()[:100])  # cut short
    np.testing.assert_array_equal(cached_pixels(paths, 10), decoded)
    assert entry.stat().st_size > 100  # replaced by a whole one
    np.save(entry, np.zeros((4, 3, 9, 9), np.uint8))  # right name, wrong shape
    np.testing.assert_array_equal(cached_pixels(paths, 10), decoded)
    # a killed writer's temporary is removed once it is old; a fresh one may be in use
    old, fresh = (entry.with_name(f".{entry.name}.{pid}.abcd1234.tmp") for pid in (1, 2))
    old.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    entry.unlink()
    cached_pixels(paths, 10)
    assert not old.exists() and fresh.exists() and entry.is_file()
    # a cache folder that cannot be made (a file in its way): the pixels, no error
    (tmp_path / "blocked").write_text("")
    monkeypatch.setenv("IMGBALANCE_CACHE_DIR", str(tmp_path / "blocked"))
    np.testing.assert_array_equal(cached_pixels(paths, 10), decoded)


def test_the_bound_is_kept_and_zero_turns_the_cache_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGBALANCE_CACHE_DIR", str(tmp_path / "cache"))
    a, b = _files(tmp_path / "a", 3), _files(tmp_path / "b", 3, seed=50)
    one_set = 3 * 3 * 16 * 16 + 128  # pixels plus the .npy header
    monkeypatch.setenv("IMGBALANCE_PIXEL_CACHE_GB", str(1.5 * one_set / 2**30))
    cached_pixels(a, 16)
    cached_pixels(b, 16)
    (kept,) = _cached(tmp_path / "cache")  # the older set made room for the newer
    assert kept.name == f"{pixel_set_key(b, 16)}.npy"
    cached_pixels(_files(tmp_path / "c", 9, seed=90), 16)  # larger than the bound: not kept
    assert _cached(tmp_path / "cache") == [kept]
    monkeypatch.setenv("IMGBALANCE_PIXEL_CACHE_GB", "0")
    cached_pixels(_files(tmp_path / "d", 2, seed=7), 16)
    assert _cached(tmp_path / "cache") == [kept]
    monkeypatch.setenv("IMGBALANCE_PIXEL_CACHE_GB", "lots")  # unreadable: the default
    cached_pixels(a, 16)
    assert len(_cached(tmp_path / "cache")) == 2


def test_a_second_run_of_a_grid_decodes_nothing_and_gives_the_same_files(
    split_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGBALANCE_CACHE_DIR", str(tmp_path / "cache"))
    cfg = RunConfig.from_dict({"data": str(split_tree), "image_size": 16, "epochs": 2,
                               "batch_size": 8, "seed": 3, "data_mode": "memory"})  # fmt: skip
    run_training(cfg, tmp_path / "first")
    assert len(_cached(tmp_path / "cache")) == 3  # train, val and test
    with monkeypatch.context() as m:
        _no_decoding(m)
        run_training(cfg, tmp_path / "second")
    assert not differing_run_files(tmp_path / "first", tmp_path / "second")


def test_a_full_disk_under_the_cache_leaves_the_run_its_pixels_and_no_leftovers(
    small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real 400 KiB tmpfs: 40 images at 64 px (480 KiB of pixels) cannot be stored."""
    monkeypatch.setenv("IMGBALANCE_CACHE_DIR", str(small_disk / "cache"))
    paths = _files(tmp_path / "a", 40)
    np.testing.assert_array_equal(cached_pixels(paths, 64), torch_data.load_pixels(paths, 64))
    assert [p.name for p in (small_disk / "cache" / "pixels").iterdir()] == []


def _count_stream_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from imgbalance.torch import stream

    decoded: list[str] = []
    real = stream.pixels_of

    def counting(path: str, size: int) -> np.ndarray | str:
        decoded.append(path)
        return real(path, size)

    monkeypatch.setattr(stream, "pixels_of", counting)
    return decoded


def test_streaming_decodes_each_image_once_and_a_second_run_none(
    split_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streamed sets decoded every image again every epoch (and every run of a grid).
    Their pixels now fill a memory-mapped cache file as they are first decoded: later
    epochs and later runs read it, and the model is the same bit for bit."""
    monkeypatch.setenv("IMGBALANCE_CACHE_DIR", str(tmp_path / "cache"))
    base = {"data": str(split_tree), "image_size": 16, "epochs": 3, "batch_size": 8,
            "seed": 3, "patience": 10}  # fmt: skip
    stream_cfg = RunConfig.from_dict({**base, "data_mode": "stream"})
    with monkeypatch.context() as m:
        decoded = _count_stream_decodes(m)
        run_training(stream_cfg, tmp_path / "first")
    n = {s: sum(1 for _ in (split_tree / s).rglob("*.png")) for s in ("train", "val", "test")}
    times = {s: sum(f"/split/{s}/" in p for p in decoded) for s in n}
    assert times["val"] == n["val"] and times["test"] == n["test"]  # once, over 3 epochs
    # the training images once, but for the batches of epoch 2 drawn ahead (3 of 8 images)
    # before epoch 1's last batch was in
    assert n["train"] <= times["train"] <= n["train"] + 3 * 8 < 3 * n["train"]
    assert len(_cached(tmp_path / "cache")) == 3 and not list((tmp_path / "cache").rglob("*.tmp"))
    with monkeypatch.context() as m:
        decoded = _count_stream_decodes(m)
        run_training(stream_cfg, tmp_path / "second")
    assert decoded == []
    monkeypatch.setenv("IMGBALANCE_PIXEL_CACHE_GB", "0")
    run_training(stream_cfg, tmp_path / "uncached")
    run_training(RunConfig.from_dict({**base, "data_mode": "memory"}), tmp_path / "memory")
    for other in ("second", "uncached", "memory"):
        assert not differing_run_files(tmp_path / "first", tmp_path / other), other


def test_a_streamed_set_with_an_undecodable_image_or_no_room_is_not_cached(
    split_tree: Path, small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image left out (its set is not the set) and a full disk (the space is taken up
    front: a memory-mapped file on a full disk would be a SIGBUS) leave no cache file and
    no temporary; the runs train as without a cache."""
    from imgbalance.experiments import torch_train
    from imgbalance.torch.pixel_cache import streamed_pixels
    from imgbalance.torch.stream import choose_data_mode

    monkeypatch.setenv("IMGBALANCE_CACHE_DIR", str(tmp_path / "cache"))
    bad = split_tree / "train" / "blue" / "blue 0.png"

    def truncate_then_choose(*args: object, **kw: object) -> tuple[str, str]:
        bad.write_bytes(bad.read_bytes()[:60])  # broken after the split was scanned
        return choose_data_mode(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(torch_train, "choose_data_mode", truncate_then_choose)
    cfg = RunConfig.from_dict({"data": str(split_tree), "image_size": 16, "epochs": 2,
                               "batch_size": 8, "seed": 3, "data_mode": "stream"})  # fmt: skip
    summary = run_training(cfg, tmp_path / "run")
    assert summary["data"]["skipped_images"] == 1
    cached = [p.name for p in (tmp_path / "cache" / "pixels").iterdir()]
    assert len(cached) == 2 and all(c.endswith(".npy") for c in cached)  # val and test only
    monkeypatch.setenv("IMGBALANCE_CACHE_DIR", str(small_disk / "cache"))
    paths = _files(tmp_path / "a", 40)
    assert streamed_pixels(paths, 64) is None  # 480 KiB of pixels on a 400 KiB disk
    assert list((small_disk / "cache" / "pixels").iterdir()) == []
