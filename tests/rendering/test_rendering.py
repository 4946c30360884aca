from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgbalance
from imgbalance import OutputError
from imgbalance.rendering.kernel import RenderJob, RenderOptions, render_recipe

from conftest import tree_digest
from imgtools import exif_rotated_jpeg, rgb, save


def arr_png(path: Path, arr: np.ndarray) -> str:
    save(Image.fromarray(arr.astype(np.uint8)), path)
    return str(path)


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_blend_is_rounded_not_truncated(tmp_path: Path) -> None:
    a = arr_png(tmp_path / "a.png", np.full((2, 3, 3), 10))
    b = arr_png(tmp_path / "b.png", np.full((2, 3, 3), 13))
    job = RenderJob(0, "x.png", "smote", (a, b), (0.5, 0.5), "RGB")
    out = decode(render_recipe(job, RenderOptions()))
    assert out.shape == (2, 3, 3) and (out == 12).all()  # 11.5 rounds to 12 (even), not 11
    job = RenderJob(0, "x.png", "smote", (a, b), (0.3, 0.7), "RGB")
    assert (decode(render_recipe(job, RenderOptions())) == 12).all()  # 12.1 -> 12
    job = RenderJob(0, "x.png", "smote", (a, b), (0.1, 0.9), "RGB")
    assert (decode(render_recipe(job, RenderOptions())) == 13).all()  # 12.7 -> 13


def test_blend_exact_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 4, 3))
    z = rng.integers(0, 256, (5, 4, 3))
    a, b = arr_png(tmp_path / "a.png", x), arr_png(tmp_path / "b.png", z)
    job = RenderJob(0, "x.png", "mixup", (a, b), (0.75, 0.25), "RGB")
    expected = np.clip(
        np.rint(np.float32(0.75) * x.astype(np.float32) + np.float32(0.25) * z.astype(np.float32)),
        0,
        255,
    )
    np.testing.assert_array_equal(decode(render_recipe(job, RenderOptions())), expected)


@pytest.mark.parametrize("weights", [(0.5, 0.5), (1e-9, 1 - 1e-9), (0.999, 0.001), (1.0,)])
def test_convex_blends_of_extremes_stay_in_range(
    tmp_path: Path, weights: tuple[float, ...]
) -> None:
    white = arr_png(tmp_path / "w.png", np.full((3, 4, 3), 255))
    job = RenderJob(0, "x.png", "smote", (white,) * len(weights), weights, "RGB")
    assert (decode(render_recipe(job, RenderOptions())) == 255).all()  # never wraps to 0
    black = arr_png(tmp_path / "b.png", np.zeros((3, 4, 3)))
    job = RenderJob(0, "x.png", "smote", (black,) * len(weights), weights, "RGB")
    assert (decode(render_recipe(job, RenderOptions())) == 0).all()


def test_a_blend_outside_the_hull_is_clipped(tmp_path: Path) -> None:
    a = arr_png(tmp_path / "a.png", np.full((2, 2, 3), 250))
    b = arr_png(tmp_path / "b.png", np.full((2, 2, 3), 10))
    job = RenderJob(0, "x.png", "smote", (a, b), (1.5, -0.5), "RGB")  # 370: clipped to 255
    assert (decode(render_recipe(job, RenderOptions())) == 255).all()
    job = RenderJob(0, "x.png", "smote", (b, a), (1.5, -0.5), "RGB")  # -110: clipped to 0
    assert (decode(render_recipe(job, RenderOptions())) == 0).all()


def test_parents_resized_to_base_and_modes_normalised(tmp_path: Path) -> None:
    base = arr_png(tmp_path / "base.png", np.full((6, 8, 3), 200))
    other = tmp_path / "other.png"
    save(Image.new("L", (16, 12), 100), other)  # gray, other size
    rgba = tmp_path / "rgba.png"
    save(Image.new("RGBA", (8, 6), (0, 0, 0, 0)), rgba)  # fully transparent -> white
    job = RenderJob(0, "x.png", "smote", (base, str(other), str(rgba)), (0.5, 0.25, 0.25), "RGB")
    out = decode(render_recipe(job, RenderOptions()))
    assert out.shape == (6, 8, 3)
    assert (out == round(0.5 * 200 + 0.25 * 100 + 0.25 * 255)).all()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    p = exif_rotated_jpeg(tmp_path / "r.jpg", stored=(40, 20), orientation=6)
    job = RenderJob(0, "x.png", "smote", (str(p), str(p)), (0.5, 0.5), "RGB")
    assert decode(render_recipe(job, RenderOptions())).shape == (40, 20, 3)


def test_copy_is_byte_for_byte_and_image_size_resizes(tmp_path: Path) -> None:
    p = tmp_path / "a.jpg"
    save(rgb(1, (30, 20)), p, "JPEG")
    job = RenderJob(0, "x.jpg", "copy", (str(p),), (1.0,), "RGB")
    assert render_recipe(job, RenderOptions()) == p.read_bytes()
    resized = render_recipe(job, RenderOptions(image_size=(16, 8)))
    assert Image.open(io.BytesIO(resized)).size == (16, 8)


def test_each_parent_is_decoded_once_and_resized_copies_do_not_evict_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recipes sharing parents of different sizes: one decode per distinct file, and the
    outputs are those of rendering each recipe with a fresh cache."""
    from imgbalance.rendering import kernel

    rng = np.random.default_rng(1)
    files = [
        arr_png(tmp_path / f"p{i}.png", rng.integers(0, 256, (20 + i, 30 - i, 3))) for i in range(4)
    ]
    jobs = [
        RenderJob(n, f"o{n}.png", "smote", (files[a], files[b]), (0.6, 0.4), "RGB")
        for n, (a, b) in enumerate([(0, 1), (0, 1), (0, 2), (1, 3), (2, 0), (3, 1), (0, 3)])
    ]

    def fresh() -> None:
        kernel._CACHE.items.clear()
        kernel._CACHE.bytes = 0
        kernel._RESIZED.items.clear()
        kernel._RESIZED.bytes = 0

    alone = []
    for job in jobs:
        fresh()
        alone.append(render_recipe(job, RenderOptions()))
    fresh()
    # room for the four decoded files and nothing more: a resized copy kept in the same
    # cache would evict one, and it would be decoded again
    monkeypatch.setattr(kernel._CACHE, "max_bytes", sum((20 + i) * (30 - i) * 3 for i in range(4)))
    before = kernel._CACHE.decodes
    shared = [render_recipe(job, RenderOptions()) for job in jobs]
    assert kernel._CACHE.decodes - before == len(files)
    assert shared == alone
    # a budget too small for one image still renders correctly (decoding again)
    monkeypatch.setattr(kernel._CACHE, "max_bytes", 1)
    fresh()
    assert [render_recipe(job, RenderOptions()) for job in jobs] == alone


def _tree(root: Path, counts: tuple[int, int, int] = (12, 4, 2)) -> Path:
    seed = 0
    for name, n in zip(("cat", "dog", "emu"), counts, strict=True):
        for i in range(n):
            seed += 1
            size = (40, 30) if i % 3 else (50, 36)  # mixed sizes within a class
            save(rgb(seed, size), root / name / f"img {i:02d}.{'jpg' if i % 2 else 'png'}")
    return root


def test_balance_outputs(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    before = tree_digest(src)
    out = tmp_path / "out"
    result = imgbalance.balance(src, out, method="smote", random_state=0, workers=1)
    assert tree_digest(src) == before
    for name in (
        "manifest.csv",
        "summary.json",
        "balance_summary.txt",
        "plan.json",
        "preview.png",
        "class_distribution.png",
    ):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "manifest.csv").open(encoding="utf-8")))
    originals = [r for r in rows if r["origin"] == "original"]
    assert len(originals) == 18
    for r in originals:  # originals are hard links, byte for byte
        assert os.stat(out / r["path"]).st_ino == os.stat(src / json.loads(r["parents"])[0]).st_ino
    synth = [r for r in rows if r["origin"] == "synthetic"]
    assert len(synth) == 8 + 10
    for r in synth:
        im = Image.open(out / r["path"])
        base = Image.open(src / json.loads(r["parents"])[0])
        assert im.size == base.size and im.mode == "RGB"  # native size, colour
        assert im.format == base.format  # format follows the base parent
    summary = json.loads((out / "summary.json").read_text())
    assert summary["before"] == {"cat": 12, "dog": 4, "emu": 2}
    assert summary["after"] == {"cat": 12, "dog": 12, "emu": 12}
    assert summary["after_ratios"]["balance_ratio"] == 1.0
    assert 'class "emu" has 2 images' in (out / "balance_summary.txt").read_text()
    assert result.counts_after == summary["after"]


def test_manifest_only_and_png_format(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    out = tmp_path / "out"
    imgbalance.balance(
        src,
        out,
        method="mixup",
        random_state=0,
        workers=1,
        manifest_only=True,
        format="png",
        plots=False,
    )
    rows = list(csv.DictReader((out / "manifest.csv").open(encoding="utf-8")))
    originals = [r for r in rows if r["origin"] == "original"]
    assert all(Path(r["path"]).is_absolute() and Path(r["path"]).is_file() for r in originals)
    assert not list((out / "cat").glob("img*"))  # originals are referenced, not linked
    assert all(r["path"].endswith(".png") for r in rows if r["origin"] == "synthetic")


def test_a_parent_edited_between_two_renders_in_one_process_is_read_again(
    tmp_path: Path,
) -> None:
    """A notebook re-balances in the same process after editing an image: neither the
    decoded nor the resized copy of the old file is served."""
    import os

    a = arr_png(tmp_path / "a.png", np.full((6, 8, 3), 10))
    b = arr_png(tmp_path / "b.png", np.full((12, 16, 3), 100))  # another size: resized
    job = RenderJob(0, "x.png", "smote", (a, b), (0.5, 0.5), "RGB")
    assert (decode(render_recipe(job, RenderOptions())) == 55).all()
    arr_png(tmp_path / "b.png", np.full((12, 16, 3), 200))
    st = os.stat(b)
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later modification time
    assert (decode(render_recipe(job, RenderOptions())) == 105).all()


def test_webp_format_is_lossless_and_reads_back(tmp_path: Path) -> None:
    """format=webp: the same pixels as png, in files the scanner and training read."""
    src = _tree(tmp_path / "src")
    for fmt in ("png", "webp"):
        imgbalance.balance(src, tmp_path / fmt, method="smote", random_state=0, workers=1,
                           format=fmt, plots=False)  # fmt: skip
    png = sorted((tmp_path / "png").glob("*/synthetic/*.png"))
    webp = sorted((tmp_path / "webp").glob("*/synthetic/*.webp"))
    assert png and [p.stem for p in png] == [p.stem for p in webp]
    for a, b in zip(png, webp, strict=True):
        np.testing.assert_array_equal(
            np.asarray(Image.open(a).convert("RGB")), np.asarray(Image.open(b).convert("RGB"))
        )
    rows = list(csv.DictReader((tmp_path / "webp" / "manifest.csv").open(encoding="utf-8")))
    assert all(r["path"].endswith(".webp") for r in rows if r["origin"] == "synthetic")
    cat = imgbalance.scan(tmp_path / "webp")
    assert not [s for s in cat.skipped if "/" in s.path]  # every image inside a class read
    assert len(cat.records) == len(rows)
    with pytest.raises(imgbalance.ConfigError, match="webp"):
        imgbalance.balance(src, tmp_path / "x", method="smote", format="gif", plots=False)


def test_output_inside_input_and_existing_output_refused(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    before = tree_digest(src)
    with pytest.raises(OutputError, match="inside the input folder"):
        imgbalance.balance(src, src / "balanced", method="smote")
    assert tree_digest(src) == before
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="already exists"):
        imgbalance.balance(src, out, method="smote")
    imgbalance.balance(src, out, method="smote", overwrite=True, plots=False, workers=1)
    assert (out / "notes.txt").read_text() == "mine"


def test_resume_after_interruption_gives_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _tree(tmp_path / "src", (40, 4, 2))  # 74 recipes: more than two chunks
    full = tmp_path / "full"
    imgbalance.balance(src, full, method="smote", random_state=3, workers=1, plots=False)
    import imgbalance.rendering.pool as rendering

    real = rendering.render_recipe
    calls = {"n": 0}

    def flaky(job: RenderJob, opts: RenderOptions) -> bytes:
        calls["n"] += 1
        if calls["n"] > rendering.CHUNK + 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-render
        return real(job, opts)

    monkeypatch.setattr(rendering, "render_recipe", flaky)
    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        imgbalance.balance(src, part, method="smote", random_state=3, workers=1, plots=False)
    assert not (part / "manifest.csv").exists()
    journal = (part / ".imgbalance-journal.jsonl").read_text().splitlines()
    assert len(journal) == rendering.CHUNK  # one finished chunk
    with pytest.raises(
        OutputError, match=r"holds an interrupted imgbalance run\. Pass resume=True"
    ):
        imgbalance.balance(src, part, method="smote", random_state=3, workers=1, plots=False)
    with pytest.raises(OutputError, match="different plan"):
        imgbalance.balance(src, part, method="smote", random_state=4, workers=1, resume=True)
    monkeypatch.setattr(rendering, "render_recipe", real)
    calls["n"] = 0
    # the same plan in the layout earlier versions wrote (indented) still resumes
    plan_file = part / "plan.json"
    plan_file.write_text(json.dumps(json.loads(plan_file.read_text()), indent=1, sort_keys=True))
    imgbalance.balance(
        src, part, method="smote", random_state=3, workers=1, plots=False, resume=True
    )
    timed = ("summary.json", "balance_summary.txt")
    a = {k: v for k, v in tree_digest(full).items() if k not in timed}
    b = {k: v for k, v in tree_digest(part).items() if k not in timed}
    assert a == b


def test_balance_on_the_messy_tree(tmp_path: Path, messy: Path) -> None:
    before = tree_digest(messy)
    result = imgbalance.balance(
        messy,
        tmp_path / "out",
        method="smote",
        random_state=0,
        workers=1,
        small_class_fallback="random-over",
    )
    assert tree_digest(messy) == before
    after = result.counts_after
    assert after["cats"] == after["dögs with space"] == after["one"] == 12
    assert after["empty_class"] == 0
    rows = list(csv.DictReader((tmp_path / "out" / "manifest.csv").open(encoding="utf-8")))
    assert not any("truncated" in r["path"] or "bomb" in r["path"] for r in rows)
    # Passes the header-only scan, fails to decode: left out, with a note naming it.
    assert not any("body_corrupt" in r["path"] for r in rows)
    # Every file left out is listed with its reason, in the plan, summary.json and the text.
    left = {d["path"]: d["reason"] for d in result.plan.left_out}
    assert "pixels cannot be decoded" in left["cats/body_corrupt.jpg"]
    for path, code in (
        ("cats/truncated.jpg", "truncated"),
        ("cats/empty.jpg", "zero-byte"),
        ("cats/notes.png", "unreadable"),
        ("cats/bomb.png", "decompression-bomb"),
        ("cats/broken.jpg", "broken-link"),
        ("cats/garbage.jpg", "unreadable"),
    ):
        assert left[path].startswith(code), (path, left[path])
    assert left["cats/notes.txt"] and left["README.txt"]  # skipped by the scan, with why
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert {d["path"] for d in summary["left_out"]} == set(left)
    text = (tmp_path / "out" / "balance_summary.txt").read_text(encoding="utf-8")
    assert f"Left out ({len(left)} file(s) of the input):" in text
    assert all(f"  - {path}: " in text for path in left)
    assert any(
        n.startswith(f"{len(left)} file(s) of the input are left out") for n in result.plan.notes
    )
    synth_dogs = [r for r in rows if r["class"] == "dögs with space" and r["origin"] == "synthetic"]
    assert synth_dogs and all((tmp_path / "out" / r["path"]).is_file() for r in synth_dogs)
    # a class of one image gets augmented copies by default, and the plan says so
    one = imgbalance.balance(messy, tmp_path / "out2", method="smote")
    assert any('"one" has 1 image(s), too few to interpolate' in n for n in one.plan.notes)
    with pytest.raises(imgbalance.ImgBalanceError, match=r"has \d image\(s\); smote needs"):
        imgbalance.balance(messy, tmp_path / "out3", method="smote", small_class_fallback="error")


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    result = imgbalance.balance(src, tmp_path / "out", method="stem", dry_run=True)
    assert not (tmp_path / "out").exists()
    assert result.plan.counts_after()["emu"] > 2


def test_features_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _tree(tmp_path / "src")
    first = imgbalance.plan(src, "smote", random_state=0)
    import imgbalance.planning.features as features

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("features recomputed despite the cache")

    monkeypatch.setattr(features, "thumbnail", boom)
    second = imgbalance.plan(src, "smote", random_state=0)
    assert first.plan.to_json() == second.plan.to_json()


def test_stem_save_stages(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    out = tmp_path / "out"
    result = imgbalance.balance(
        src,
        out,
        method="stem",
        random_state=0,
        workers=1,
        plots=False,
        save_stages=True,
        clean_originals="none",
    )
    stage_rows = list(
        csv.DictReader((out / "stages" / "after_smote_enn" / "manifest.csv").open(encoding="utf-8"))
    )
    final_rows = list(csv.DictReader((out / "manifest.csv").open(encoding="utf-8")))
    stage = next(s for s in result.plan.log if s.get("stage") == "after_smote_enn")
    assert len(stage_rows) == sum(stage["after"].values())
    assert {r["method"] for r in stage_rows} <= {"", "smote"}  # before Mixup
    assert {r["path"] for r in stage_rows} <= {r["path"] for r in final_rows}
    assert len(final_rows) - len(stage_rows) == sum(1 for r in final_rows if r["method"] == "mixup")
