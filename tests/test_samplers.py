"""imbalanced-learn compatibility of the in-memory samplers."""

from __future__ import annotations

import numpy as np
import pytest
from imblearn.pipeline import make_pipeline
from imblearn.utils.estimator_checks import parametrize_with_checks
from sklearn.linear_model import LogisticRegression

from imgbalance.samplers import CleaningSampler, HybridSampler, OverSampler, UnderSampler

SAMPLERS = [
    OverSampler("smote", random_state=0),
    OverSampler("adasyn", random_state=0),
    OverSampler("borderline-smote", random_state=0),
    OverSampler("random-over", random_state=0),
    OverSampler("mixup", random_state=0),
    UnderSampler("random-under", random_state=0),
    CleaningSampler("enn"),
    CleaningSampler("tomek"),
    HybridSampler("smote-enn", random_state=0),
    HybridSampler("smote-tomek", random_state=0),
]


@parametrize_with_checks(SAMPLERS)
def test_imblearn_estimator_checks(estimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


def test_image_stacks_keep_shape_dtype_and_provenance() -> None:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (30, 6, 5, 3), dtype=np.uint8)
    y = np.array(["cat"] * 24 + ["dog"] * 6)
    sampler = OverSampler("smote", random_state=0, params={"k_neighbors": 3})
    X_res, y_res = sampler.fit_resample(X, y)
    assert X_res.shape == (48, 6, 5, 3) and X_res.dtype == np.uint8
    assert (y_res == "dog").sum() == 24
    assert len(sampler.provenance_) == 48
    for row, (parents, weights) in zip(X_res[30:], sampler.provenance_[30:], strict=True):
        expected = np.tensordot(np.array(weights), X[list(parents)].astype(np.float64), 1)
        np.testing.assert_array_equal(row, np.clip(np.rint(expected), 0, 255))
        assert all(y[p] == "dog" for p in parents)


def test_cleaning_matches_imblearn_sample_indices() -> None:
    from imblearn.under_sampling import EditedNearestNeighbours
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=200, weights=[0.8, 0.2], class_sep=0.5, random_state=0)
    ours = CleaningSampler("enn")
    ours.fit_resample(X, y)
    ref = EditedNearestNeighbours()
    ref.fit_resample(X, y)
    np.testing.assert_array_equal(np.sort(ours.sample_indices_), np.sort(ref.sample_indices_))


def test_in_an_imblearn_pipeline_and_wrong_kind() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 4))
    y = np.array([0] * 70 + [1] * 10)
    model = make_pipeline(OverSampler("smote", random_state=0), LogisticRegression())
    model.fit(X, y)
    assert model.predict(X).shape == (80,)
    with pytest.raises(ValueError, match='needs a method of kind over; "enn" is clean'):
        OverSampler("enn").fit_resample(X, y)


def test_augment_on_image_stacks_and_not_on_features() -> None:
    from PIL import Image

    from imgbalance.planning.augment import apply_augment

    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    y = np.array([0] * 9 + [1] * 3)
    sampler = OverSampler("augment", random_state=0)
    X_res, y_res = sampler.fit_resample(X, y)
    assert X_res.shape == (18, 8, 8, 3) and (y_res == 1).sum() == 9
    for row, recipe in zip(X_res[12:], sampler.plan_.recipes, strict=True):
        expected = apply_augment(Image.fromarray(X[recipe.parents[0]]), recipe.params)
        np.testing.assert_array_equal(row, np.asarray(expected))
    with pytest.raises(ValueError, match="augment needs images"):
        OverSampler("augment", random_state=0).fit_resample(X.reshape(12, -1), y)
