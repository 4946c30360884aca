"""Balancing never removes most of a class's real images silently."""

from __future__ import annotations

import numpy as np
import pytest

from imgbalance.errors import ImgBalanceError
from imgbalance.methods import create_method
from imgbalance.planner import plan_arrays

CLASSES = ["big", "mid", "small"]


def overlapping() -> tuple[np.ndarray, np.ndarray]:
    """Three classes drawn from one distribution: ENN flags most samples of every class."""
    rng = np.random.default_rng(0)
    y = np.array([0] * 60 + [1] * 50 + [2] * 12)
    return rng.normal(0, 1, (len(y), 4)).astype(np.float32), y


@pytest.mark.parametrize("method", ["smote-enn", "smote-tomek", "stem"])
def test_hybrids_keep_every_original_by_default(method: str) -> None:
    X, y = overlapping()
    assert create_method(method).params["clean_originals"] == "none"
    plan = plan_arrays(X, y, CLASSES, method, random_state=0)
    assert sorted(plan.kept) == list(range(len(y)))
    # majority and all stay available (imbalanced-learn's behaviour) and do remove originals
    if method != "smote-tomek":  # Tomek links are rare here; ENN flags most samples
        everything = plan_arrays(X, y, CLASSES, method, random_state=0, clean_originals="all")
        assert len(everything.kept) < len(y)
        majority = plan_arrays(X, y, CLASSES, method, random_state=0, clean_originals="majority")
        lost = set(range(len(y))) - set(majority.kept)
        assert lost and all(y[i] == 0 for i in lost)  # only the largest class's originals


def test_enn_refuses_to_remove_most_of_a_class_unless_asked() -> None:
    X, y = overlapping()
    with pytest.raises(
        ImgBalanceError,
        match=r"enn would remove \d+ of the 60 original images "
        r'of class "big" \(more than half\).*clean_originals=\'all\'',
    ):
        plan_arrays(X, y, CLASSES, "enn", random_state=0)
    with pytest.raises(ImgBalanceError, match="more than half"):  # majority, even explicit
        plan_arrays(X, y, CLASSES, "enn", random_state=0, clean_originals="majority")
    allowed = plan_arrays(X, y, CLASSES, "enn", random_state=0, clean_originals="all")
    removed = np.bincount(y[sorted(set(range(len(y))) - set(allowed.kept))], minlength=3)
    assert removed[0] > 30  # what was asked for explicitly is done, as imbalanced-learn does
    kept_all = plan_arrays(X, y, CLASSES, "enn", random_state=0, clean_originals="none")
    assert sorted(kept_all.kept) == list(range(len(y)))


def test_enn_in_a_pipeline_is_guarded_too() -> None:
    X, y = overlapping()
    with pytest.raises(ImgBalanceError, match="more than half"):
        plan_arrays(X, y, CLASSES, "smote,enn", random_state=0, sampling_strategy="all")


def test_light_cleaning_passes_the_guard() -> None:
    rng = np.random.default_rng(1)
    centers = np.array([[0, 0], [6, 0], [0, 6]], dtype=np.float32)
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    X = centers[y] + rng.normal(0, 1, (len(y), 2)).astype(np.float32)
    plan = plan_arrays(X, y, CLASSES, "enn", random_state=0)
    assert len(plan.kept) >= len(y) - 30
