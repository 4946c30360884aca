"""The sampler and mixing wiring of training: what the loss actually sees, batch by batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgbalance.experiments import RunConfig, run_training

from imgtools import COLOURS, colour_image

torch = pytest.importorskip("torch", reason="training needs the torch extra")
pytest.importorskip("torchvision", reason="mixing needs torchvision")

from imgbalance.experiments import torch_train as torch_loop  # noqa: E402
from imgbalance.torch.mixing import create_mixing  # noqa: E402
from imgbalance.torch.samplers import sample_weights  # noqa: E402

N_MAJOR, N_MINOR = 36, 4  # training split: 90% blue, 10% red


@pytest.fixture(scope="module")
def skewed_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pre-split tree of two colours: train 36/4, val 3/3, test 3/3."""
    root = tmp_path_factory.mktemp("skewed")
    rng = np.random.default_rng(0)
    counts = {"train": (N_MAJOR, N_MINOR), "val": (3, 3), "test": (3, 3)}
    for split, ns in counts.items():
        for name, n in zip(("blue", "red"), ns, strict=True):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                colour_image(rng, COLOURS[name], size=16).save(folder / f"{i}.png")
    return root


def _cfg(data: Path, **kw: Any) -> RunConfig:
    base = {"data": str(data), "image_size": 16, "epochs": 2, "batch_size": 8, "seed": 0,
            "device": "cpu", "augment": "none", "patience": 10}  # fmt: skip
    return RunConfig.from_dict({**base, **kw})


def _record_loss_targets(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every target the training loss is called with (the validation loss is not
    built by ``create_loss``, so only training batches are recorded)."""
    seen: list[Any] = []
    real = torch_loop.create_loss

    def recording(*args: Any, **kwargs: Any) -> Any:
        loss = real(*args, **kwargs)
        inner = loss.forward

        def forward(logits: Any, target: Any) -> Any:
            seen.append(target.detach().cpu().clone())
            return inner(logits, target)

        loss.forward = forward
        return loss

    monkeypatch.setattr(torch_loop, "create_loss", recording)
    return seen


# -- the sampler ---------------------------------------------------------------------------


def _drawn_share(labels: np.ndarray, kind: str, seed: int = 0) -> float:
    """Minority share of one epoch's order, drawn the way ``_train_member`` draws it."""
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    if kind == "none":
        order = torch.randperm(n, generator=g)
    else:
        w = torch.as_tensor(sample_weights(labels, kind))
        order = torch.multinomial(w, n, replacement=True, generator=g)
    return float((labels[order.numpy()] == 1).mean())


def test_class_balanced_draws_are_balanced() -> None:
    labels = np.array([0] * 900 + [1] * 100)
    shares = [_drawn_share(labels, "class-balanced", seed) for seed in range(5)]
    assert all(0.45 < s < 0.55 for s in shares), shares
    # sqrt sits in between: 1/sqrt(100) * 100 / (1/sqrt(900) * 900 + 10) = 0.25
    assert 0.21 < _drawn_share(labels, "sqrt") < 0.29
    # without a sampler every image is seen once: the data's own 10%
    assert _drawn_share(labels, "none") == pytest.approx(0.1)


def test_class_balanced_weights_give_each_class_equal_mass() -> None:
    labels = np.array([0] * 90 + [1] * 10 + [2] * 3)
    w = sample_weights(labels, "class-balanced")
    mass = [w[labels == c].sum() for c in range(3)]
    np.testing.assert_allclose(mass, [1.0, 1.0, 1.0])
    # a label absent in between (class 1 missing) gets no mass and breaks nothing
    w = sample_weights(np.array([0, 0, 0, 2]), "class-balanced")
    np.testing.assert_allclose(w, [1 / 3, 1 / 3, 1 / 3, 1.0])


def test_training_batches_follow_the_sampler(
    skewed_split: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_loss_targets(monkeypatch)
    run_training(_cfg(skewed_split, sampler="class-balanced"), tmp_path / "balanced")
    balanced = torch.cat(seen)
    seen.clear()
    run_training(_cfg(skewed_split), tmp_path / "plain")
    plain = torch.cat(seen)
    n = N_MAJOR + N_MINOR
    # 2 epochs of 5 batches of 8, all recorded as hard labels
    assert balanced.ndim == 1 and plain.ndim == 1
    assert len(balanced) == len(plain) == 2 * n
    data_share = N_MINOR / n
    balanced_share = float((balanced == 1).float().mean())
    # drawn far more often than it occurs (10%), near an even split of the batches
    assert balanced_share > 3 * data_share, balanced_share
    assert abs(balanced_share - 0.5) < 0.2, balanced_share
    # a plain shuffle sees every training image exactly once per epoch
    assert int((plain == 1).sum()) == 2 * N_MINOR
    assert int((plain == 0).sum()) == 2 * N_MAJOR


# -- mixing --------------------------------------------------------------------------------


def _batch(n: int = 8, n_classes: int = 3) -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 16, 16, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0][:n])
    return x, y


def test_mixup_returns_soft_targets_matching_the_blend() -> None:
    torch.manual_seed(0)  # torchvision draws lambda from the global generator
    mixer = create_mixing("mixup", 3, 1.0)
    assert mixer is not None
    x, y = _batch()
    mixed, target = mixer(x.clone(), y.clone())
    assert mixed.shape == x.shape
    assert target.shape == (8, 3) and target.dtype.is_floating_point
    torch.testing.assert_close(target.sum(1), torch.ones(8))
    assert bool((target.max(1).values < 1 - 1e-6).any())  # some row is not one-hot
    # images and targets are mixed with the same weight and the same partner
    partner = y.roll(1)
    row = int(torch.nonzero(y != partner)[0])
    lam = float(target[row, y[row]])
    onehot = torch.nn.functional.one_hot
    torch.testing.assert_close(
        target, lam * onehot(y, 3).float() + (1 - lam) * onehot(partner, 3).float()
    )
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x.roll(1, 0))


@pytest.mark.parametrize("name", ["cutmix", "mixup-cutmix"])
def test_other_mixers_return_soft_targets(name: str) -> None:
    torch.manual_seed(1)
    mixer = create_mixing(name, 3, 1.0)
    assert mixer is not None
    x, y = _batch()
    mixed, target = mixer(x.clone(), y.clone())
    assert mixed.shape == x.shape and target.shape == (8, 3)
    torch.testing.assert_close(target.sum(1), torch.ones(8))
    assert bool((target.max(1).values < 1 - 1e-6).any())


def test_no_mixing_is_none() -> None:
    assert create_mixing("none", 3, 1.0) is None


def test_loss_receives_soft_targets_in_a_mixup_run(
    skewed_split: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_loss_targets(monkeypatch)
    run_training(_cfg(skewed_split, mixing="mixup", epochs=1), tmp_path / "mixup")
    assert len(seen) == 5  # one epoch, 40 images in batches of 8
    for target in seen:
        assert target.ndim == 2 and target.shape[1] == 2
        assert target.dtype.is_floating_point
        torch.testing.assert_close(target.sum(1), torch.ones(len(target)))
        assert bool(((target >= 0) & (target <= 1)).all())
    soft = torch.cat(seen)
    assert bool((soft.max(1).values < 1 - 1e-6).any())  # blends, not one-hot labels
    # without mixing, the same loss gets the hard labels
    seen.clear()
    run_training(_cfg(skewed_split, epochs=1), tmp_path / "plain")
    assert all(t.ndim == 1 and t.dtype == torch.long for t in seen)
