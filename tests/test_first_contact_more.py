"""First contact, continued: a class of one image, errors that name what the user can type,
bad ``train --set`` values and damaged run summaries."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgbalance
from imgbalance import plan_arrays

from imgtools import rgb, run_cli, save

run = run_cli


def one_line(text: str) -> str:
    """The CLI's message with rich's line wrapping undone."""
    return " ".join(text.split())


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def smooth(seed: int, colour: tuple[int, int, int]) -> Image.Image:
    """A small smooth image around a class colour: a flipped or rotated copy stays close
    to it in feature space, as with real photographs (a flipped noise image does not)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 120, (3, 4, 3), dtype=np.uint8))
    arr = np.asarray(coarse.resize((24, 16), Image.Resampling.BILINEAR), dtype=np.int64)
    return Image.fromarray(np.clip(arr + np.array(colour) - 60, 0, 255).astype(np.uint8))


@pytest.fixture
def one_image(tmp_path: Path) -> Path:
    """Classes of 8 PNGs, 4 JPEGs and a single PNG."""
    root = tmp_path / "data"
    for i in range(8):
        save(smooth(300 + i, (200, 60, 60)), root / "big" / f"b{i}.png")
    for i in range(4):
        save(smooth(400 + i, (60, 200, 60)), root / "mid" / f"m{i}.jpg", "JPEG", quality=95)
    save(smooth(500, (60, 60, 200)), root / "one" / "only.png")
    return root


def manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# -- 1. Mixup never blends an image with itself -------------------------------------------


@pytest.mark.parametrize("method", ["stem", "mixup"])
def test_no_synthetic_file_repeats_another_or_an_original(
    method: str, one_image: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    r = run("balance", one_image, out, "--method", method, "--seed", "0")
    assert r.returncode == 0, r.stderr
    rows = manifest(out)
    synthetic = [row for row in rows if row["origin"] == "synthetic"]
    hashes = [sha(out / row["path"]) for row in synthetic]  # every one new pixels
    assert len(set(hashes)) == len(hashes), "two synthetic files are byte-identical"
    originals = {sha(p) for p in one_image.rglob("*") if p.is_file()}
    assert not originals & set(hashes), "a synthetic file repeats an original"
    assert not [row for row in synthetic if row["method"] == "mixup" and row["op"] == "copy"]
    for row in synthetic:  # a Mixup image has two or more different parents (STEM: SMOTE's)
        if row["op"] == "mixup":
            assert len(set(json.loads(row["parents"]))) >= 2
    said = 'class "one" has no two different images to blend'
    assert said in one_line(r.stderr)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert any(said in n for n in summary["notes"])
    assert said in (out / "balance_summary.txt").read_text(encoding="utf-8")
    one = [row for row in synthetic if row["class"] == "one" and row["method"] == "mixup"]
    # augmented copies instead (no torch needed), and the note says so
    assert one and {row["op"] for row in one} == {"augment"}
    assert "augmented copies of its image instead" in one_line(r.stderr)


def test_mixup_counts_copies_and_duplicates_once() -> None:
    # a class of two byte-identical images (or an image and its copy) has one image to blend
    X = np.random.default_rng(0).random((12, 6)).astype(np.float32)
    X[11] = X[10]
    y = np.array([0] * 10 + [1] * 2)
    plan = plan_arrays(X, y, ["a", "b"], "mixup", random_state=0)
    assert not [r for r in plan.recipes if r.op == "mixup" and r.label == 1]
    assert any('class "b" has no two different images' in n for n in plan.notes)


def test_mixup_blends_are_never_near_copies_of_their_base() -> None:
    # lam ~ Beta(0.4, 0.4) is often within 1e-3 of 0 or 1: such a blend rounds to its base
    X = np.random.default_rng(1).random((203, 6)).astype(np.float32)
    y = np.array([0] * 200 + [1] * 3)
    plan = plan_arrays(X, y, ["a", "b"], "mixup", random_state=0)
    shares = [min(r.weights) for r in plan.recipes]
    assert len(shares) == 197
    assert min(shares) >= 0.02
    assert len({(r.parents, r.weights) for r in plan.recipes}) == len(plan.recipes)


# -- 2. SMOTE-family methods and a class of one image ---------------------------------------


@pytest.mark.parametrize("method", ["smote", "adasyn", "smote,enn,mixup"])
def test_one_image_class_default_is_stated(method: str, one_image: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = run("balance", one_image, out, "--method", method)
    assert r.returncode == 0, r.stderr
    said = 'class "one" has 1 image(s), too few to interpolate; used'
    assert said in one_line(r.stderr)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["after"]["one"] == 8
    assert any(said in n for n in summary["notes"])
    ops = {row["op"] for row in manifest(out) if row["class"] == "one" and row["op"]}
    assert ops == {"augment"}
    if method == "smote,enn,mixup":  # a pipeline's target reads as what it is
        assert "target each step's default" in r.stdout and "target None" not in r.stdout
        text = (out / "balance_summary.txt").read_text(encoding="utf-8")
        assert "target:   each step's default" in text
    planned = imgbalance.plan(one_image, method=method, random_state=0, workers=1)
    assert planned.counts_after()["one"] == 8
    assert any(said in n for n in planned.plan.notes)


def _cli_suggestions(message: str) -> list[list[str]]:
    """Every ``--flag value`` the error offers, as arguments to run with."""
    found = re.findall(r"\((--[a-z-]+) ([a-z-]+)[,)]", message)
    found += re.findall(r"use (--method) ([a-z-]+)", message)
    return [[flag, value] for flag, value in found]


@pytest.mark.parametrize("method", ["smote", "adasyn", "smote,enn,mixup"])
def test_cli_error_suggestions_work_when_followed(
    method: str, one_image: Path, tmp_path: Path
) -> None:
    strict = ["--small-class-fallback", "error"]
    r = run("balance", one_image, tmp_path / "x", "--method", method, *strict)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    message = one_line(r.stderr)
    # the smallest class is named: lowering k (which the 4-image class would take) cannot help
    assert 'Class "one" has 1 image(s)' in message and "lower k" not in message
    suggestions = _cli_suggestions(message)
    assert ["--small-class-fallback", "random-over"] in suggestions
    assert ["--method", "random-over"] in suggestions
    for n, (flag, value) in enumerate(suggestions):
        args = [flag, value] if flag == "--method" else ["--method", method, flag, value]
        followed = run("balance", one_image, tmp_path / f"out{n}", *args)
        assert followed.returncode == 0, (args, followed.stderr)


def test_cli_lower_k_suggestion_works(one_image: Path, tmp_path: Path) -> None:
    for p in (one_image / "one").iterdir():
        p.unlink()
    (one_image / "one").rmdir()
    strict = ["--small-class-fallback", "error"]
    r = run("balance", one_image, tmp_path / "x", *strict)
    assert r.returncode == 1
    message = one_line(r.stderr)
    assert "(--k-neighbors 3)" in message
    followed = run("balance", one_image, tmp_path / "out", *strict, "--k-neighbors", "3")
    assert followed.returncode == 0, followed.stderr


def test_python_error_suggestions_work_when_followed(one_image: Path) -> None:
    with pytest.raises(imgbalance.ImgBalanceError) as err:
        imgbalance.plan(one_image, method="adasyn", small_class_fallback="error", workers=1)
    message = str(err.value)
    pairs = re.findall(r"(\w+)='([\w-]+)'", message)
    assert ("small_class_fallback", "random-over") in pairs and ("method", "random-over") in pairs
    for key, value in pairs:
        kwargs = {"method": value} if key == "method" else {"method": "adasyn", key: value}
        planned = imgbalance.plan(one_image, workers=1, **kwargs)  # type: ignore[arg-type]
        assert planned.counts_after()["one"] == 8


# -- 3. errors name keyword arguments in Python and flags on the command line --------------


def test_small_class_error_names_keywords_in_python_and_flags_in_the_cli(
    one_image: Path, tmp_path: Path
) -> None:
    with pytest.raises(imgbalance.ImgBalanceError) as err:
        imgbalance.plan(one_image, method="smote", small_class_fallback="error", workers=1)
    message = str(err.value)
    assert "small_class_fallback='random-over'" in message and "method='random-over'" in message
    assert "--" not in message
    r = run("balance", one_image, tmp_path / "x", "--small-class-fallback", "error")
    cli = one_line(r.stderr)
    assert "(--small-class-fallback random-over)" in cli and "--method random-over" in cli
    assert "='" not in cli


def test_cleaning_error_names_keywords_in_python() -> None:
    rng = np.random.default_rng(0)
    y = np.array([0] * 60 + [1] * 50 + [2] * 12)
    X = rng.normal(0, 1, (len(y), 4)).astype(np.float32)
    with pytest.raises(imgbalance.ImgBalanceError) as err:
        plan_arrays(X, y, ["big", "mid", "small"], "enn", random_state=0)
    message = str(err.value)
    assert "clean_originals='all'" in message and "clean_originals='none'" in message
    assert "--clean-originals" not in message and "--features" not in message
    plan = plan_arrays(X, y, ["big", "mid", "small"], "enn", random_state=0, clean_originals="all")
    assert len(plan.kept) < len(y)  # the suggestion, followed


def test_resume_error_names_overwrite_both_ways(one_image: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    imgbalance.balance(one_image, out, "smote", random_state=0, workers=1, plots=False)
    with pytest.raises(imgbalance.OutputError) as err:
        imgbalance.balance(
            one_image, out, "smote", random_state=1, workers=1, plots=False, resume=True
        )
    assert "or overwrite=True to start again" in str(err.value)
    assert "it differs in seed (0 there, 1 now)" in str(err.value)
    assert "--overwrite" not in str(err.value)
    r = run("balance", one_image, out, "--seed", "1", "--resume")
    assert r.returncode == 1 and "or --overwrite to start again" in one_line(r.stderr)
    imgbalance.balance(
        one_image, out, "smote", random_state=1, workers=1, plots=False, overwrite=True
    )


# -- 4. train --set with a bad value --------------------------------------------------------


@pytest.fixture
def tiny_split(tmp_path: Path) -> Path:
    root = tmp_path / "split"
    seed = 600
    for part, n in (("train", 4), ("val", 2), ("test", 2)):
        for name in ("a", "b"):
            for i in range(n):
                seed += 1
                save(rgb(seed, (12, 10)), root / part / name / f"{i}.png")
    return root


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("lr=abc", ["lr must be a number >= 0, got 'abc'", "lr=0.001"]),
        ("epochs=-1", ["epochs must be an integer >= 1, got -1", "epochs=30"]),
        ("unknown_key=1", ["Unknown run setting(s) ['unknown_key']", "Valid settings:"]),
        ("epoch=3", ["Unknown run setting(s) ['epoch']", "Did you mean epochs?"]),
        ("lr", ['"lr" must look like key=value', "epochs=30"]),
    ],
)
def test_train_bad_setting_is_one_clear_error(
    setting: str, expected: list[str], tiny_split: Path, tmp_path: Path
) -> None:
    r = run("train", tiny_split, "--out", tmp_path / "run", "--model", "linear", "--set", setting)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("Error:") == 1
    message = one_line(r.stderr)
    for text in expected:
        assert text in message
    assert "--param" not in message  # train's options are --set and --technique-param
    if len(message) < 190:  # one line on a 200-column terminal
        assert len(r.stderr.strip().splitlines()) == 1


# -- 5. report over damaged run summaries ----------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        {"classes": ["a"], "final_metrics": {}},  # no config
        [1, 2, 3],  # a JSON list
        {"config": [], "classes": ["a"], "final_metrics": {}},  # the keys, but not a run's
    ],
)
def test_report_over_a_damaged_summary(content: object, tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "baseline__small-cnn__seed0"
    folder.mkdir(parents=True)
    (folder / "experiment_summary.json").write_text(json.dumps(content), encoding="utf-8")
    r = run("report", tmp_path / "runs")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("Error:") == 1
    message = one_line(r.stderr)
    assert "baseline__small-cnn__seed0" in message
    assert "Delete that run folder and run the experiment again" in message
