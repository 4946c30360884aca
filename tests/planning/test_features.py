from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgbalance.planning.features import compute_features, parse_feature_spec, thumbnail

from imgtools import png_files, save


def _files(tmp_path: Path, n: int) -> tuple[list[str], list[str]]:
    return png_files(tmp_path, n, (20, 12))


def test_thumbnail_is_area_average(tmp_path: Path) -> None:
    arr = np.zeros((4, 4, 3), dtype=np.uint8)
    arr[:2, :2] = 255  # top-left quarter white
    p = tmp_path / "q.png"
    save(Image.fromarray(arr), p)
    t = thumbnail(str(p), 2, "gray").reshape(2, 2)
    np.testing.assert_allclose(t, [[1.0, 0.0], [0.0, 0.0]], atol=1e-6)
    assert thumbnail(str(p), 1, "rgb").tolist() == pytest.approx([0.25, 0.25, 0.25], abs=1e-3)


def test_cache_round_trip_duplicates_and_damage(tmp_path: Path) -> None:
    paths, hashes = _files(tmp_path, 6)
    hashes[5] = hashes[4]  # an exact duplicate: one cache row
    cache = tmp_path / "cache"
    first, failed = compute_features(paths, hashes, "thumbnail:8", cache_path=cache, workers=1)
    assert failed == {} and first.shape == (6, 8 * 8 * 3)
    again, _ = compute_features(paths[:3], hashes[:3], "thumbnail:8", cache_path=cache, workers=1)
    np.testing.assert_array_equal(again, first[:3])
    stored = np.load(cache / "features" / "thumbnail-8-rgb.npz")
    assert len(stored["sha256"]) == 5
    (cache / "features" / "thumbnail-8-rgb.npz").write_bytes(b"not a zip")
    rebuilt, _ = compute_features(paths, hashes, "thumbnail:8", cache_path=cache, workers=1)
    np.testing.assert_array_equal(rebuilt, first)


def test_undecodable_files_are_reported(tmp_path: Path) -> None:
    paths, hashes = _files(tmp_path, 3)
    Path(paths[1]).write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    feats, failed = compute_features(paths, hashes, "thumbnail:4", cache=False, workers=1)
    assert list(failed) == [1] and not feats[1].any() and feats[0].any()


def test_pca_and_spec_errors(tmp_path: Path) -> None:
    paths, hashes = _files(tmp_path, 10)
    feats, _ = compute_features(paths, hashes, "pca:3:thumbnail:8", cache=False, workers=1)
    assert feats.shape == (10, 3)
    assert str(parse_feature_spec("thumbnail:16:gray")) == "thumbnail:16:gray"
    with pytest.raises(ValueError, match="Unknown feature space"):
        parse_feature_spec("hog")
    spec = parse_feature_spec("pca:8:embedding:resnet18:/w/my model.pth")
    assert (spec.model, spec.weights, spec.pca) == ("resnet18", "/w/my model.pth", 8)
    assert str(parse_feature_spec("embedding:resnet18")) == "embedding:resnet18:DEFAULT"
    assert not spec.is_image and parse_feature_spec("thumbnail").is_image
