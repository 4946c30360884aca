"""The CUDA data path's layout and copies, checked where they can be on a CPU: NHWC
(``channels_last``) batches hold the same values as the default layout, a run trained
NHWC is the same run (fingerprint, checkpoint layout) with the same predictions up to
float rounding, ``auto`` leaves CPU runs as they were; images kept on the GPU and
page-locked host batches (tested on a CUDA machine only)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from imgbalance.errors import ConfigError
from imgbalance.experiments import RunConfig, run_training

torch = pytest.importorskip("torch", reason="the torch extra")

from imgbalance.experiments.torch_eval import channels_last  # noqa: E402
from imgbalance.torch.data import MemoryBatches, host_batch, resident  # noqa: E402
from imgbalance.torch.stream import StreamBatches  # noqa: E402

NHWC = torch.channels_last


def _cfg(data: Path, **kw: object) -> RunConfig:
    base = {"data": str(data), "image_size": 16, "epochs": 2, "batch_size": 8, "seed": 3}
    return RunConfig.from_dict({**base, **kw})


@pytest.mark.parametrize("augment", ["none", "light", "crop-flip"])
def test_nhwc_batches_hold_the_default_layouts_values(augment: str) -> None:
    px = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (10, 3, 12, 12), np.uint8))
    idx = torch.tensor([7, 1, 4, 4, 0])
    cpu = torch.device("cpu")
    plain = MemoryBatches(px, cpu, augment, torch.Generator().manual_seed(5))
    nhwc = MemoryBatches(px, cpu, augment, torch.Generator().manual_seed(5), channels_last=True)
    for train in (True, False):
        a, b = plain.get(idx, train), nhwc.get(idx, train)
        assert a.is_contiguous() and not b.is_contiguous()
        assert b.is_contiguous(memory_format=NHWC)
        assert torch.equal(a, b)  # the same numbers, laid out differently


def test_streamed_nhwc_batches_match_the_memory_ones(split_tree: Path) -> None:
    paths = sorted(str(p) for p in (split_tree / "train").rglob("*.png"))[:6]
    cpu = torch.device("cpu")
    stream = StreamBatches(paths, 16, cpu, "crop-flip", torch.Generator().manual_seed(2),
                           threads=2, channels_last=True)  # fmt: skip
    try:
        idx = torch.arange(6)
        batches = stream.iterate(itertools.repeat(idx))  # the trainer's stream is endless
        kept, raw = next(batches)
        batches.close()
        assert torch.equal(kept, idx) and raw.dtype == torch.uint8 and not raw.is_pinned()
        memory = MemoryBatches(raw.clone(), cpu, "crop-flip", torch.Generator().manual_seed(2))
        a, b = memory.get(idx, train=True), stream.prepare(raw, train=True)
        assert b.is_contiguous(memory_format=NHWC) and torch.equal(a, b)
    finally:
        stream.close()


def test_auto_is_nhwc_on_cuda_only(split_tree: Path) -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")  # a device object needs no GPU
    auto = _cfg(split_tree)
    assert auto.channels_last == "auto"
    assert channels_last(auto, cuda) and not channels_last(auto, cpu)
    assert channels_last(_cfg(split_tree, channels_last="on"), cpu)
    assert not channels_last(_cfg(split_tree, channels_last="off"), cuda)
    with pytest.raises(ConfigError, match="channels_last must be one of auto, on, off"):
        _cfg(split_tree, channels_last="nhwc")


def test_a_run_trained_nhwc_is_the_same_run(split_tree: Path, tmp_path: Path) -> None:
    """On a CPU the NHWC kernels sum in another order: the same run (fingerprint), a
    checkpoint in the default layout, and the same predictions up to float rounding."""
    a = run_training(_cfg(split_tree, data_mode="memory"), tmp_path / "off")
    b = run_training(_cfg(split_tree, data_mode="memory", channels_last="on"), tmp_path / "on")
    assert a["fingerprint"] == b["fingerprint"]
    saved = torch.load(tmp_path / "on" / "best_model.pt", weights_only=True)
    state = saved["members"][0]
    assert all(v.is_contiguous() for v in state.values())
    assert any(v.dim() == 4 for v in state.values())  # convolution weights were there

    def probabilities(run: Path) -> np.ndarray:
        rows = (run / "predictions.csv").read_text().splitlines()
        header = rows[0].split(",")
        cols = [i for i, h in enumerate(header) if h.startswith("p_") or h.startswith("p:")]
        assert cols, header
        return np.array([[float(r.split(",")[i]) for i in cols] for r in rows[1:]])

    pa, pb = probabilities(tmp_path / "off"), probabilities(tmp_path / "on")
    assert pa.shape == pb.shape and len(pa)
    np.testing.assert_allclose(pa, pb, atol=1e-4)


def test_images_stay_in_host_memory_off_cuda() -> None:
    px = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    assert resident(px, torch.device("cpu")) is px


def test_the_training_log_names_where_the_images_are(split_tree: Path, tmp_path: Path) -> None:
    """The throughput benchmark reads the decoding time from this line."""
    import re

    logs: list[str] = []
    run_training(_cfg(split_tree, data_mode="memory"), tmp_path / "run", log=logs.append)
    pattern = r"training images at \d+px in (?:GPU )?memory after ([\d.]+) s"
    assert any(re.search(pattern, line) for line in logs), logs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_images_that_fit_are_gathered_on_the_gpu() -> None:
    cuda = torch.device("cuda")
    px = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (9, 3, 8, 8), np.uint8))
    on_gpu = resident(px, cuda)
    assert on_gpu.device.type == "cuda"
    idx = torch.tensor([2, 2, 7])
    a = MemoryBatches(on_gpu, cuda, "crop-flip", torch.Generator().manual_seed(4)).get(idx, True)
    b = MemoryBatches(px, torch.device("cpu"), "crop-flip", torch.Generator().manual_seed(4))
    torch.testing.assert_close(a.cpu(), b.get(idx, True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_for_a_gpu_are_page_locked_and_arrive_whole(split_tree: Path) -> None:
    cuda = torch.device("cuda")
    assert host_batch((2, 3, 4, 4), cuda).is_pinned()
    assert not host_batch((2, 3, 4, 4), torch.device("cpu")).is_pinned()
    px = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (9, 3, 8, 8), np.uint8))
    idx = torch.tensor([3, 8, 0])
    on_gpu = MemoryBatches(px, cuda, "none", channels_last=True).get(idx, train=False)
    on_cpu = MemoryBatches(px, torch.device("cpu"), "none").get(idx, train=False)
    torch.cuda.synchronize()
    assert on_gpu.device.type == "cuda" and on_gpu.is_contiguous(memory_format=NHWC)
    torch.testing.assert_close(on_gpu.cpu(), on_cpu)
