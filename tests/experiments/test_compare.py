"""``imgbalance compare``: the plan it takes from the data and the budget, the verdict it
prints, every number of it reproducible from the run folders, and resuming."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imgbalance.cli import app
from imgbalance.cli.common import parse_budget
from imgbalance.errors import ConfigError, DatasetError, ImgBalanceError
from imgbalance.experiments.compare import (
    ComparePlan,
    _fit_budget,
    compare,
    default_techniques,
)

pytest.importorskip("torch", reason="the report's comparison trains through the torch extra")


def _tree(root: Path, counts: dict[str, int]) -> Path:
    from imgtools import colour_image

    rng = np.random.default_rng(5)
    colours = [(40, 40, 200), (40, 200, 40), (200, 40, 40), (128, 128, 128)]
    for (name, n), colour in zip(counts.items(), colours, strict=False):
        (root / name).mkdir(parents=True)
        for i in range(n):
            colour_image(rng, colour).save(root / name / f"{name}_{i}.png")
    return root


def test_parse_budget() -> None:
    assert parse_budget("20m") == 1200
    assert parse_budget("1h30m") == 5400
    assert parse_budget("90s") == parse_budget("90") == 90
    assert parse_budget(None) is None
    for bad in ("soon", "", "20 minutes"):
        with pytest.raises(ConfigError, match="not a duration; write it like 20m"):
            parse_budget(bad)
    with pytest.raises(ConfigError, match="needs its unit; write 1h30m"):
        parse_budget("1h30")
    for none in ("0", "0m", "0h0m0s"):  # planned the baseline only, then "time is up" forever
        with pytest.raises(ConfigError, match="is no time"):
            parse_budget(none)


def test_default_techniques_follow_the_data() -> None:
    names, notes = default_techniques({"a": 500, "b": 20}, "small-cnn")
    assert names[0] == "weighted-ce" and "smote" in names and "random-under" not in names
    assert any("random-under left out" in n for n in notes)
    names, _ = default_techniques({"a": 500, "b": 100}, "small-cnn")
    assert "random-under" in names
    names, notes = default_techniques({"a": 100, "b": 90}, "small-cnn")
    assert len(names) == 3 and any("nearly balanced" in n for n in notes)
    names, notes = default_techniques({"a": 500, "b": 100}, "linear")
    assert "focal" not in names and "balanced-softmax" not in names


def _plan(techniques: int = 8, repeats: int = 5, budget: float | None = 600) -> ComparePlan:
    return ComparePlan(data="d", model="small-cnn", image_size=64,
                       techniques=[f"t{i}" for i in range(techniques)], repeats=repeats,
                       val=0.15, test=0.15, seed=0, defaults={}, budget_s=budget)  # fmt: skip


def test_the_budget_cuts_repeats_first_then_techniques() -> None:
    def fit(plan: ComparePlan, per_run: float, done: int = 1, spent: float = 0.0) -> None:
        _fit_budget(plan, per_run, done, spent, lambda _m: None)

    plan = _plan()
    fit(plan, per_run=8.0)  # 600 s at 10.8 s a run (rendering included): 56 runs fit
    assert (plan.repeats, len(plan.techniques)) == (5, 8)  # 45 runs
    plan = _plan()
    fit(plan, per_run=16.0)  # 21.6 s a run: 28 runs fit
    assert plan.repeats == 3 and len(plan.techniques) == 8  # 3 x 9 = 27
    assert any("3 repeated splits instead of 5" in n for n in plan.notes)
    plan = _plan()
    fit(plan, per_run=16.0, spent=150.0)  # two and a half minutes gone: 21 runs fit
    assert plan.repeats == 3 and len(plan.techniques) == 6  # 3 x 7 = 21
    assert plan.techniques == [f"t{i}" for i in range(6)]  # the first by priority survive
    assert any("left out: t6, t7" in n for n in plan.notes)
    assert plan.estimate_s is not None and plan.estimate_s <= 600
    plan = _plan(techniques=2)
    plan.auto_repeats = True  # no --repeats: a roomy budget buys more splits, up to 10
    fit(plan, per_run=5.0)
    assert plan.repeats == 10 and any("10 repeated splits (it has room" in n for n in plan.notes)
    plan = _plan(budget=None)
    fit(plan, per_run=16.0)
    assert (plan.repeats, len(plan.techniques)) == (5, 8)


def test_compare_end_to_end_reproducible_and_resumable(tmp_path: Path) -> None:
    data = _tree(tmp_path / "images", {"blue": 40, "green": 16, "red": 12, "tiny": 4})
    (data / "green" / "zero.png").write_bytes(b"")  # left out: said, not only in a split
    out = tmp_path / "cmp"
    lines: list[str] = []
    verdict = compare(data, out, model="linear", repeats=3,
                      techniques=["weighted-ce", "random-over"], log=lines.append)  # fmt: skip
    assert any("1 unreadable image file(s)" in m and "green/zero.png" in m for m in lines)
    plan = json.loads((out / "compare.json").read_text())
    assert plan["excluded_classes"] == {"tiny": 4}  # too small to evaluate: left out, said
    assert any("left out, too small to evaluate" in m and "tiny (4)" in m for m in lines)
    assert verdict["status"]["failed"] == 0 and verdict["status"]["completed"] == 9
    assert verdict["verdict"][0].startswith("linear, over 3 repeated splits:")
    summary = json.loads((out / "_splits" / "split0" / "split_summary.json").read_text())
    assert summary["classes"] == ["blue", "green", "red"]
    # the report states the plan it rests on (it was in compare.json only)
    report = (out / "report.md").read_text()
    assert "Planned by imgbalance compare (compare.json): 3 repeated splits (validation " in report
    assert "model linear at 64 px; no time budget; decisions: " in report
    assert "left out, too small to evaluate" in report and "tiny (4)" in report
    # every number of the verdict comes from the run folders: recompute one by hand
    rows = list(csv.DictReader((out / "results.csv").open()))
    f1 = {(r["arm"], r["split"]): float(r["macro_f1"]) for r in rows}
    splits = sorted({r["split"] for r in rows})
    by_hand = np.mean([f1[("random-over", s)] - f1[("baseline", s)] for s in splits])
    over = next(t for t in verdict["techniques"] if t["arm"] == "random-over")
    assert over["macro_f1_delta"] == pytest.approx(by_hand)
    assert over["macro_f1_units"] == 3
    for r in rows:  # and each run's macro-F1 from its predictions
        from sklearn.metrics import f1_score

        preds = list(csv.DictReader((out / r["run"] / "predictions.csv").open()))
        present = sorted({p["label"] for p in preds})
        got = f1_score([p["label"] for p in preds], [p["pred"] for p in preds],
                       labels=present, average="macro", zero_division=0.0)  # fmt: skip
        assert got == pytest.approx(float(r["macro_f1"]))
    # a second call resumes: the plan is read back, nothing is trained again
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/experiment_summary.json")}
    again = compare(data, out, model="linear", log=lines.append)
    assert again["status"]["skipped"] == 9 and again["plan"] == verdict["plan"]
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/experiment_summary.json")} == mtimes
    assert any("resuming the comparison" in m for m in lines)
    with pytest.raises(ConfigError, match="holds a comparison of"):
        compare(_tree(tmp_path / "other", {"a": 10, "b": 10}), out, model="linear")
    # other options were ignored without a word by the resumed plan: refused, named
    with pytest.raises(ConfigError, match=r"this call asks for model small-cnn \(planned: lin"):
        compare(data, out)
    with pytest.raises(ConfigError, match=r"techniques smote \(planned: weighted-ce,random-over"):
        compare(data, out, model="linear", techniques=["smote"])
    with pytest.raises(ConfigError, match=r"5 repeats \(planned: 3\)"):
        compare(data, out, model="linear", repeats=5)
    # the data changed since the plan: said once, up front (each run refused in turn before)
    image = next((data / "red").glob("*.png"))
    original = image.read_bytes()
    image.write_bytes(original + b"changed")  # still a PNG, other bytes
    with pytest.raises(DatasetError, match=r"1 file\(s\) of the split changed or disappeared "
                       r"since it was made \(first: \"red/.*\.png\"\): its finished runs "
                       r"measured the files as they were"):  # fmt: skip
        compare(data, out, model="linear")
    image.write_bytes(original)  # put back: it resumes
    assert compare(data, out, model="linear")["status"]["skipped"] == 9


def test_compare_refuses_data_it_cannot_evaluate(tmp_path: Path) -> None:
    data = _tree(tmp_path / "images", {"blue": 30, "green": 5, "red": 3})
    with pytest.raises(DatasetError, match="only 1 class has 10 or more images"):
        compare(data, tmp_path / "cmp", model="linear")
    with pytest.raises(ConfigError, match=r"Unknown technique.*'magic'"):
        compare(_tree(tmp_path / "ok", {"a": 12, "b": 12}), tmp_path / "c2",
                model="linear", techniques=["magic"])  # fmt: skip


def test_compare_command(tmp_path: Path) -> None:
    data = _tree(tmp_path / "images", {"blue": 30, "green": 14})
    out = tmp_path / "cmp"
    res = CliRunner().invoke(
        app, ["compare", str(data), "--out", str(out), "--model", "linear", "--repeats", "3",
              "--techniques", "weighted-ce", "--budget", "10m"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "Verdict" in res.output and "over 3 repeated splits" in res.output
    assert (out / "report.html").is_file() and (out / "verdict.json").is_file()
    res = CliRunner().invoke(app, ["compare", str(data), "--out", str(data / "x")])
    assert res.exit_code == 1 and "inside" in res.output  # never into the input
    res = CliRunner().invoke(app, ["compare", str(data), "--budget", "soon"])
    assert res.exit_code == 1 and "not a duration" in res.output


def test_compare_refuses_what_it_would_replace_or_misread(tmp_path: Path) -> None:
    """A folder of someone's report.html and results.csv was written over; --apply into
    a non-empty folder said "pass --overwrite", an option compare does not have;
    --techniques "" ran the default set and "smote,smote" ran smote twice; a refused
    comparison left an empty --out behind."""
    data = _tree(tmp_path / "images", {"blue": 30, "green": 14})

    def run(*args: str) -> str:
        res = CliRunner().invoke(app, ["compare", str(data), "--model", "linear", *args])
        assert res.exit_code == 1, res.output
        return " ".join(res.output.split())

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "report.html").write_text("mine")
    assert "not an earlier comparison" in run("--out", str(theirs))
    assert (theirs / "report.html").read_text() == "mine"
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    said = run("--out", str(tmp_path / "c1"), "--apply", str(full))
    assert "is not empty" in said and "--overwrite" not in said
    assert "names no technique" in run("--out", str(tmp_path / "c2"), "--techniques", " , ")
    assert "names smote twice" in run("--out", str(tmp_path / "c3"), "--techniques",
                                      "smote,smote,random-over")  # fmt: skip
    assert "Unknown technique" in run("--out", str(tmp_path / "c4"), "--techniques", "magic")
    # a technique the model cannot take failed after the baseline had trained
    assert "supports losses ce and weighted-ce" in run("--out", str(tmp_path / "c5"),
                                                       "--techniques", "focal")  # fmt: skip
    assert not any((tmp_path / c).exists() for c in ("c1", "c2", "c3", "c4", "c5"))


def test_a_report_over_runs_of_different_classes_is_a_clear_error(tmp_path: Path) -> None:
    """Runs of two datasets in one folder: report ended in KeyError: 'recall:c'."""
    import shutil

    from imgbalance.experiments.report import write_report

    for name, counts in (("one", {"blue": 30, "green": 14}), ("two", {"a": 20, "b": 12})):
        compare(_tree(tmp_path / name, counts), tmp_path / f"cmp-{name}", model="linear",
                repeats=3, techniques=["weighted-ce"])  # fmt: skip
    mixed = tmp_path / "mixed"
    shutil.copytree(tmp_path / "cmp-one", mixed)
    for run_dir in (tmp_path / "cmp-two").glob("weighted-ce__*"):
        shutil.copytree(run_dir, mixed / ("z" + run_dir.name))
    with pytest.raises(ImgBalanceError, match="runs of different data cannot be compared"):
        write_report(mixed)
    (tmp_path / "cmp-one" / "report.html").unlink()
    (tmp_path / "cmp-one" / "report.html").mkdir()  # was an IsADirectoryError traceback
    with pytest.raises(ImgBalanceError, match=r'report.html": a folder is in the way'):
        write_report(tmp_path / "cmp-one")


def _verdict(data: Path, statuses: dict[str, tuple[str, float]]) -> dict[str, object]:
    techniques = [
        {"arm": arm, "model": "small-cnn", "macro_f1_status": status, "macro_f1_delta": d,
         "macro_f1_ci_low": d - 0.02, "macro_f1_ci_high": d + 0.02, "posthoc": False}
        for arm, (status, d) in statuses.items()
    ]  # fmt: skip
    plan = {"data": str(data), "val": 0.25, "test": 0.25, "seed": 0, "model": "small-cnn",
            "excluded_classes": {"tiny": 4},
            "defaults": {"epochs": 20, "image_size": 64, "max_steps": 120}}  # fmt: skip
    return {"techniques": techniques, "plan": plan}


def test_apply_writes_the_winners_split_and_balanced_training_set(tmp_path: Path) -> None:
    from imgbalance.experiments.apply import apply_winner

    data = _tree(tmp_path / "images", {"blue": 30, "green": 12, "tiny": 4})
    verdict = _verdict(data, {"weighted-ce": ("better", 0.03), "random-over": ("better", 0.05),
                              "smote": ("indistinguishable", 0.09)})  # fmt: skip
    lines = apply_winner(verdict, tmp_path / "use")
    assert "the winner is random-over (+5.0 points" in lines[0]  # the largest significant
    assert any("between +3.0 and +7.0 points" in line for line in lines)
    split_rows = list(csv.DictReader((tmp_path / "use" / "split" / "splits.csv").open()))
    assert {r["class"] for r in split_rows} == {"blue", "green"}  # tiny stays left out
    manifest = list(csv.DictReader((tmp_path / "use" / "train_balanced" / "manifest.csv").open()))
    train = [r for r in split_rows if r["split"] == "train"]
    counts = {c: sum(r["class"] == c for r in manifest) for c in ("blue", "green")}
    assert counts["blue"] == counts["green"] == sum(r["class"] == "blue" for r in train)
    assert not {r["path"] for r in split_rows if r["split"] == "test"} & {
        p for r in manifest for p in json.loads(r["parents"] or "[]")
    }  # no test image is a parent of a training image

    assert any("--technique random-over" in line and "--set max_steps=120" in line
               for line in lines)  # fmt: skip
    verdict = _verdict(data, {"smote+focal": ("better", 0.04)})
    lines = apply_winner(verdict, tmp_path / "use2")
    train = next(line for line in lines if "imgbalance train" in line)
    # the whole technique and the comparison's protocol, not only its offline half
    for flag in (
        "--model small-cnn",
        "--technique smote",
        "--loss focal",
        "--set class_weights=inverse",
        "--set epochs=20",
        "--set max_steps=120",
    ):
        assert flag in train, flag  # fmt: skip
    lines = apply_winner(_verdict(data, {"focal": ("better", 0.04)}), tmp_path / "use3")
    assert not (tmp_path / "use3" / "train_balanced").exists()
    assert any("--loss focal" in line for line in lines)

    nothing = apply_winner(_verdict(data, {"smote": ("worse", -0.1)}), tmp_path / "use4")
    assert "nothing was written" in nothing[0] and not (tmp_path / "use4").exists()
