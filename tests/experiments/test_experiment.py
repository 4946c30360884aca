"""The grid runner and the report: resumable, failures recorded, every file written."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import imgbalance
from imgbalance.experiments.grid import load_grid, plan_grid, run_grid
from imgbalance.experiments.report import write_report

from imgtools import all_gone, child_pids, interruptible

pytest.importorskip("torch", reason="training needs the torch extra")


def _grid(tmp_path: Path, split_tree: Path) -> Path:
    grid = {
        "name": "tiny",
        "data": str(split_tree),
        "seeds": [0, 1, 2],
        "models": ["linear"],
        "defaults": {"features": "thumbnail:4", "epochs": 1, "image_size": 16, "batch_size": 8},
        "arms": {
            "baseline": {},
            "weighted": {"loss": "weighted-ce"},
            "random-over": {"technique": "random-over"},
            "cnn-focal": {"model": "small-cnn", "loss": "focal"},
            # red has 3 training images: SMOTE with k=5 and no fallback fails, recorded
            "broken": {
                "technique": "smote",
                "technique_params": {"small_class_fallback": "error"},
            },
        },
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def test_grid_resumes_records_failures_and_reports(tmp_path: Path, split_tree: Path) -> None:
    grid = load_grid(_grid(tmp_path, split_tree))
    runs = plan_grid(grid)
    assert len(runs) == 15 and runs[0].run_id == "baseline__linear__seed0"
    assert {r.model for r in runs if r.arm == "cnn-focal"} == {"small-cnn"}
    out = tmp_path / "runs"
    status = run_grid(grid, out, balanced_cache=tmp_path / "bal")
    assert status == {"completed": 12, "failed": 3, "skipped": 0, "not_started": 0}
    error = (out / "broken__linear__seed0" / "error.json").read_text()
    assert "k_neighbors + 1 = 6" in error
    finished = {p: p.stat().st_mtime_ns for p in out.glob("*/experiment_summary.json")}
    assert len(finished) == 12
    # an interrupted grid: one run lost its summary; only it (and the failed ones) run again
    lost = out / "weighted__linear__seed1" / "experiment_summary.json"
    lost.unlink()
    again = run_grid(grid, out, balanced_cache=tmp_path / "bal")
    assert again == {"completed": 12, "failed": 3, "skipped": 11, "not_started": 0}
    for p, mtime in finished.items():
        if p != lost:
            assert p.stat().st_mtime_ns == mtime  # not redone
    assert lost.is_file()

    paths = write_report(out)
    rows = list(csv.DictReader(paths["results"].open()))
    assert len(rows) == 15 and sum(r["status"] == "failed" for r in rows) == 3
    assert {"recall:red", "minority_recall", "posthoc_la_macro_f1"} <= set(rows[0])
    md = paths["markdown"].read_text()
    assert "| baseline (linear) | 3 |" in md and "±" in md and "## Failed runs" in md
    assert "weighted (linear)" in md and ("(Δ +" in md or "(Δ -" in md)  # deltas to the baseline
    assert "## Verdict" in md and "Protocol: 12 runs over 1 split(s)" in md
    # linear with a deterministic technique repeats one number over seeds: one measurement
    assert "from a single measurement" in md and "All runs share one split" in md
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 3 and "class='best'" in page
    for name in ("change_vs_baseline.png", "per_class_recall.png", "per_class_improvement.png"):
        assert (out / name).stat().st_size > 1000

    # a second grid into the same folder (another seed's data): the report keeps both orders
    # (and the first grid's name, its title)
    second = {**grid, "seeds": [3], "arms": {"baseline": {}}, "name": "second grid"}
    run_grid(second, out, balanced_cache=tmp_path / "bal")
    record = json.loads((out / "grid.json").read_text())
    assert record["runs"] == [r.run_id for r in runs] + ["baseline__linear__seed3"]
    assert record["name"] == grid["name"] != "second grid"
    title = f"# imgbalance report: split ({grid['name']})"  # the data's name, then the grid's
    assert write_report(out)["markdown"].read_text().startswith(title)


def test_grid_errors_and_cli(tmp_path: Path, split_tree: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": str(split_tree), "arms": {"a": {"loss": "hinge"}}}))
    with pytest.raises(imgbalance.ImgBalanceError, match=r'arm "a".*Unknown loss "hinge"'):
        plan_grid(load_grid(bad))
    bad.write_bytes(b"\x89PNG\r\n\x1a\n")  # not a grid: a PNG header
    with pytest.raises(imgbalance.ImgBalanceError, match=r"Cannot read the grid .*bad.yaml.*UTF-8"):
        load_grid(bad)
    bad.write_text(yaml.safe_dump({"data": ".", "arms": {"a": {}}, "epochs": 3}))
    with pytest.raises(imgbalance.ImgBalanceError, match=r"unknown key\(s\) \['epochs'\]"):
        load_grid(bad)
    grid = _grid(tmp_path, split_tree)
    spec = yaml.safe_load(grid.read_text())
    spec["arms"] = {"baseline": {}, "broken": spec["arms"]["broken"]}
    spec["seeds"] = [0]
    grid.write_text(yaml.safe_dump(spec))
    proc = subprocess.run(
        [sys.executable, "-m", "imgbalance", "experiment", str(grid), "--out", str(tmp_path / "r")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # a failed run is an error exit, after the report
    assert "1 completed (0 from before), 1 failed" in proc.stdout
    assert (tmp_path / "r" / "report.html").is_file()
    inside = subprocess.run(
        [sys.executable, "-m", "imgbalance", "experiment", str(grid), "--out",
         str(split_tree / "runs")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert inside.returncode == 1 and "never written to" in inside.stderr


def test_trackers_log_the_run(
    tmp_path: Path, split_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgbalance.experiments import RunConfig, run_training

    cfg = RunConfig.from_dict(
        {"data": str(split_tree), "model": "small-cnn", "epochs": 2, "image_size": 16}
    )
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path / "runs" if (tmp_path / "runs").is_dir() else tmp_path)
    summary = run_training(cfg, tmp_path / "runs" / "a", tracker="mlflow", experiment="tiny")
    assert not (tmp_path / "mlruns").exists()  # nothing lands where the command ran
    assert (tmp_path / "runs" / "mlflow-artifacts").is_dir()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "a" and run.data.params["loss"] == "ce"
    assert run.data.metrics["test_macro_f1"] == pytest.approx(summary["final_metrics"]["macro_f1"])
    assert len(client.get_metric_history(run.info.run_id, "val_macro_f1")) == 2
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"experiment_summary.json", "history.csv"} <= artifacts
    # the model is an MLflow model, linked to the run, that predicts as `imgbalance predict`
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    (logged,) = mlflow.search_logged_models(
        experiment_ids=[exp.experiment_id], output_format="list"
    )
    assert logged.source_run_id == run.info.run_id
    import pandas as pd

    from imgbalance.experiments.predict import load_run

    served = mlflow.pyfunc.load_model(logged.model_uri)
    images = sorted(str(p) for p in (split_tree / "test").rglob("*.png"))
    frame = served.predict(images)
    local = load_run(tmp_path / "runs" / "a")
    want = local.calibrated(local.predict(images)[0], "temperature")
    assert list(frame["path"]) == images and isinstance(frame, pd.DataFrame)
    got = frame[[f"p:{c}" for c in local.classes]].to_numpy()
    assert abs(got - want).max() < 1e-12
    mlflow.set_tracking_uri(before)

    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run_training(cfg, tmp_path / "w" / "b", tracker="wandb")
    (offline,) = (tmp_path / "w" / "wandb").glob("offline-run-*")
    assert list(offline.glob("*.wandb"))

    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(imgbalance.ImgBalanceError, match=r"imgbalance\[mlflow\]"):
        run_training(cfg, tmp_path / "runs" / "c", tracker="mlflow")


def _two_runs_started(driver: subprocess.Popen[bytes], runs: Path) -> list[int]:
    """Wait until the grid's 2 spawn workers have each started a run; returns them."""
    workers: list[int] = []
    started: list[Path] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.5)
        workers = [k for k in child_pids(driver.pid)
                   if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]  # fmt: skip
        started = [d for d in runs.glob("baseline__*") if (d / "config.json").is_file()]
        if len(workers) == 2 and len(started) == 2:
            break
    assert len(workers) == 2 and len(started) == 2, "the grid did not start its runs"
    return workers


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
def test_workers_end_with_a_killed_grid(tmp_path: Path, split_tree: Path) -> None:
    """SIGKILL the grid's process in the middle of its runs: its workers stop too,
    instead of training on alone (these runs would take hours)."""
    grid = {
        "name": "endless",
        "data": str(split_tree),
        "seeds": [0, 1],
        "models": ["small-cnn"],
        "defaults": {"epochs": 100_000, "patience": 100_000, "image_size": 16, "batch_size": 8},
        "arms": {"baseline": {}},
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    runs = tmp_path / "runs"
    code = (
        "import sys; from imgbalance.experiments.grid import load_grid, run_grid; "
        "run_grid(load_grid(sys.argv[1]), sys.argv[2], jobs=2)"
    )
    driver = subprocess.Popen([sys.executable, "-c", code, str(path), str(runs)])
    workers: list[int] = []
    try:
        workers = _two_runs_started(driver, runs)
        driver.kill()
        driver.wait()
        assert all_gone(workers, timeout=15)
    finally:
        driver.kill()
        for w in workers:
            with contextlib.suppress(OSError):
                os.kill(w, signal.SIGKILL)


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """An unsplit image folder: blue 30, green 16, red 12."""
    from imgtools import COLOURS, colour_image

    rng = np.random.default_rng(1)
    root = tmp_path / "images"
    for (name, colour), n in zip(COLOURS.items(), (30, 16, 12), strict=True):
        (root / name).mkdir(parents=True)
        for i in range(n):
            colour_image(rng, colour).save(root / name / f"{name}_{i}.png")
    return root


def test_repeated_splits_give_every_arm_the_same_split_sequence(
    tmp_path: Path, image_tree: Path
) -> None:
    spec = {
        "name": "repeats",
        "data": str(image_tree),
        "splits": {"repeats": 3, "val": 0.25, "test": 0.25, "seed": 7},
        "models": ["linear"],
        "defaults": {"features": "thumbnail:4", "image_size": 16},
        "arms": {"baseline": {}, "weighted": {"loss": "weighted-ce"},
                 "over": {"technique": "random-over"}},
    }  # fmt: skip
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    grid = load_grid(path)
    out = tmp_path / "runs"
    runs = plan_grid(grid, out / "_splits")
    assert len(runs) == 9  # 3 arms x 3 splits x the one default seed
    assert runs[0].run_id == "baseline__linear__split0__seed0"
    by_arm: dict[str, list[str]] = {}
    for r in runs:
        by_arm.setdefault(r.arm, []).append(r.settings["data"])
    assert len({tuple(v) for v in by_arm.values()}) == 1  # one sequence for every arm
    assert by_arm["baseline"] == [str(out / "_splits" / f"split{k}") for k in range(3)]

    assert run_grid(grid, out)["completed"] == 9
    tests = [
        {r["path"] for r in csv.DictReader((out / "_splits" / f"split{k}" / "splits.csv").open())
         if r["split"] == "test"}
        for k in range(3)
    ]  # fmt: skip
    assert len({frozenset(t) for t in tests}) == 3  # three different test splits
    summaries = [json.loads((out / "_splits" / f"split{k}" / "split_summary.json").read_text())
                 for k in range(3)]  # fmt: skip
    assert [s["seed"] for s in summaries] == [7, 8, 9]
    for r in runs:  # each run trained on its own split's test images
        pred = {row["path"] for row in csv.DictReader((out / r.run_id / "predictions.csv").open())}
        assert pred == tests[r.split or 0]

    # a second run keeps the splits (same bytes) and every finished run
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "_splits").rglob("*.csv")}
    assert run_grid(grid, out)["skipped"] == 9
    assert {p: p.stat().st_mtime_ns for p in (out / "_splits").rglob("*.csv")} == mtimes

    paths = write_report(out)
    verdict = json.loads(paths["verdict"].read_text())
    weighted = next(t for t in verdict["techniques"] if t["arm"] == "weighted")
    assert weighted["macro_f1_unit"] == "split" and weighted["macro_f1_units"] == 3
    assert weighted["macro_f1_test"] in ("corrected resampled t-test", "sign test "
                                         "(every unit the same difference)")  # fmt: skip
    assert verdict["protocol"]["splits"] == 3
    assert "over 3 repeated splits" in verdict["verdict"][0]
    assert "All runs share one split" not in paths["markdown"].read_text()

    # the folder moved (its runs record absolute paths): the test was the plain paired
    # t-test, and a verdict of "indistinguishable" became significant wins
    def test_of(folder: Path) -> str:
        found = json.loads(write_report(folder)["verdict"].read_text())
        return next(t for t in found["techniques"] if t["arm"] == "weighted")["macro_f1_test"]

    moved = tmp_path / "moved"
    out.rename(moved)
    assert test_of(moved) == weighted["macro_f1_test"]  # its splits, found beside the runs
    shutil.rmtree(moved / "_splits")
    if weighted["macro_f1_test"] == "corrected resampled t-test":
        assert test_of(moved).startswith("corrected resampled t-test (the splits' records were")


def test_a_grid_checks_its_data_once_before_any_run(tmp_path: Path, image_tree: Path) -> None:
    spec = {"data": str(tmp_path / "nowhere"), "models": ["linear"], "arms": {"baseline": {}}}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "runs"
    with pytest.raises(imgbalance.ImgBalanceError, match=r"cannot train on its data.*nowhere"):
        run_grid(load_grid(path), out)
    assert not [p for p in out.iterdir() if p.is_dir()]  # no failed run folder per run
    # repeated splits of something that is already a split: the fix is named
    split_dir = tmp_path / "made"
    imgbalance.write_split(imgbalance.split(image_tree), split_dir)
    spec.update(data=str(split_dir), splits=2)
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(imgbalance.ImgBalanceError, match=r"already a split.*image folder itself"):
        run_grid(load_grid(path), out)
    for bad, match in (
        ({"repeats": "five"}, "repeats must be an integer"),
        ({"repeats": 0}, "repeats must be >= 1"),
        ({"folds": 5}, r"unknown key\(s\) \['folds'\]"),
        ({"val": True}, "val must be an integer or a number"),
        ("all", "splits must be a number of repeats or a mapping"),
    ):
        spec["splits"] = bad
        path.write_text(yaml.safe_dump(spec))
        with pytest.raises(imgbalance.ImgBalanceError, match=match):
            load_grid(path)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_deadline_stops_starting_runs_and_leaves_whole_splits(
    tmp_path: Path, image_tree: Path, jobs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgbalance.experiments import grid as grid_module

    spec = {"data": str(image_tree), "splits": {"repeats": 3, "val": 0.25, "test": 0.25},
            "models": ["linear"], "defaults": {"features": "thumbnail:4", "image_size": 16},
            "arms": {"baseline": {}, "weighted": {"loss": "weighted-ce"}}}  # fmt: skip
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "runs"
    grid = load_grid(path)
    assert run_grid(grid, out, deadline=time.monotonic())["not_started"] == 6  # time is up
    assert not list(out.glob("*/experiment_summary.json"))
    checks = iter([False, False])  # time runs out after two runs have started
    monkeypatch.setattr(grid_module, "_past", lambda _d: next(checks, True))
    status = run_grid(grid, out, jobs=jobs, deadline=0.0)
    assert status["completed"] == 2 and status["not_started"] == 4
    # runs go split by split: the two that ran are both arms on split 0, a whole split
    done = sorted(p.parent.name for p in out.glob("*/experiment_summary.json"))
    assert done == ["baseline__linear__split0__seed0", "weighted__linear__split0__seed0"]
    monkeypatch.undo()
    again = run_grid(grid, out, jobs=jobs)  # a resume runs the rest
    assert again["completed"] == 6 and again["skipped"] == 2 and again["not_started"] == 0


def test_a_report_over_whole_splits_says_which_runs_it_left_out(
    tmp_path: Path, image_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A comparison cut short is reported on the splits every technique finished; the
    runs of the other splits were left out of the statistics without a word."""
    from imgbalance.experiments import grid as grid_module
    from imgbalance.experiments.report import write_report

    spec = {"data": str(image_tree), "splits": {"repeats": 3, "val": 0.25, "test": 0.25},
            "models": ["linear"], "defaults": {"features": "thumbnail:4", "image_size": 16},
            "arms": {"baseline": {}, "weighted": {"loss": "weighted-ce"}}}  # fmt: skip
    checks = iter([False] * 5)  # time runs out after five runs have started
    monkeypatch.setattr(grid_module, "_past", lambda _d: next(checks, True))
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "runs"
    assert run_grid(load_grid(path), out, deadline=0.0)["completed"] == 5
    write_report(out, whole_splits=True)
    report = (out / "report.md").read_text()
    assert "1 run(s) on splits where not every technique finished" in report
    assert "compared on the same 2 split(s); results.csv lists them." in report
    assert "| baseline | 2 |" in report  # split 2's baseline run is not in the statistics
    write_report(out)  # every run
    assert "not every technique finished" not in (out / "report.md").read_text()


BOMB = """
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
name: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
data: .
arms: {baseline: {}}
"""


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert path.stat().st_size < 600
    t0 = time.perf_counter()
    with pytest.raises(imgbalance.ImgBalanceError, match=r"expands to [\d,]+ YAML nodes.*alias"):
        load_grid(path)
    assert time.perf_counter() - t0 < 5  # refused from the node graph, not by expanding it
    # a few honest aliases are fine
    path.write_text("defaults: &d {epochs: 2}\ndata: .\narms: {a: *d, b: *d}\n")
    assert load_grid(path)["arms"]["a"] == {"epochs": 2}


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("name", ["a"], "name must be a string"),
        ("seeds", "three", "seeds must be a list of integers"),
        ("seeds", [0, True], "seeds must be a list of integers"),
        ("seeds", 0, "seeds must be a list of integers, or a number of seeds >= 1"),
        ("models", "small-cnn", "models must be a list of model names"),
        ("defaults", [1, 2], "defaults must be a mapping"),
        ("arms", {"a": [1]}, r"arms must be a mapping of names to settings \(arm 'a'"),
        ("groups", {"g": "a"}, "groups must be a mapping of group names to lists"),
        ("resources", 4, "resources must be a mapping"),
    ],
)
def test_every_grid_field_is_type_checked(
    tmp_path: Path, field: str, value: object, match: str
) -> None:
    spec = {"data": ".", "arms": {"baseline": {}}, field: value}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(imgbalance.ImgBalanceError, match=match):
        load_grid(path)


def test_runs_on_a_rewritten_split_are_redone_and_paths_are_absolute(
    tmp_path: Path, image_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A split rewritten since its runs finished (the images changed) must not have its old
    runs paired with new ones; a relative --out still records where the splits are."""
    from imgtools import colour_image

    spec = {"data": str(image_tree), "splits": {"repeats": 2, "val": 0.25, "test": 0.25},
            "models": ["linear"], "defaults": {"features": "thumbnail:4", "image_size": 16},
            "arms": {"baseline": {}, "weighted": {"loss": "weighted-ce"}}}  # fmt: skip
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    grid = load_grid(path)
    monkeypatch.chdir(tmp_path)
    assert run_grid(grid, "runs")["completed"] == 4  # a relative output folder
    summary = json.loads((tmp_path / "runs" / "baseline__linear__split0__seed0" /
                          "experiment_summary.json").read_text())  # fmt: skip
    assert Path(summary["config"]["data"]).is_absolute() and summary["split_sha256"]
    monkeypatch.chdir(image_tree.parent.parent)  # the report, read from elsewhere
    rows = [r for r in imgbalance.experiments.results.collect_runs(tmp_path / "runs")[0]]
    assert all(r["resplit"] for r in rows)  # the overlap correction still applies
    monkeypatch.chdir(tmp_path)
    colour_image(np.random.default_rng(9), (40, 40, 200)).save(image_tree / "blue" / "new.png")
    again = run_grid(grid, "runs")  # both splits change: every run is redone
    assert again["skipped"] == 0 and again["completed"] == 4


def test_a_cnn_needs_two_images_a_batch(split_tree: Path) -> None:
    from imgbalance.experiments.config import RunConfig

    with pytest.raises(imgbalance.ImgBalanceError, match="batch_size must be at least 2"):
        RunConfig.from_dict({"data": str(split_tree), "batch_size": 1})
    RunConfig.from_dict({"data": str(split_tree), "batch_size": 1, "model": "linear"})


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_ctrl_c_stops_a_grid_and_its_workers_at_once(
    tmp_path: Path, split_tree: Path, stop: str
) -> None:
    """Ctrl-C (SIGINT to the foreground process group) in the middle of `experiment
    --jobs 2`, or SIGTERM to the command alone (`kill PID`, a scheduler): it stops within
    seconds, with one line and no traceback, no worker left and no run started after it."""
    grid = {
        "name": "endless",
        "data": str(split_tree),
        "seeds": [0, 1, 2, 3],
        "models": ["small-cnn"],
        "defaults": {"epochs": 100_000, "patience": 100_000, "image_size": 16, "batch_size": 8},
        "arms": {"baseline": {}},
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "imgbalance", "experiment", str(path), "--out", str(runs),
           "--jobs", "2", "--no-report"]  # fmt: skip
    driver = subprocess.Popen(
        interruptible(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    workers: list[int] = []
    try:
        workers = _two_runs_started(driver, runs)
        t0 = time.monotonic()
        if stop == "ctrl-c":
            os.killpg(driver.pid, signal.SIGINT)
        else:
            driver.send_signal(signal.SIGTERM)
        _, err = driver.communicate(timeout=60)
        assert time.monotonic() - t0 < 15
        assert b"Traceback" not in err, err.decode(errors="replace")[-3000:]
        assert driver.returncode == (130 if stop == "ctrl-c" else 143)
        assert b"Stopped by" in err
        assert all_gone(workers)
        assert len([d for d in runs.glob("baseline__*") if d.is_dir()]) == 2  # none after
    finally:
        driver.kill()
        for w in workers:
            with contextlib.suppress(OSError):
                os.kill(w, signal.SIGKILL)


@pytest.mark.parametrize(
    ("arms", "expected"),
    [
        ({"x": {}, "x__linear": {"loss": "weighted-ce"}}, "the arm name 'x__linear' cannot"),
        ({"baseline": {}, "_hidden": {}}, "the arm name '_hidden' cannot"),
        ({"baseline": {}, "": {}}, "the arm name '' cannot"),
        ({"baseline": {}, "..": {}}, r"the arm name '\.\.' cannot"),
    ],
)
def test_arm_names_that_cannot_name_run_folders_are_refused(
    tmp_path: Path, split_tree: Path, arms: dict[str, object], expected: str
) -> None:
    """The report reads a run's arm back from its folder ARM__MODEL__CELL: "x__linear"
    merged into arm x (its runs pooled with x's as if they were seeds), and a hidden or
    empty name trained but vanished from the verdict."""
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"data": str(split_tree), "models": ["linear"], "arms": arms}))
    with pytest.raises(imgbalance.ImgBalanceError, match=expected):
        load_grid(path)


def test_a_key_given_twice_in_a_grid_is_refused(tmp_path: Path, split_tree: Path) -> None:
    """YAML keeps the last of two equal keys: "smote" given twice ran one arm, labelled
    smote, whose config said random-over."""
    path = tmp_path / "grid.yaml"
    path.write_text(f"data: {split_tree}\nmodels: [linear]\narms:\n  baseline: {{}}\n"
                    "  smote: {technique: smote}\n  smote: {technique: random-over}\n")  # fmt: skip
    with pytest.raises(imgbalance.ImgBalanceError, match=r'line 6: the key "smote" is given again'):
        load_grid(path)


def test_a_class_that_cannot_reach_a_test_split_is_refused_before_any_run(
    tmp_path: Path, image_tree: Path
) -> None:
    """20 identical copies are one group, kept in one split: the class had no test image
    in any split and the verdict was computed on the other classes without a word; a
    test fraction of 0 crashed the grid's log line (macro-F1 None)."""
    from PIL import Image

    same = Image.new("RGB", (16, 16), (9, 99, 199))
    for i in range(20):
        same.save(image_tree / "red" / f"copy_{i}.png")
    for f in [p for p in (image_tree / "red").iterdir() if not p.name.startswith("copy_")]:
        f.unlink()
    spec = {"data": str(image_tree), "splits": {"repeats": 2}, "models": ["linear"],
            "defaults": {"features": "thumbnail:4"}, "arms": {"baseline": {}}}  # fmt: skip
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "runs"
    with pytest.raises(imgbalance.ImgBalanceError, match=r'Class "red" .* no test image .* 1 gr'):
        run_grid(load_grid(path), out)
    assert not [p for p in out.glob("baseline__*")]
    spec["splits"] = {"repeats": 2, "val": 0.2, "test": 0.0}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(imgbalance.ImgBalanceError, match="test is 0, so the runs would have no"):
        run_grid(load_grid(path), out)


def test_a_split_without_test_images_is_refused_by_a_run(tmp_path: Path, split_tree: Path) -> None:
    from imgbalance.experiments import RunConfig, run_training

    made = tmp_path / "no-test"
    imgbalance.write_split(imgbalance.split(split_tree / "train", val=0.2, test=0.0), made)
    with pytest.raises(imgbalance.ImgBalanceError, match="has no test images, so a run there"):
        run_training(RunConfig.from_dict({"data": str(made), "model": "linear"}),
                     tmp_path / "run")  # fmt: skip
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("key", "value"), [("seeds", [0, 0]), ("models", ["linear", "linear"])])
def test_a_seed_or_model_listed_twice_is_named(
    tmp_path: Path, split_tree: Path, key: str, value: list[object]
) -> None:
    """seeds: [0, 0] was refused with "Two runs would share a folder ... Rename the arms"."""
    spec = {"data": str(split_tree), "models": ["linear"], "arms": {"baseline": {}}, key: value}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(imgbalance.ImgBalanceError, match=rf"{key} lists .* twice: once each"):
        load_grid(path)


def test_more_runs_at_once_than_cpus_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--jobs 3`` on 2 CPUs ran without a word: each run slower, its time inflated."""
    import os

    from imgbalance._procs import threads_per_job

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    lines: list[str] = []
    assert threads_per_job(1, lines.append) is None and threads_per_job(2, lines.append) == 1
    assert lines == []
    assert threads_per_job(3, lines.append) == 1
    assert lines == ["note: 3 runs at once on 2 CPU(s): they share the CPUs, so the grid ends "
                     "no sooner than with 2 at a time and each run's time is longer"]  # fmt: skip
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)))
    assert threads_per_job(2, lines.append) == 4 and len(lines) == 1
