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
)

from imgtools import rgb, save

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


def _torchvision_augment(image: Image.Image, params: dict[str, object]) -> Image.Image:
    """The reference: the same drawn parameters through torchvision.transforms.v2 (how
    imgbalance applied them before it called Pillow directly)."""
    import torchvision.transforms.v2.functional as F
    from torchvision.transforms import InterpolationMode

    out = image
    if params["hflip"]:
        out = F.horizontal_flip(out)
    if params["vflip"]:
        out = F.vertical_flip(out)
    turns = int(params["quarter_turns"]) % 4  # type: ignore[call-overload]
    if turns and out.width != out.height:
        turns = 2 if turns in (1, 3) else turns
    if turns:
        out = out.transpose(
            {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180}.get(
                turns, Image.Transpose.ROTATE_270
            )
        )
    angle, scale = float(params["angle"]), float(params["scale"])  # type: ignore[arg-type]
    fx, fy = params["translate"]  # type: ignore[misc]
    tx, ty = fx * out.width, fy * out.height
    if angle or fx or fy or scale != 1.0:
        fill = None
        if params["corners"] == "zoom":
            scale = max(scale, cover_scale(out.width, out.height, angle, tx, ty))
        else:
            fill = int(params["corners"])  # type: ignore[call-overload]
        out = F.affine(
            out, angle=angle, translate=[tx, ty], scale=scale, shear=[0.0, 0.0],
            interpolation=InterpolationMode.BILINEAR,
            fill=None if fill is None else [fill] * len(out.getbands()),
        )  # fmt: skip
    if params["brightness"] != 1.0:
        out = F.adjust_brightness(out, float(params["brightness"]))  # type: ignore[arg-type]
    if params["contrast"] != 1.0:
        out = F.adjust_contrast(out, float(params["contrast"]))  # type: ignore[arg-type]
    if out.mode == "RGB":
        if params["saturation"] != 1.0:
            out = F.adjust_saturation(out, float(params["saturation"]))  # type: ignore[arg-type]
        if params["hue"]:
            out = F.adjust_hue(out, float(params["hue"]))  # type: ignore[arg-type]
    return out


def test_the_same_pixels_as_torchvision() -> None:
    """Pillow called directly gives torchvision's pixels, for every policy, both modes,
    odd and square sizes, zoomed and filled corners, and strong colour changes."""
    pytest.importorskip("torchvision", reason="the reference needs the torch extra")
    strong = {"rotate": 40.0, "scale": (0.7, 1.3), "translate": 0.2, "hue": 0.5,
              "brightness": 0.5, "contrast": 0.5, "saturation": 0.7, "vflip": 0.5,
              "quarter_turns": True}  # fmt: skip
    policies = [make_policy(name, {}) for name in POLICIES]
    policies += [
        make_policy("standard", strong),
        make_policy("standard", {**strong, "corners": 128}),
    ]
    checked = 0
    for size in ((33, 21), (24, 24), (7, 40)):
        for mode in ("RGB", "L"):
            image = rgb(size[0] * 100 + size[1], size).convert(mode)
            for policy in policies:
                for seed in range(12):
                    params = draw_augment(policy, seed)
                    ours = apply_augment(image, params)
                    theirs = _torchvision_augment(image, params)
                    assert ours.mode == theirs.mode and ours.size == theirs.size
                    assert ours.tobytes() == theirs.tobytes(), (size, mode, params)
                    checked += 1
    assert checked == 3 * 2 * len(policies) * 12


def test_augment_runs_without_torch() -> None:
    """No torch import on the way: a fresh process with torch and torchvision blocked."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np\n"
        "from imgbalance.planner import plan_arrays\n"
        "X = np.random.default_rng(0).random((12, 48)).astype('float32')\n"
        "plan = plan_arrays(X, [0] * 10 + [1] * 2, ['a', 'b'], 'augment', random_state=0)\n"
        "print(sum(r.op == 'augment' for r in plan.recipes))\n"
    )
    import subprocess

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "8"
