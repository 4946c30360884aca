"""Losses, samplers and metrics of the training harness, checked against references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import balanced_accuracy_score, f1_score

from imgbalance.errors import ConfigError
from imgbalance.experiments.metrics import (
    classification_metrics,
    confidence_table,
    expected_calibration_error,
    logit_adjusted,
    tune_class_offsets,
)

torch = pytest.importorskip("torch", reason="training needs the torch extra")
F = torch.nn.functional

from imgbalance.torch.losses import ClassLoss  # noqa: E402
from imgbalance.torch.samplers import sample_weights  # noqa: E402
from imgbalance.torch.weights import class_weights  # noqa: E402


def _batch(seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(64, 4, generator=g), torch.randint(0, 4, (64,), generator=g)


def test_focal_with_gamma_zero_is_weighted_cross_entropy() -> None:
    logits, y = _batch()
    w = torch.tensor([0.5, 1.0, 2.0, 4.0])
    ours = ClassLoss(4, weight=w.numpy(), gamma=0.0)(logits, y)
    torch.testing.assert_close(ours, F.cross_entropy(logits, y, weight=w))
    plain = ClassLoss(4)(logits, y)
    torch.testing.assert_close(plain, F.cross_entropy(logits, y))
    # with gamma the easy examples count less: the loss is smaller
    assert ClassLoss(4, weight=w.numpy(), gamma=2.0)(logits, y) < ours


def test_focal_matches_its_definition() -> None:
    logits, y = _batch(1)
    p = torch.softmax(logits, 1)[torch.arange(64), y]
    expected = (-((1 - p) ** 2) * torch.log(p)).mean()
    torch.testing.assert_close(ClassLoss(4, gamma=2.0)(logits, y), expected)


def test_balanced_softmax_is_ce_on_prior_adjusted_logits() -> None:
    logits, y = _batch(2)
    prior = np.array([100.0, 30.0, 5.0, 1.0])
    log_prior = torch.log(torch.tensor(prior / prior.sum(), dtype=torch.float32))
    ours = ClassLoss(4, prior=prior, tau=1.0)(logits, y)
    torch.testing.assert_close(ours, F.cross_entropy(logits + log_prior, y))


def test_soft_targets_match_cross_entropy_with_probabilities() -> None:
    logits, _ = _batch(3)
    soft = torch.softmax(torch.randn(64, 4, generator=torch.Generator().manual_seed(9)), 1)
    torch.testing.assert_close(ClassLoss(4)(logits, soft), F.cross_entropy(logits, soft))


def test_class_weights() -> None:
    w = class_weights([100, 10, 1, 0], "inverse")
    assert w[3] == 0 and w[:3].mean() == pytest.approx(1.0)
    assert w[2] / w[1] == pytest.approx(10.0)
    eff = class_weights([100, 10, 1], "effective", beta=0.99)
    raw = (1 - 0.99) / (1 - 0.99 ** np.array([100, 10, 1]))
    np.testing.assert_allclose(eff, raw / raw.mean())
    with pytest.raises(ConfigError, match=r'Unknown class-weight scheme "balanced".*inverse'):
        class_weights([1], "balanced")


def test_weighted_sampler_is_uniform_over_classes() -> None:
    """The sampling the training loop uses: chi-squared against uniform class frequencies."""
    y = np.array([0] * 500 + [1] * 50 + [2] * 5)
    weights = torch.as_tensor(sample_weights(y, "class-balanced"))
    drawn = torch.multinomial(
        weights, 6000, replacement=True, generator=torch.Generator().manual_seed(0)
    )
    freq = np.bincount(y[drawn.numpy()], minlength=3)
    assert stats.chisquare(freq).pvalue > 0.01
    plain = np.bincount(y[torch.randint(0, len(y), (6000,)).numpy()], minlength=3)
    assert stats.chisquare(plain).pvalue < 1e-6  # the test can tell imbalance apart
    sqrt = torch.as_tensor(sample_weights(y, "sqrt"))
    drawn = torch.multinomial(
        sqrt, 6000, replacement=True, generator=torch.Generator().manual_seed(1)
    )
    freq = np.bincount(y[drawn.numpy()], minlength=3) / 6000
    expected = np.sqrt([500, 50, 5]) / np.sqrt([500, 50, 5]).sum()
    np.testing.assert_allclose(freq, expected, atol=0.02)


def test_metrics_with_absent_and_never_predicted_classes() -> None:
    classes = ["a", "b", "c", "d"]
    y = np.array([0, 0, 1, 1, 2])  # "d" absent from this split
    proba = np.eye(4)[[0, 1, 1, 1, 1]] * 0.9 + 0.025
    m = classification_metrics(y, proba, classes)
    assert m["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx(
        f1_score(y, proba.argmax(1), labels=[0, 1, 2], average="macro")
    )
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, proba.argmax(1)))
    assert m["confusion_matrix"][3] == [0, 0, 0, 0] and len(m["confusion_matrix"]) == 4
    assert m["confusion_matrix_normalized"][2] == [0.0, 1.0, 0.0, 0.0]
    assert 0 <= m["ece"] <= 1 and m["gmean"] >= 0
    empty = classification_metrics(np.zeros(0, dtype=int), np.zeros((0, 4)), classes)
    assert empty["n"] == 0 and np.isnan(empty["macro_f1"])
    one = classification_metrics(np.array([2]), np.eye(4)[[2]], classes)
    assert one["accuracy"] == 1.0
    rows = confidence_table(y, proba, classes)
    assert rows[3]["support"] == 0 and np.isnan(rows[3]["mean_confidence"])


def test_calibration_and_posthoc() -> None:
    y = np.array([0, 1] * 50)
    perfect = np.eye(2)[y]
    assert expected_calibration_error(y, perfect) == pytest.approx(0.0)
    half = np.full((100, 2), 0.5)
    half[:, 0] += 1e-9
    assert expected_calibration_error(y, half) == pytest.approx(0.0, abs=1e-6)
    proba = np.array([[0.6, 0.4], [0.6, 0.4]])
    adjusted = logit_adjusted(proba, np.array([0.9, 0.1]))
    assert adjusted.argmax(1).tolist() == [1, 1]  # the rare class wins once priors are removed
    rng = np.random.default_rng(0)
    y = np.array([0] * 80 + [1] * 20)
    p1 = np.clip(0.2 + 0.25 * (y == 1) + rng.normal(0, 0.1, 100), 0.01, 0.99)
    proba = np.stack([1 - p1, p1], 1)
    offsets = tune_class_offsets(y, proba)
    before = f1_score(y, proba.argmax(1), average="macro")
    after = f1_score(y, (np.log(proba) + offsets).argmax(1), average="macro")
    assert after > before
