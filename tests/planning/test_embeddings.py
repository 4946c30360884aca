"""CNN embeddings: real torchvision models, weights from a file; never random weights."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest

import imgbalance
from imgbalance.planning.features import compute_features

from imgtools import png_files, rgb, save

torch = pytest.importorskip("torch", reason="embeddings need the torch extra")
torchvision = pytest.importorskip("torchvision")

from imgbalance.torch import models as torch_models  # noqa: E402 - needs torch


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet18 state dict, as a user would pass one (seeded here: no download)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "resnet18 weights.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def _files(tmp_path: Path, n: int) -> tuple[list[str], list[str]]:
    return png_files(tmp_path, n, (40, 30))


def test_penultimate_features_are_cached_by_weights(
    tmp_path: Path, weights_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, hashes = _files(tmp_path, 4)
    Path(paths[2]).write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    spec = f"embedding:resnet18:{weights_file}"
    cache = tmp_path / "cache"
    feats, failed = compute_features(paths, hashes, spec, cache_path=cache)
    assert feats.shape == (4, 512) and list(failed) == [2] and not feats[2].any()
    # the same numbers as the model's own forward pass up to its head
    loaded = torch_models.build_model("resnet18", str(weights_file))
    model = loaded.model
    from imgbalance.dataset.images import load_image

    x = loaded.transforms(load_image(paths[0]).convert("RGB"))[None]
    with torch.inference_mode():
        trunk = torch.nn.Sequential(*list(model.children())[:-1])
        expected = trunk(x).flatten(1).numpy()[0]
    np.testing.assert_allclose(feats[0], expected, rtol=1e-4, atol=1e-5)
    (cached,) = (cache / "features").glob("embedding-resnet18-file-*.npz")

    def no_model(*_a: object, **_k: object) -> None:
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(torch_models, "build_model", no_model)
    again, _ = compute_features(paths[:2], hashes[:2], spec, cache_path=cache)
    np.testing.assert_array_equal(again, feats[:2])
    reduced, _ = compute_features(paths[:2], hashes[:2], f"pca:2:{spec}", cache_path=cache)
    assert reduced.shape == (2, 2) and cached.exists()


def test_no_silent_random_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*_a: object, **_k: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(imgbalance.ImgBalanceError, match="never falls back to random weights"):
        torch_models.build_model("resnet18", "DEFAULT")
    with pytest.raises(imgbalance.ImgBalanceError, match="Did you mean resnet18"):
        torch_models.build_model("resnet81")
    with pytest.raises(imgbalance.ImgBalanceError, match="neither a torchvision weights name"):
        torch_models.build_model("resnet18", "IMAGENET_V9")


def test_fine_tuned_heads_and_bad_files(tmp_path: Path) -> None:
    torch.manual_seed(1)
    tuned = torchvision.models.resnet18(num_classes=3)
    path = tmp_path / "tuned.pth"
    torch.save({"state_dict": tuned.state_dict()}, path)
    loaded = torch_models.build_model("resnet18", str(path))
    assert loaded.model.fc.out_features == 3
    assert torch.equal(loaded.model.conv1.weight, tuned.conv1.weight)
    wrong = tmp_path / "wrong.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), wrong)
    with pytest.raises(imgbalance.ImgBalanceError, match="does not fit ResNet"):
        torch_models.build_model("resnet18", str(wrong))
    junk = tmp_path / "junk.pth"
    junk.write_text("hello")
    with pytest.raises(imgbalance.ImgBalanceError, match=r"is not a state dict .* of resnet18"):
        torch_models.build_model("resnet18", str(junk))
    listed = tmp_path / "listed.pth"
    torch.save([tuned.fc.weight.detach()], listed)
    with pytest.raises(imgbalance.ImgBalanceError, match="it holds a list, not a state dict"):
        torch_models.build_model("resnet18", str(listed))
    with pytest.raises(imgbalance.ImgBalanceError, match="no final linear layer"):
        torch_models.final_linear(torchvision.models.squeezenet1_1())


def test_torchvision_weights_from_a_safetensors_file(tmp_path: Path) -> None:
    """The same reader as timm models: a .safetensors file (as many hubs publish
    weights) loads into a torchvision model too, fine-tuned head and all."""
    safetensors = pytest.importorskip("safetensors.torch", reason="the timm extra brings it")
    torch.manual_seed(2)
    tuned = torchvision.models.resnet18(num_classes=4)
    path = tmp_path / "tuned.safetensors"
    safetensors.save_file(tuned.state_dict(), str(path))
    loaded = torch_models.build_model("resnet18", str(path))
    assert loaded.model.fc.out_features == 4
    assert torch.equal(loaded.model.layer4[1].conv2.weight, tuned.layer4[1].conv2.weight)
    assert loaded.weights_id.startswith("file-")


def test_balance_on_embeddings(tmp_path: Path, weights_file: Path) -> None:
    for i in range(6):
        save(rgb(i, (36, 36)), tmp_path / "src" / "a" / f"{i}.png")
    for i in range(3):
        save(rgb(20 + i, (36, 36)), tmp_path / "src" / "b" / f"{i}.png")
    result = imgbalance.balance(
        tmp_path / "src",
        tmp_path / "out",
        method="random-under,augment",
        features=f"embedding:resnet18:{weights_file}",
        target="count:5",
        random_state=0,
        plots=False,
    )
    assert result.counts_after == {"a": 5, "b": 5}
    assert result.plan.config["features"].startswith("embedding:resnet18:")
    assert any("not images" in n for n in result.plan.notes)


def test_batches_decoded_ahead_give_the_same_rows(tmp_path: Path, weights_file: Path) -> None:
    """The next batch is decoded while the model runs: rows, order and failures are those
    of one batch at a time, whatever the batch size (a bad file in the middle batch)."""
    from imgbalance.planning.embeddings import embed_images

    paths, _ = _files(tmp_path, 7)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    paths.insert(3, str(tmp_path / "bad.png"))
    loaded = torch_models.build_model("resnet18", str(weights_file))
    whole, failed_whole = embed_images(paths, loaded, batch_size=len(paths))
    steps: list[int] = []
    for size in (1, 3):
        feats, failed = embed_images(paths, loaded, batch_size=size, progress=steps.append)
        np.testing.assert_allclose(feats, whole, atol=1e-4)
        assert list(failed) == list(failed_whole) == [3]
    assert sum(steps) == 2 * len(paths)
    empty, none = embed_images([], loaded)
    assert empty.shape == (0, 512) and not none


def test_embedding_keeps_freed_memory_for_the_next_batch(
    tmp_path: Path, weights_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch's activations come from the heap the last one freed (glibc)."""
    from imgbalance import _malloc
    from imgbalance.planning.embeddings import embed_images

    if _malloc.mmapped_blocks() is None:
        pytest.skip("glibc's malloc is what this setting changes")
    monkeypatch.delenv("IMGBALANCE_MALLOC", raising=False)

    def mapped() -> bool:
        before = _malloc.mmapped_blocks()
        block = np.empty(64 * 2**20, dtype=np.uint8)
        now = _malloc.mmapped_blocks()
        del block
        return now != before

    seen: list[bool] = []
    paths, _ = _files(tmp_path, 2)
    loaded = torch_models.build_model("resnet18", str(weights_file))
    embed_images(paths, loaded, progress=lambda _n: seen.append(mapped()))
    assert seen == [False] and mapped()
