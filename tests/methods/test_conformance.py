"""One conformance test over every registered method, on features and on real files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import imgbalance
from imgbalance.methods import create_method, list_methods
from imgbalance.planner import plan_arrays

from conftest import tree_digest
from imgtools import rgb, save

CLASSES = ["big", "mid", "small"]


def features(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.array([[0, 0, 0], [3, 0, 0], [0, 3, 0]], dtype=np.float32)
    y = np.array([0] * 60 + [1] * 25 + [2] * 8)
    return centers[y] + rng.normal(0, 1.0, (len(y), 3)).astype(np.float32), y


def expected_ok(method: str, before: dict[str, int], after: dict[str, int], kept: int) -> None:
    """What the default target means for a method of this *kind* (``Method.kind``), so a
    newly registered method gets real checks without being named here."""
    kind = create_method(method).kind
    top, low = max(before.values()), min(before.values())
    n = sum(before.values())
    if kind == "over":
        assert after == dict.fromkeys(before, top)
        assert kept == n  # over-sampling never removes an original
    elif kind == "under":
        assert after == dict.fromkeys(before, low)
    elif kind == "clean":
        assert all(after[c] <= before[c] for c in before)
        assert after["small"] == before["small"]  # minority originals are protected
    else:
        assert kind == "hybrid", f"{method}: unknown kind {kind!r}"
        assert kept == n  # by default hybrids remove synthetic samples only
        assert all(after[c] >= before[c] for c in before)
        assert after["small"] > before["small"]


@pytest.mark.parametrize("method", list_methods())
def test_plan_conformance(method: str) -> None:
    X, y = features()
    a = plan_arrays(X, y, CLASSES, method, random_state=0)
    b = plan_arrays(X, y, CLASSES, method, random_state=0)
    c = plan_arrays(X, y, CLASSES, method, random_state=1)
    expected_ok(method, a.counts_before(), a.counts_after(), len(a.kept))
    assert a.to_json() == b.to_json()  # same seed, same plan
    if a.recipes or method == "random-under":
        assert a.to_json() != c.to_json()  # another seed, another plan
    for r in a.recipes:  # provenance is complete and consistent
        assert r.method and r.op in ("copy", "smote", "mixup", "augment")
        assert len(r.parents) == len(r.weights) >= 1
        if r.op == "augment":  # its own seed, and the parameters drawn from it
            assert r.seed is not None and {"angle", "hflip", "brightness"} <= set(r.params)
        assert all(0 <= p < len(y) and y[p] == r.label for p in r.parents)
        assert np.isclose(sum(r.weights), 1.0) and min(r.weights) >= -1e-9
    assert all(0 <= i < len(y) for i in a.kept)


def test_stem_meets_its_ratio_before_mixup() -> None:
    X, y = features(3)
    plan = plan_arrays(X, y, CLASSES, "stem", random_state=0, clean_originals="none")
    stage = next(s for s in plan.log if s.get("stage") == "after_smote_enn")
    counts = list(stage["after"].values())
    assert min(counts) / max(counts) >= 0.7 or stage["stop"] != "target met"
    assert stage["iterations"] >= 1
    after = plan.counts_after()
    for c in CLASSES:  # mixup adds half of each class
        assert after[c] == stage["after"][c] + round(0.5 * stage["after"][c])


def test_unknown_method_and_parameter_errors() -> None:
    with pytest.raises(ValueError, match=r'Unknown method "smoot".*smote'):
        create_method("smoot")
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['k'\].*k_neighbors"):
        create_method("smote", k=3)
    with pytest.raises(ValueError, match="not accepted by enn"):
        plan_arrays(*features(), CLASSES, "enn", k_neighbors=3)
    with pytest.raises(imgbalance.ImgBalanceError, match="k_neighbors must be an integer"):
        plan_arrays(*features(), CLASSES, "smote", k_neighbors=0)


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("ratio:1.5", r"must be in \(0, 1\]"),
        ("count:0", "whole number"),
        ("most", "Unknown"),
        ({"nope": 3}, "unknown class"),
    ],
)
def test_impossible_targets_fail_before_work(target: object, match: str) -> None:
    with pytest.raises(imgbalance.ImgBalanceError, match=match):
        plan_arrays(*features(), CLASSES, "smote", target=target)  # type: ignore[arg-type]


def test_targets() -> None:
    X, y = features()
    assert plan_arrays(X, y, CLASSES, "smote", target="ratio:0.5").counts_after() == {
        "big": 60,
        "mid": 30,
        "small": 30,
    }
    assert plan_arrays(X, y, CLASSES, "smote", target="count:40").counts_after() == {
        "big": 60,
        "mid": 40,
        "small": 40,
    }
    assert plan_arrays(X, y, CLASSES, "random-under", target="count:20").counts_after() == {
        "big": 20,
        "mid": 20,
        "small": 8,
    }
    assert plan_arrays(
        X, y, CLASSES, "random-over,random-under", target="count:30"
    ).counts_after() == dict.fromkeys(CLASSES, 30)
    assert plan_arrays(X, y, CLASSES, "smote", target={"small": 20}).counts_after() == {
        "big": 60,
        "mid": 25,
        "small": 20,
    }


def test_small_class_rules() -> None:
    X, y = features()
    y = y.copy()
    y[-7:] = 1  # "small" keeps one image
    # the default adapts: a class of one cannot interpolate, so it gets augmented copies
    # (copies without the torch extra), said in the plan's notes
    plan = plan_arrays(X, y, CLASSES, "smote")
    assert plan.counts_after()["small"] == 60
    assert {r.op for r in plan.recipes if r.label == 2} <= {"augment", "copy"}
    assert any('"small" has 1 image(s), too few to interpolate; used' in n for n in plan.notes)
    with pytest.raises(imgbalance.ImgBalanceError) as err:  # every option it names can work
        plan_arrays(X, y, CLASSES, "smote", small_class_fallback="error")
    assert "small_class_fallback='random-over'" in str(err.value)
    assert "k_neighbors=" not in str(err.value)
    plan = plan_arrays(X, y, CLASSES, "smote", small_class_fallback="random-over")
    assert plan.counts_after()["small"] == 60
    assert {r.op for r in plan.recipes if r.label == 2} == {"copy"}
    y[-2] = 2  # two images: k adapts to 1
    plan = plan_arrays(X, y, CLASSES, "smote")
    assert any('"small" has 2 images; k_neighbors lowered from 5 to 1' in n for n in plan.notes)
    with pytest.raises(imgbalance.ImgBalanceError, match="k_neighbors \\+ 1 = 6"):
        plan_arrays(X, y, CLASSES, "smote", small_class_fallback="error")


def _tree(root: Path) -> Path:
    seed = 0
    for name, n, size in (("cat", 14, (40, 30)), ("dog", 5, (36, 36)), ("emu", 2, (30, 44))):
        for i in range(n):
            seed += 1
            im = rgb(seed, size)
            if name == "dog" and i == 0:
                im = im.convert("L")  # mixed modes within a class
            if name == "dog" and i == 2:
                im = im.convert("RGBA")
            save(im, root / name / f"{i:02d}.{'jpg' if i % 2 else 'png'}")
    return root


@pytest.mark.parametrize("method", list_methods())
def test_balance_files_conformance(tmp_path: Path, method: str) -> None:
    src = _tree(tmp_path / "src")
    before = tree_digest(src)
    params: dict[str, object] = (
        {"k_neighbors": 5} if "smote" in method or method in ("adasyn", "stem") else {}
    )
    if create_method(method).kind == "clean":  # ENN flags most of these random images: allow it
        params["clean_originals"] = "all"
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        result = imgbalance.balance(
            src, tmp_path / name, method=method, random_state=seed, plots=False, workers=1, **params
        )
        runs[name] = result
    assert tree_digest(src) == before  # the input is never written to
    a, b = tmp_path / "a", tmp_path / "b"
    manifest_a = (a / "manifest.csv").read_text(encoding="utf-8")
    assert manifest_a == (b / "manifest.csv").read_text(encoding="utf-8")
    # Same seed: byte-identical outputs; only the summaries' timings may differ.
    timed = ("summary.json", "balance_summary.txt")
    digest_a, digest_b = tree_digest(a), tree_digest(b)
    assert {k: v for k, v in digest_a.items() if k not in timed} == {
        k: v for k, v in digest_b.items() if k not in timed
    }
    summaries = [json.loads((d / "summary.json").read_text()) for d in (a, b)]
    for summ in summaries:
        assert set(summ.pop("timings")) == {"plan_s", "render_s"}
    assert summaries[0] == summaries[1]
    if runs["a"].plan.recipes or method == "random-under":
        assert manifest_a != (tmp_path / "c" / "manifest.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(manifest_a.splitlines()))
    assert len(rows) == sum(runs["a"].counts_after.values())
    for row in rows:
        f = a / row["path"]
        assert f.is_file() and row["sha256"]
        if row["origin"] == "synthetic":
            parents = json.loads(row["parents"])
            assert all((src / p).is_file() for p in parents)
            assert len(json.loads(row["weights"])) == len(parents)
    counts = {c: sum(1 for r in rows if r["class"] == c) for c in ("cat", "dog", "emu")}
    assert counts == runs["a"].counts_after
