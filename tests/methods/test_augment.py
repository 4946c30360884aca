"""Offline augmentation: drawn parameters, exact pixel effects, planning and rendering."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgbalance
from imgbalance.planner import plan_arrays
from imgbalance.planning.augment import (
    POLICIES,
    apply_augment,
    cover_scale,
    draw_augment,
    make_policy,
    require_torchvision,
)

from imgtools import rgb, save

pytest.importorskip("torchvision", reason="augment needs the torch extra")

NEUTRAL = {
    "hflip": False,
    "vflip": False,
    "quarter_turns": 0,
    "angle": 0.0,
    "scale": 1.0,
    "translate": [0.0, 0.0],
    "brightness": 1.0,
    "contrast": 1.0,
    "saturation": 1.0,
    "hue": 0.0,
    "corners": "zoom",
}


def test_draws_are_seeded_and_within_the_policy() -> None:
    policy = POLICIES["conservative"]
    draws = [draw_augment(policy, s) for s in range(300)]
    assert draws[7] == draw_augment(policy, 7)
    assert draws[7] != draws[8]
    assert all(abs(d["angle"]) <= 10 and 0.9 <= d["brightness"] <= 1.1 for d in draws)
    assert all(not d["vflip"] and d["quarter_turns"] == 0 and d["scale"] == 1.0 for d in draws)
    flips = sum(d["hflip"] for d in draws)
    assert 100 < flips < 200  # p = 0.5
    assert json.loads(json.dumps(draws)) == draws  # stored exactly in plan.json


def test_overrides_and_bad_values() -> None:
    p = make_policy("conservative", {"rotate": 3, "vflip": 1.0, "scale": 1.2, "hflip": None})
    assert p.rotate == 3 and p.vflip == 1.0 and p.scale == (1.2, 1.2) and p.hflip == 0.5
    bad = [
        ("policy", {"policy": "wild"}, "unknown policy"),
        ("hflip", {"hflip": 2}, "probability"),
        ("rotate", {"rotate": 200}, "at most 180"),
        ("brightness", {"brightness": 1.5}, "below 1"),
        ("corners", {"corners": "mirror"}, "zoom"),
        ("scale", {"scale": [1.2, 1.0]}, "low <= high"),
    ]
    for _, params, match in bad:
        with pytest.raises(imgbalance.ImgBalanceError, match=match):
            imgbalance.methods.create_method("augment", **params).validate()


def test_flips_and_turns_are_exact() -> None:
    arr = np.asarray(rgb(3, (20, 20)))
    im = Image.fromarray(arr)
    assert np.array_equal(np.asarray(apply_augment(im, NEUTRAL)), arr)
    out = apply_augment(im, {**NEUTRAL, "hflip": True, "vflip": True})
    assert np.array_equal(np.asarray(out), arr[::-1, ::-1])
    out = apply_augment(im, {**NEUTRAL, "quarter_turns": 1})
    assert np.array_equal(np.asarray(out), np.rot90(arr, 1))
    wide = Image.fromarray(np.asarray(rgb(4, (30, 20))))
    out = apply_augment(wide, {**NEUTRAL, "quarter_turns": 1})  # size kept: a half turn
    assert out.size == (30, 20)
    assert np.array_equal(np.asarray(out), np.asarray(wide)[::-1, ::-1])


def test_rotation_corners_zoom_or_fill() -> None:
    white = Image.new("RGB", (64, 48), (255, 255, 255))
    params = {**NEUTRAL, "angle": 10.0, "translate": [0.04, -0.03]}
    zoomed = np.asarray(apply_augment(white, params))
    assert zoomed.min() >= 250  # covered: no empty corners
    filled = np.asarray(apply_augment(white, {**params, "corners": 0}))
    assert filled[0, 0].max() == 0 and filled[24, 32].min() == 255
    assert cover_scale(100, 100, 0.0, 0.0, 0.0) == pytest.approx(1.0)
    theta = np.radians(10)
    assert cover_scale(64, 48, 10.0, 0.0, 0.0) == pytest.approx(
        np.cos(theta) + 64 / 48 * np.sin(theta)
    )


def test_colour_factors() -> None:
    grey = Image.new("L", (8, 8), 100)
    assert np.asarray(apply_augment(grey, {**NEUTRAL, "brightness": 1.1})).max() == 110
    assert apply_augment(grey, {**NEUTRAL, "saturation": 1.5, "hue": 0.1}).mode == "L"


def test_plans_on_augmented_thumbnails() -> None:
    rng = np.random.default_rng(0)
    shape = (4, 4, 3)
    X = rng.random((12, 48), dtype=np.float32)
    y = np.array([0] * 9 + [1] * 3)
    plan = plan_arrays(X, y, ["a", "b"], "augment", feature_shape=shape, hflip=1.0, rotate=0)
    assert plan.counts_after() == {"a": 9, "b": 9}
    # every original of "b" is used twice before any third time
    assert sorted(r.parents[0] for r in plan.recipes) == [9, 9, 10, 10, 11, 11]
    note = plan_arrays(X, y, ["a", "b"], "augment").notes
    assert any("parent's features" in n for n in note)


def test_smote_falls_back_to_augment_for_tiny_classes() -> None:
    X = np.random.default_rng(1).random((12, 3), dtype=np.float32)
    y = np.array([0] * 10 + [1] * 2)
    plan = plan_arrays(X, y, ["a", "b"], "smote", small_class_fallback="augment")
    assert {r.op for r in plan.recipes} == {"augment"}
    assert any("used augment" in n for n in plan.notes)


def test_balance_renders_augmented_files(tmp_path: Path) -> None:
    for i in range(6):
        save(rgb(i, (40, 30)), tmp_path / "src" / "many" / f"{i}.png")
    for i in range(2):
        save(rgb(10 + i, (30, 40)), tmp_path / "src" / "few" / f"{i}.jpg")
    result = imgbalance.balance(
        tmp_path / "src", tmp_path / "out", method="augment", random_state=0, plots=False, hflip=1.0
    )
    assert result.counts_after == {"few": 6, "many": 6}
    rows = [
        r
        for r in csv.DictReader((tmp_path / "out" / "manifest.csv").open(encoding="utf-8"))
        if r["origin"] == "synthetic"
    ]
    assert len(rows) == 4
    for row in rows:
        params = json.loads(row["params"])
        assert params["hflip"] is True and "image_seed" in params
        out = Image.open(tmp_path / "out" / row["path"])
        parent = Image.open(tmp_path / "src" / json.loads(row["parents"])[0])
        assert out.size == parent.size and out.format == "JPEG"  # the parent's size and format
        again = apply_augment(parent.convert("RGB"), params)
        buf = io.BytesIO()
        again.save(buf, format="JPEG", quality=95)
        # the file is exactly this image, encoded
        assert (tmp_path / "out" / row["path"]).read_bytes() == buf.getvalue()


def test_missing_torchvision_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # as if torchvision were not installed, even after other tests imported it
    for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(imgbalance.ImgBalanceError, match=r"imgbalance\[torch\]"):
        require_torchvision()
    with pytest.raises(imgbalance.ImgBalanceError, match=r"augment needs torchvision.*\[torch\]"):
        plan_arrays(np.zeros((4, 2)), [0, 0, 0, 1], ["a", "b"], "augment")
