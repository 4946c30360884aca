"""The command line, run through the installed ``imgbalance`` console script."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import tree_digest
from imgtools import ENTRY, run_cli

run = run_cli


def test_version_and_help() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("imgbalance ")
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("analyze", "split", "demo"):
        assert cmd in r.stdout


def test_analyze_table_and_files(tmp_path: Path, messy: Path) -> None:
    before = tree_digest(messy)
    out = tmp_path / "report"
    r = run("analyze", messy, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "balance_ratio   = min/max = 1/13" in r.stdout
    assert "imbalance_ratio = max/min = 13/1 = 13.00" in r.stdout
    for code in (
        "truncated",
        "zero-byte",
        "label-conflict",
        "decompression-bomb",
        "broken-link",
        "extension-mismatch",
    ):
        assert code in r.stdout
    assert "empty class folder(s): empty_class" in r.stderr
    data = json.loads((out / "analysis.json").read_text(encoding="utf-8"))
    assert data["counts"]["dögs with space"] == 3
    for name in ("class_distribution.png", "samples.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    assert tree_digest(messy) == before


def test_analyze_outputs_are_byte_identical(tmp_path: Path, balanced_tree: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("analyze", balanced_tree, "--out", a).returncode == 0
    assert run("analyze", balanced_tree, "--out", b).returncode == 0
    for name in ("analysis.json", "class_distribution.png", "samples.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_analyze_json_to_stdout(messy: Path) -> None:
    r = run("analyze", messy, "--json", "--verify")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["settings"]["verify"] is True
    assert "corrupt" in data["problem_counts"]


def test_strict_fails_on_problems(messy: Path, balanced_tree: Path) -> None:
    r = run("analyze", messy, "--strict")
    assert r.returncode == 1
    assert "--strict" in r.stderr
    assert run("analyze", balanced_tree, "--strict").returncode == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: (p / "f.txt", (p / "f.txt").write_text("x"))[0], "is a file"),
        (lambda p: (p / "empty", (p / "empty").mkdir())[0], "no class folders"),
    ],
)
def test_analyze_bad_paths(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    r = run("analyze", make(tmp_path))
    assert r.returncode == 1
    assert message in r.stderr and "Error" in r.stderr
    assert "Traceback" not in r.stderr


def test_analyze_refuses_output_inside_input(balanced_tree: Path) -> None:
    before = tree_digest(balanced_tree)
    r = run("analyze", balanced_tree, "--out", balanced_tree / "report")
    assert r.returncode == 1 and "inside the input folder" in r.stderr
    assert tree_digest(balanced_tree) == before


def test_analyze_all_unreadable_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.jpg").write_bytes(b"")
    r = run("analyze", root)
    assert r.returncode == 1
    assert "zero-byte" in r.stdout and "no readable images" in r.stderr


def test_split_command(tmp_path: Path, balanced_tree: Path) -> None:
    before = tree_digest(balanced_tree)
    out = tmp_path / "splits"
    r = run("split", balanced_tree, "--out", out, "--materialize", "link", "--seed", "3")
    assert r.returncode == 0, r.stderr
    # the table's title is one line at a wide terminal (a rich title wraps at the table)
    assert "split (seed 3): train 70%, val 15%, test 15%\n" in r.stdout
    rows = list(csv.DictReader((out / "splits.csv").open(encoding="utf-8")))
    assert len(rows) == 67
    assert sum(1 for _ in (out / "test").rglob("*.png")) == sum(r["split"] == "test" for r in rows)
    assert tree_digest(balanced_tree) == before
    again = run("split", balanced_tree, "--out", out)
    assert again.returncode == 1 and "already exists" in again.stderr
    r2 = run("split", balanced_tree, "--out", out, "--seed", "3", "--overwrite")
    assert r2.returncode == 0
    assert list(csv.DictReader((out / "splits.csv").open(encoding="utf-8"))) == rows


def test_split_group_by_and_refusals(tmp_path: Path, balanced_tree: Path) -> None:
    r = run("split", balanced_tree, "--out", tmp_path / "o", "--group-by", r"_(\d\d)\d")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((tmp_path / "o" / "splits.csv").open(encoding="utf-8")))
    assert {row["group"] for row in rows} == {"00", "01", "02", "03"}
    r = run("split", balanced_tree, "--out", balanced_tree / "out")
    assert r.returncode == 1 and "inside the input folder" in r.stderr
    r = run("split", balanced_tree, "--out", tmp_path / "p", "--val", "0.6", "--test", "0.5")
    assert r.returncode == 1 and "leave images for training" in r.stderr
    r = run("split", balanced_tree, "--out", tmp_path / "q", "--materialize", "move")
    assert r.returncode == 2


@pytest.mark.slow
def test_demo_runs_and_reruns(tmp_path: Path) -> None:
    # the training comparison is covered by tests/training; its grid is checked below
    r = run("demo", "--out", "demo", "--no-experiment", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    demo = tmp_path / "demo"
    analysis = json.loads((demo / "analysis" / "analysis.json").read_text())
    assert 20 <= analysis["imbalance_ratio"] <= 50
    assert analysis["problem_counts"] == {}
    assert (demo / "split" / "splits.csv").exists()
    assert "Outputs" in r.stdout
    timed = ("balanced/summary.json", "balanced/balance_summary.txt")  # hold timings
    first = {k: v for k, v in tree_digest(demo).items() if k not in timed}
    assert any(k.startswith("balanced/digit-9/synthetic/") for k in first)
    r = run("demo", "--out", "demo", "--no-experiment", cwd=tmp_path)  # replaces its own output
    assert r.returncode == 0, r.stderr
    assert {k: v for k, v in tree_digest(demo).items() if k not in timed} == first
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    r = run("demo", "--out", "mine", cwd=tmp_path)
    assert r.returncode == 1 and "not made by" in r.stderr
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_demo_grid_is_valid(tmp_path: Path) -> None:
    from imgbalance.demo import demo_grid
    from imgbalance.experiments.grid import plan_grid

    runs = plan_grid(demo_grid(tmp_path))
    assert len(runs) == 18 and {r.model for r in runs} == {"small-cnn"}


def test_a_second_demo_keeps_the_runs_of_the_same_version_only(tmp_path: Path) -> None:
    from imgbalance.demo import DEMO_MARKER, prepare_demo_dir

    out = tmp_path / "demo"
    assert prepare_demo_dir(out) is False  # a new folder: nothing to keep
    (out / "runs" / "baseline__small-cnn__seed0").mkdir(parents=True)
    (out / "runs" / "baseline__small-cnn__seed0" / "history.csv").write_text("epoch\n")
    (out / "data").mkdir()
    assert prepare_demo_dir(out) is True
    assert (out / "runs" / "baseline__small-cnn__seed0" / "history.csv").exists()
    assert not (out / "data").exists()  # everything else is made again
    (out / DEMO_MARKER).write_text("made by imgbalance demo 0.0.1; safe to delete\n")
    assert prepare_demo_dir(out) is False and not (out / "runs").exists()


def test_the_demo_table_gives_the_change_with_its_interval() -> None:
    from io import StringIO

    from rich.console import Console

    from imgbalance.demo import print_comparison

    row = {"arm": "baseline", "model": "small-cnn", "macro_f1": 0.5, "macro_f1_std": 0.01,
           "minority_recall": 0.2}  # fmt: skip
    smote = {**row, "arm": "smote", "macro_f1_delta": 0.123, "macro_f1_ci_low": 0.05,
             "macro_f1_ci_high": 0.196, "macro_f1_p_holm": 0.031}  # fmt: skip
    flat = {**row, "arm": "focal", "macro_f1_delta": 0.0, "macro_f1_ci_low": float("nan"),
            "macro_f1_ci_high": float("nan"), "macro_f1_p_holm": None}  # fmt: skip
    buf = StringIO()
    print_comparison([row, smote, flat], Console(file=buf, width=80, no_color=True))
    text = buf.getvalue()
    assert "+0.123 [+0.050, +0.196]" in text and "0.031" in text
    assert "+0.000 [no interval]" in text
    assert max(len(line) for line in text.splitlines()) <= 80  # a plain terminal's width


def test_entry_point_is_installed() -> None:
    assert shutil.which("imgbalance", path=str(Path(sys.executable).parent)) or ENTRY


def test_balance_command(tmp_path: Path, balanced_tree: Path) -> None:
    before = tree_digest(balanced_tree)
    out = tmp_path / "bal"
    r = run(
        "balance",
        balanced_tree,
        out,
        "--method",
        "smote,enn",
        "--seed",
        "1",
        "--k-neighbors",
        "3",
        "--clean-originals",
        "none",
    )
    assert r.returncode == 0, r.stderr
    assert "before: balance_ratio min/max = 0.1750" in r.stdout
    assert tree_digest(balanced_tree) == before
    summary = json.loads((out / "summary.json").read_text())
    assert summary["after"]["wasps"] == 40 and summary["config"]["seed"] == 1
    rows = list(csv.DictReader((out / "manifest.csv").open(encoding="utf-8")))
    assert {r["origin"] for r in rows} == {"original", "synthetic"}
    assert (out / "preview.png").is_file() and (out / "class_distribution.png").is_file()
    again = run("balance", balanced_tree, out)
    assert again.returncode == 1 and "already exists" in again.stderr
    quiet = run("balance", balanced_tree, tmp_path / "np", "--seed", "1", "--no-plots")
    assert quiet.returncode == 0, quiet.stderr
    assert not list((tmp_path / "np").glob("*.png")) and "preview.png" not in quiet.stderr
    assert (tmp_path / "np" / "manifest.csv").is_file()


def test_balance_command_errors(tmp_path: Path, balanced_tree: Path) -> None:
    r = run("balance", balanced_tree, balanced_tree / "out")
    assert r.returncode == 1 and "inside the input folder" in r.stderr
    r = run("balance", balanced_tree, tmp_path / "o", "--method", "smoot")
    assert r.returncode == 1 and 'Unknown method "smoot"' in r.stderr
    r = run("balance", balanced_tree, tmp_path / "o", "--target", "ratio:2")
    assert r.returncode == 1 and "must be in (0, 1]" in r.stderr
    r = run("balance", balanced_tree, tmp_path / "o", "--param", "oops")
    assert r.returncode == 1 and "key=value" in r.stderr
    r = run("balance", balanced_tree)
    assert r.returncode == 1 and "--dry-run" in r.stderr
    assert not (tmp_path / "o").exists()


def test_balance_dry_run_and_methods(balanced_tree: Path, tmp_path: Path) -> None:
    r = run(
        "balance", balanced_tree, "--dry-run", "--method", "stem", "--param", "mixup_fraction=0.25"
    )
    assert r.returncode == 0, r.stderr
    assert "stem (target ratio:0.7" in r.stdout and "nothing was written" in r.stderr
    r = run("methods")
    assert r.returncode == 0
    for name in ("smote", "adasyn", "stem", "tomek", "mixup", "random-under"):
        assert name in r.stdout
