"""Calibration scores, post-hoc recalibration, and the per-image predictions of a run."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, log_loss

import imgbalance
from imgbalance.errors import ImgBalanceError
from imgbalance.experiments import RunConfig, run_training
from imgbalance.experiments.calibration import (
    fit_temperature,
    posthoc_variants,
    prior_corrected,
    prior_weights,
    temperature_scaled,
)
from imgbalance.experiments.data import load_split
from imgbalance.experiments.metrics import (
    brier_score,
    classification_metrics,
    negative_log_likelihood,
)

from imgtools import COLOURS, colour_image

Y3 = np.array([0, 1, 2])
P3 = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5]])


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_nll_and_brier_by_hand() -> None:
    # NLL: -(ln 0.7 + ln 0.8 + ln 0.5) / 3
    nll = -math.log(0.7 * 0.8 * 0.5) / 3
    # Brier: (0.3² + 0.2² + 0.1²) + (0.1² + 0.2² + 0.1²) + (0.25² + 0.25² + 0.5²), over 3
    brier = (0.14 + 0.06 + 0.375) / 3
    assert negative_log_likelihood(Y3, P3) == pytest.approx(nll, abs=1e-12)
    assert brier_score(Y3, P3) == pytest.approx(brier, abs=1e-12)
    m = classification_metrics(Y3, P3, ["a", "b", "c"])
    assert m["nll"] == pytest.approx(nll, abs=1e-12)
    assert m["brier"] == pytest.approx(brier, abs=1e-12)
    # a fourth class, absent from the split and never given probability, changes nothing
    p4 = np.hstack([P3, np.zeros((3, 1))])
    m4 = classification_metrics(Y3, p4, ["a", "b", "c", "d"])
    assert m4["nll"] == pytest.approx(nll, abs=1e-12)
    assert m4["brier"] == pytest.approx(brier, abs=1e-12)
    # a split holding one class only still has every class's column
    one = classification_metrics(np.array([1]), P3[1:2], ["a", "b", "c"])
    assert one["nll"] == pytest.approx(-math.log(0.8), abs=1e-12)
    assert one["brier"] == pytest.approx(0.06, abs=1e-12)
    empty = classification_metrics(np.zeros(0, dtype=int), np.zeros((0, 3)), ["a", "b", "c"])
    assert math.isnan(empty["nll"]) and math.isnan(empty["brier"]) and math.isnan(empty["ece"])


@pytest.mark.parametrize("t0", [2.5, 0.5], ids=["overconfident", "underconfident"])
def test_temperature_scaling_recovers_a_known_temperature(t0: float) -> None:
    """Labels drawn from softmax(z); the model reports softmax(t0 * z): T must be t0."""
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 2.0, (50_000, 3))
    y = (rng.random(len(z))[:, None] > np.cumsum(_softmax(z), axis=1)).sum(axis=1)
    model = _softmax(t0 * z)
    t = fit_temperature(y, model)
    assert t == pytest.approx(t0, rel=0.03)
    np.testing.assert_allclose(temperature_scaled(model, t), _softmax(t0 / t * z), atol=1e-9)
    before, after = (
        negative_log_likelihood(y, model),
        negative_log_likelihood(y, temperature_scaled(model, t)),
    )
    assert after < before


def test_temperature_scaling_never_worsens_validation_nll() -> None:
    rng = np.random.default_rng(1)
    for case in range(20):
        n, k = int(rng.integers(1, 40)), int(rng.integers(2, 5))
        p = rng.dirichlet(np.full(k, 0.3 + case / 10), size=n)
        y = rng.integers(0, k, n)
        t = fit_temperature(y, p)
        assert t > 0
        after = negative_log_likelihood(y, temperature_scaled(p, t))
        assert after <= negative_log_likelihood(y, p) + 1e-12
    # already calibrated (labels drawn from the probabilities): T stays close to 1, and
    # T = 1 returns the probabilities unchanged
    p = rng.dirichlet(np.ones(3), size=20_000)
    y = (rng.random(len(p))[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    assert fit_temperature(y, p) == pytest.approx(1.0, abs=0.05)
    assert np.array_equal(temperature_scaled(p, 1.0), p)
    # the predicted class never changes; an empty split fits nothing
    assert np.array_equal(temperature_scaled(p, 3.0).argmax(1), p.argmax(1))
    assert fit_temperature(np.zeros(0, dtype=int), np.zeros((0, 3))) == 1.0


def test_prior_correction_by_hand() -> None:
    # original training prior 0.6 / 0.3 / 0.1; the model saw a balanced set (1/3 each)
    original, trained = [60, 30, 10], [40, 40, 40]
    np.testing.assert_allclose(prior_weights(original, trained), [1.8, 0.9, 0.3], atol=1e-12)
    out = prior_corrected(np.array([[0.5, 0.3, 0.2]]), original, trained)
    # 0.5 * 1.8 = 0.9, 0.3 * 0.9 = 0.27, 0.2 * 0.3 = 0.06; their sum is 1.23
    np.testing.assert_allclose(out, [[0.9 / 1.23, 0.27 / 1.23, 0.06 / 1.23]], atol=1e-12)
    # no balancing: nothing to correct
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    np.testing.assert_allclose(prior_corrected(p, original, original), p, atol=1e-15)
    # a class the model never saw keeps factor 1
    np.testing.assert_allclose(prior_weights([6, 3, 1], [5, 5, 0]), [1.2, 0.6, 1.0])


def test_bad_inputs_name_the_value_and_the_rule() -> None:
    with pytest.raises(ImgBalanceError, match=r"Temperature -1.0 is not valid.*> 0"):
        temperature_scaled(P3, -1.0)
    with pytest.raises(ImgBalanceError, match=r"bounds \(2.0, 3.0\).*0 < low < 1 < high"):
        fit_temperature(Y3, P3, bounds=(2.0, 3.0))
    with pytest.raises(ImgBalanceError, match=r"Labels \(2\) and probabilities"):
        fit_temperature(Y3[:2], P3)
    with pytest.raises(ImgBalanceError, match=r"Label 3 is not a class index.*0\.\.2"):
        fit_temperature(np.array([0, 1, 3]), P3)
    with pytest.raises(ImgBalanceError, match=r"trained_counts \[0.0, 0.0\].*at least one"):
        prior_weights([1, 2], [0, 0])
    with pytest.raises(ImgBalanceError, match="3 classes and trained_counts 2"):
        prior_weights([1, 2, 3], [1, 2])


def test_posthoc_variants_fit_on_validation_and_score_test() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(0.0, 2.0, (400, 3))
    y = (rng.random(len(z))[:, None] > np.cumsum(_softmax(z), axis=1)).sum(axis=1)
    p = _softmax(3.0 * z)  # overconfident
    post = posthoc_variants((y[:200], p[:200]), (y[200:], p[200:]), ["a", "b", "c"],
                            [50, 30, 20], [40, 40, 40])  # fmt: skip
    assert set(post.metrics) == {
        "logit_adjustment", "threshold_moving", "temperature", "prior_correction"
    }  # fmt: skip
    assert post.temperature == fit_temperature(y[:200], p[:200]) and post.temperature > 1.5
    scaled = temperature_scaled(p[200:], post.temperature)
    assert post.metrics["temperature"]["nll"] == pytest.approx(
        log_loss(y[200:], scaled, labels=[0, 1, 2]), abs=1e-12
    )
    plain = classification_metrics(y[200:], p[200:], ["a", "b", "c"])
    assert post.metrics["temperature"]["nll"] < plain["nll"]
    summary = post.summary()
    for entry in summary.values():
        assert {"macro_f1", "balanced_accuracy", "accuracy", "nll", "brier", "ece"} <= set(entry)
    np.testing.assert_allclose(post.prior_weights, [1.5, 0.9, 0.6])


# -- a real run: every final metric again, from predictions.csv --------------------------


def _read_predictions(
    path: Path, classes: list[str]
) -> tuple[list[dict[str, str]], np.ndarray, np.ndarray]:
    """The rows of a predictions file, its true labels and its probabilities."""
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["path", "label", "label_idx", "pred",
                                     *(f"p:{c}" for c in classes)]  # fmt: skip
        rows = list(reader)
    y = np.array([int(r["label_idx"]) for r in rows], dtype=np.int64)
    proba = np.array([[float(r[f"p:{c}"]) for c in classes] for r in rows]).reshape(
        len(rows), len(classes)
    )
    return rows, y, proba


def _check_recomputed(out: Path, summary: dict, expected_paths: dict[str, list[str]]) -> None:
    classes = summary["classes"]
    assert json.loads((out / "experiment_summary.json").read_text()) == summary
    files = {"test": "predictions.csv", "val": "val_predictions.csv"}
    for split, metrics in (("test", summary["final_metrics"]), ("val", summary["val_metrics"])):
        rows, y, proba = _read_predictions(out / files[split], classes)
        assert [r["path"] for r in rows] == expected_paths[split]
        pred = proba.argmax(axis=1)
        assert [r["label"] for r in rows] == [classes[i] for i in y]
        assert [r["pred"] for r in rows] == [classes[i] for i in pred]
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
        present = np.unique(y)
        with warnings.catch_warnings():  # y_pred may hold a class absent from y_true
            warnings.simplefilter("ignore", UserWarning)
            recomputed = {
                "accuracy": accuracy_score(y, pred),
                "balanced_accuracy": balanced_accuracy_score(y, pred),
                "macro_f1": f1_score(y, pred, labels=present, average="macro", zero_division=0),
                "nll": log_loss(y, proba, labels=list(range(len(classes)))),
                "brier": float(((proba - np.eye(len(classes))[y]) ** 2).sum(axis=1).mean()),
            }
        for key, value in recomputed.items():
            assert metrics[key] == pytest.approx(value, abs=1e-9), (split, key)
    # the post-hoc fits again, from val_predictions.csv alone
    _, val_y, val_p = _read_predictions(out / "val_predictions.csv", classes)
    _, test_y, test_p = _read_predictions(out / "predictions.csv", classes)
    t = fit_temperature(val_y, val_p)
    assert summary["temperature"] == pytest.approx(t, rel=1e-9)
    post = summary["posthoc"]
    assert post["temperature"]["nll"] == pytest.approx(
        log_loss(test_y, temperature_scaled(test_p, t), labels=list(range(len(classes)))),
        abs=1e-9,
    )
    stats = json.loads((out / "dataset_statistics.json").read_text())
    before = [stats["train"]["counts"][c] for c in classes]
    after = [stats["train_after_balancing"]["counts"][c] for c in classes]
    assert summary["prior_correction_weights"] == pytest.approx(
        prior_weights(before, after).tolist(), abs=1e-12
    )
    corrected = prior_corrected(test_p, before, after)
    assert post["prior_correction"]["brier"] == pytest.approx(
        float(((corrected - np.eye(len(classes))[test_y]) ** 2).sum(axis=1).mean()), abs=1e-9
    )
    for entry in post.values():
        assert {"macro_f1", "balanced_accuracy", "nll", "brier", "ece"} <= set(entry)
    with (out / "test_metrics.csv").open(encoding="utf-8", newline="") as fh:
        table = list(csv.DictReader(fh))
    for key in ("nll", "brier"):
        row = next(r for r in table if r["variant"] == "model" and r["class"] == key)
        assert float(row["f1"]) == pytest.approx(summary["final_metrics"][key], rel=1e-12)
    assert {r["variant"] for r in table} == {"model", *post}


def test_linear_run_metrics_recompute_from_predictions(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for (name, colour), n in zip(COLOURS.items(), (30, 12, 6), strict=True):
        for i in range(n):
            p = tmp_path / "data" / name / f"{i}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            # each image's colour half its class's, half random: the classes overlap
            mixed = tuple(int(0.5 * v + 0.5 * rng.integers(0, 256)) for v in colour)
            colour_image(rng, mixed).save(p, quality=95)
    imgbalance.write_split(imgbalance.split(tmp_path / "data", random_state=0), tmp_path / "split")
    with (tmp_path / "split" / "splits.csv").open(encoding="utf-8", newline="") as fh:
        listed = list(csv.DictReader(fh))
    cfg = RunConfig.from_dict({"data": str(tmp_path / "split"), "model": "linear", "seed": 0,
                               "features": "thumbnail:4", "technique": "random-over"})  # fmt: skip
    out = tmp_path / "run"
    summary = run_training(cfg, out, balanced_cache=tmp_path / "bal")
    # splits.csv's paths, in its row order (the order of the split's rows)
    expected = {s: [r["path"] for r in listed if r["split"] == s] for s in ("val", "test")}
    _check_recomputed(out, summary, expected)
    assert summary["prior_correction_weights"] != [1.0, 1.0, 1.0]  # random-over moved the prior
    assert summary["temperature"] != 1.0  # fitted on 7 overlapping validation images


def test_small_cnn_run_metrics_recompute_from_predictions(split_tree: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="small-cnn needs the torch extra")
    cfg = RunConfig.from_dict({"data": str(split_tree), "image_size": 16, "epochs": 2,
                               "batch_size": 8, "seed": 0, "technique": "random-over"})  # fmt: skip
    summary = run_training(cfg, tmp_path / "run", balanced_cache=tmp_path / "bal")
    # relative to the split's own folder (split_tree/test/blue/blue 0.png: "blue/blue 0.png")
    rows = load_split(split_tree).rows
    expected = {
        s: [Path(p).relative_to((split_tree / s).resolve()).as_posix() for p, _ in rows[s]]
        for s in ("val", "test")
    }
    assert "blue/blue 0.png" in expected["test"]
    _check_recomputed(tmp_path / "run", summary, expected)
    # train 24/8/3 oversampled to 24/24/24: factors 24/35 / (1/3), 8/35 / (1/3), 3/35 / (1/3)
    assert summary["prior_correction_weights"] == pytest.approx([72 / 35, 24 / 35, 9 / 35])


def test_a_validation_split_classified_all_right_fixes_no_temperature() -> None:
    from imgbalance.experiments.calibration import fit_temperature

    proba = np.array([[0.6, 0.4], [0.3, 0.7], [0.55, 0.45]])
    assert fit_temperature([0, 1, 0], proba) == 1.0  # not the search's lower bound
    assert fit_temperature([0, 1, 1], proba) != 1.0  # one wrong: a minimum exists
