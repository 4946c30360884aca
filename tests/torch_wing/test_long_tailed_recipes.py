"""The long-tailed CIFAR recipes: the CIFAR ResNets, the cosine head, LDAM, logit-adjusted
cross-entropy, cRT's balanced draw, the SGD protocol's schedules and the crop-flip
augmentation, checked against values worked out by hand on tiny tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imgbalance.errors import ConfigError
from imgbalance.experiments.config import OPTIMIZERS, PROTOCOLS, SCHEDULES, RunConfig

torch = pytest.importorskip("torch", reason="training needs the torch extra")
F = torch.nn.functional

from imgbalance.torch import finetune  # noqa: E402
from imgbalance.torch.data import MemoryBatches  # noqa: E402
from imgbalance.torch.finetune import build_optimizer, build_schedule  # noqa: E402
from imgbalance.torch.losses import LDAMLoss, LossSpec, create_loss, ldam_margins  # noqa: E402
from imgbalance.torch.models import CosineLinear, create_model, head_parameters  # noqa: E402
from imgbalance.torch.samplers import sample_weights  # noqa: E402


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_cifar_resnets_have_the_papers_sizes() -> None:
    # He et al. 2016, table 6: ResNet-20 0.27 M, ResNet-32 0.46 M parameters (option A)
    assert _n_params(create_model("resnet20", 10)) == 269_722
    r32 = create_model("resnet32", 10)
    assert _n_params(r32) == 464_154
    out = r32(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert head_parameters(r32)[0].shape == (10, 64)
    # its feature map is 8 px before pooling: the three stages halve 32 twice
    feats = r32.layers(r32.bn1(r32.conv1(torch.zeros(1, 3, 32, 32))))
    assert feats.shape == (1, 64, 8, 8)
    with pytest.raises(ConfigError, match="no pretrained weights"):
        create_model("resnet32", 10, "DEFAULT")


def test_cosine_head_is_scaled_cosine_similarity() -> None:
    head = CosineLinear(2, 2, scale=10.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, -2.0]]))
    x = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    # cos((1,0), (3,4)) = 3/5; cos((1,0), (0,-1)) = 0; cos((0,1), (3,4)) = 4/5; ... = -1
    torch.testing.assert_close(head(x), torch.tensor([[6.0, 0.0], [8.0, -10.0]]))
    model = create_model("small-cnn", 3, head="cosine", head_scale=30.0)
    assert isinstance(model.fc, CosineLinear) and model.fc.bias is None
    with torch.no_grad():
        assert float(model(torch.randn(4, 3, 16, 16)).abs().max()) <= 30.0 + 1e-4
    with pytest.raises(ConfigError, match="head must be one of"):
        create_model("small-cnn", 3, head="arc")


def test_ldam_margins_by_hand() -> None:
    # n^-1/4 of 10000, 16, 1 is 0.1, 0.5, 1; scaled so the rarest class's margin is 0.5
    np.testing.assert_allclose(ldam_margins([10_000, 16, 1], 0.5), [0.05, 0.25, 0.5])
    np.testing.assert_allclose(ldam_margins([16, 0], 0.4), [0.2, 0.4])  # empty counts as 1


def test_ldam_loss_by_hand_and_against_the_papers_formula() -> None:
    loss = LDAMLoss(3, [10_000, 16, 1], max_margin=0.5, scale=1.0)
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    # row 1, class 0 (margin 0.05): -log(e^0.95 / (e^0.95 + 2));
    # row 2, class 2 (margin 0.5): -log(e^0.5 / (1 + e^2 + e^0.5))
    r1 = -math.log(math.exp(0.95) / (math.exp(0.95) + 2))
    r2 = -math.log(math.exp(0.5) / (1 + math.exp(2) + math.exp(0.5)))
    got = loss(logits, torch.tensor([0, 2]))
    assert float(got) == pytest.approx((r1 + r2) / 2, rel=1e-6)
    # Cao et al.'s code: F.cross_entropy(s * where(onehot, cos - m, cos), y, weight=w);
    # on a cosine head (logits = s * cos) ours is the same loss, DRW weights included
    g = torch.Generator().manual_seed(0)
    cos = torch.rand(16, 3, generator=g) * 2 - 1
    y = torch.randint(0, 3, (16,), generator=g)
    w = torch.tensor([0.2, 1.0, 3.0])
    m = torch.as_tensor(ldam_margins([10_000, 16, 1]), dtype=torch.float32)
    reference = F.cross_entropy(30 * (cos - F.one_hot(y, 3) * m), y, weight=w)
    ours = LDAMLoss(3, [10_000, 16, 1], scale=30.0, weight=w.numpy())
    torch.testing.assert_close(ours(30 * cos, y), reference)
    ours.set_weight(None)  # deferred re-weighting switches weights like ClassLoss
    torch.testing.assert_close(
        ours(30 * cos, y), F.cross_entropy(30 * (cos - F.one_hot(y, 3) * m), y)
    )
    # a soft (mixed) target t takes t_c * m_c off class c's logit: zero logits become
    # (-0.025, -0.125, 0) for t = (0.5, 0.5, 0)
    soft = torch.tensor([[0.5, 0.5, 0.0]])
    expected = 0.5 * 0.025 + 0.5 * 0.125 + math.log(math.exp(-0.025) + math.exp(-0.125) + 1)
    got = float(LDAMLoss(3, [10_000, 16, 1], scale=1.0)(torch.zeros(1, 3), soft))
    assert got == pytest.approx(expected, rel=1e-6)


def test_logit_adjusted_loss_by_hand_and_balanced_softmax_at_tau_one() -> None:
    prior = np.array([3.0, 1.0])  # log prior: log 0.75, log 0.25
    spec = LossSpec(weight=np.ones(2), prior=prior, tau=2.0)
    la = create_loss("logit-adjusted", 2, spec)
    z = torch.tensor([[0.0, 0.0]])
    # tau = 2: logits 2 log 0.75, 2 log 0.25; the rare class's probability 0.0625 / 0.625
    got = float(la(z, torch.tensor([1])))
    assert got == pytest.approx(-math.log(0.0625 / (0.5625 + 0.0625)), rel=1e-6)
    one = LossSpec(weight=np.ones(2), prior=prior, tau=1.0)
    g = torch.Generator().manual_seed(1)
    logits, y = torch.randn(8, 2, generator=g), torch.randint(0, 2, (8,), generator=g)
    torch.testing.assert_close(
        create_loss("logit-adjusted", 2, one)(logits, y),
        create_loss("balanced-softmax", 2, one)(logits, y),
    )


def test_crt_draws_each_class_equally_by_hand() -> None:
    # cRT's sampler: 1 / n_c per image, so three images of class 0 weigh what one of 1 does
    np.testing.assert_allclose(sample_weights(np.array([0, 0, 0, 1]), "class-balanced"),
                               [1 / 3, 1 / 3, 1 / 3, 1.0])  # fmt: skip


def _lrs(sched: torch.optim.lr_scheduler.LRScheduler, epochs: int) -> list[float]:
    out = []
    for _ in range(epochs):
        out.append(sched.optimizer.param_groups[0]["lr"])
        sched.optimizer.step()
        sched.step()
    return out


def _opt() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


def test_schedules_epoch_by_epoch() -> None:
    multi = build_schedule(_opt(), "multistep", 10, gamma=0.1, milestones=[6, 8], warmup_epochs=2)
    expected = [0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    np.testing.assert_allclose(_lrs(multi, 10), expected, rtol=1e-9)
    cos = build_schedule(_opt(), "cosine", 5, warmup_epochs=1)
    # one warm-up epoch (at 1/1 of lr), then half a cosine over the other four
    expected = [0.1] + [0.05 * (1 + math.cos(math.pi * t / 4)) for t in range(4)]
    np.testing.assert_allclose(_lrs(cos, 5), expected, rtol=1e-9)
    # step without warm-up is StepLR itself, float for float
    ours = build_schedule(_opt(), "step", 40, step_size=15, gamma=0.1)
    assert isinstance(ours, torch.optim.lr_scheduler.StepLR)
    warm = build_schedule(_opt(), "step", 6, step_size=2, gamma=0.5, warmup_epochs=2)
    np.testing.assert_allclose(_lrs(warm, 6), [0.05, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_sgd_optimizer_and_its_groups() -> None:
    model = create_model("resnet20", 3)
    opt = build_optimizer(model, 0.1, 2e-4, 0.5, kind="sgd", momentum=0.9)
    assert isinstance(opt, torch.optim.SGD)
    assert [(g["name"], g["lr"], g["momentum"], g["weight_decay"]) for g in opt.param_groups] == [
        ("backbone", 0.05, 0.9, 2e-4), ("head", 0.1, 0.9, 2e-4),
    ]  # fmt: skip
    # the torch-free config lists the same choices as the torch wing
    assert OPTIMIZERS == finetune.OPTIMIZERS and SCHEDULES == finetune.SCHEDULES


def test_crop_flip_is_a_shifted_crop_of_the_zero_padded_image() -> None:
    g = torch.Generator().manual_seed(3)
    px = torch.randint(1, 256, (16, 3, 6, 6), generator=g, dtype=torch.uint8)
    batches = MemoryBatches(px, torch.device("cpu"), "crop-flip", torch.Generator().manual_seed(0))
    x = px.float() / 255
    padded = F.pad(x, (4, 4, 4, 4))
    out = batches._crop_flip(x)
    flips = 0
    for i in range(16):
        found = [
            (dy, dx, f)
            for dy in range(9)
            for dx in range(9)
            for f in (False, True)
            if torch.equal(
                out[i], (lambda c: c.flip(2) if f else c)(padded[i, :, dy : dy + 6, dx : dx + 6])
            )
        ]
        assert found, f"image {i} is not a crop of the padded image"
        flips += found[0][2]
    assert 0 < flips < 16  # some flipped, some not
    again = MemoryBatches(px, torch.device("cpu"), "crop-flip", torch.Generator().manual_seed(0))
    torch.testing.assert_close(again._crop_flip(x), out)  # the generator decides


def test_protocol_expands_and_explicit_settings_win() -> None:
    cfg = RunConfig.from_dict({"model": "resnet32", "protocol": "cifar-lt", "epochs": 20,
                               "milestones": [16, 18]})  # fmt: skip
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay) == ("sgd", 0.1, 0.9, 2e-4)
    assert (cfg.epochs, cfg.milestones, cfg.batch_size, cfg.augment) == (
        20, [16, 18], 128, "crop-flip",
    )  # fmt: skip
    assert cfg.resolved().image_size == 32
    # the protocol is its settings: written out, the same run
    explicit = {k: v for k, v in PROTOCOLS["cifar-lt"].items()}
    same = RunConfig.from_dict({"model": "resnet32", **explicit, "epochs": 20,
                                "milestones": [16, 18]})  # fmt: skip
    assert same.fingerprint() == cfg.fingerprint()
    assert PROTOCOLS["cifar-lt"]["milestones"] == [160, 180]  # never changed by a run
    with pytest.raises(ConfigError, match="protocol must be one of"):
        RunConfig.from_dict({"protocol": "imagenet-lt"})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"loss": "ldam", "head": "linear"}, "cosine head"),
        ({"schedule": "multistep"}, "milestones go with"),
        ({"milestones": [3]}, "milestones go with"),
        ({"schedule": "multistep", "milestones": [5, 3]}, "increasing"),
        ({"schedule": "multistep", "milestones": [30]}, "between 1 and"),
        ({"warmup_epochs": 30}, "warmup_epochs"),
        ({"momentum": 1.5}, "momentum"),
        ({"optimizer": "lamb"}, "optimizer must be one of"),
        ({"model": "linear", "optimizer": "sgd"}, "model linear"),
    ],
)
def test_protocol_settings_are_checked(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict(settings)


def test_ldam_gets_a_cosine_head_and_old_runs_keep_their_fingerprints() -> None:
    assert RunConfig.from_dict({"loss": "ldam"}).model_head()["head"] == "cosine"
    assert RunConfig.from_dict({"loss": "ce"}).resolved().head == "linear"
    # a run at every new setting's default is the run it was before they existed
    assert (
        RunConfig.from_dict({}).fingerprint()
        == RunConfig.from_dict(
            {"head": "linear", "optimizer": "adam", "schedule": "step", "protocol": "default"}
        ).fingerprint()
    )
