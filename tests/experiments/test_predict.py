"""``imgbalance predict`` and :mod:`imgbalance.experiments.predict`: a finished run's
model used on its own test split gives the run's files again, byte for byte; on any
images it gives probabilities, labels from class folders, and clear errors."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imgbalance.cli import app
from imgbalance.errors import ImgBalanceError
from imgbalance.experiments import RunConfig, run_training
from imgbalance.experiments.predict import find_images, load_run

from imgtools import COLOURS, colour_image, run_cli

torch = pytest.importorskip("torch", reason="torch runs need the torch extra")


def cli(*args: str | Path, process: bool = False) -> subprocess.CompletedProcess[str]:
    """The command line: in this process (the same command the console script runs; a
    torch import less per call), or, with ``process``, through the console script."""
    if process:
        return run_cli(*args)
    r = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "NO_COLOR": "1"})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception  # a bug, which the console script would show as a traceback
    return subprocess.CompletedProcess(list(args), r.exit_code, r.stdout, r.stderr)


def _tree(root: Path) -> Path:
    rng = np.random.default_rng(0)
    counts = {"train": (24, 8, 3), "val": (4, 3, 1), "test": (4, 3, 2)}
    for split, ns in counts.items():
        for (name, colour), n in zip(COLOURS.items(), ns, strict=True):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                colour_image(rng, colour).save(folder / f"{name} {i}.png")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("predict")
    data = _tree(base / "split")
    common = {"data": str(data), "image_size": 16, "epochs": 2, "batch_size": 4, "seed": 1}
    out = {"data": data}
    for name, extra in {
        "cnn": {},
        "ensemble": {"ensemble": 2},
        "linear": {"model": "linear", "features": "pca:5:thumbnail:8"},
        # the CIFAR recipe: a cosine head (LDAM's) that predict must rebuild as it was
        "ldam": {
            "model": "resnet20",
            "loss": "ldam",
            "drw_epoch": 2,
            "optimizer": "sgd",
            "lr": 0.05,
            "augment": "crop-flip",
            "schedule": "multistep",
            "milestones": [1],
        },
    }.items():
        out[name] = base / name
        run_training(RunConfig.from_dict({**common, **extra}), out[name])
    return out


@pytest.mark.parametrize("name", ["cnn", "ensemble", "linear", "ldam"])
def test_predicting_the_test_split_gives_the_runs_files_byte_for_byte(
    runs: dict[str, Path], tmp_path: Path, name: str
) -> None:
    run = runs[name]
    pred, metrics = tmp_path / "p.csv", tmp_path / "m.csv"
    r = cli("predict", run, "--split", "test", "--posthoc", "none", "--out", pred,
            "--metrics", metrics)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert pred.read_bytes() == (run / "predictions.csv").read_bytes()
    assert metrics.read_bytes() == (run / "test_metrics.csv").read_bytes()
    # the validation split too, through the library
    p = load_run(run)
    rows = list(csv.DictReader((run / "val_predictions.csv").open()))
    paths = [str(runs["data"] / "val" / row["path"]) for row in rows]
    proba, failed = p.predict(paths)
    want = np.array([[float(row[f"p:{c}"]) for c in p.classes] for row in rows])
    assert not failed and np.array_equal(proba, want)


def test_posthoc_probabilities_are_the_runs_variants(runs: dict[str, Path], tmp_path: Path) -> None:
    run = runs["cnn"]
    summary = json.loads((run / "experiment_summary.json").read_text())
    for variant in ("temperature", "prior_correction", "logit_adjustment", "threshold_moving"):
        pred = tmp_path / f"{variant}.csv"
        r = cli("predict", run, "--split", "test", "--posthoc", variant, "--out", pred)
        assert r.returncode == 0, r.stderr
        rows = list(csv.DictReader(pred.open()))
        y = np.array([int(row["label_idx"]) for row in rows])
        k = np.array([summary["classes"].index(row["pred"]) for row in rows])
        recall = [float((k[y == c] == c).mean()) for c in range(3) if (y == c).any()]
        want = summary["posthoc"][variant]["balanced_accuracy"]
        assert np.mean(recall) == pytest.approx(want, abs=1e-12)
    # temperature never changes the predicted class
    none, temp = tmp_path / "none.csv", tmp_path / "temperature.csv"
    cli("predict", run, "--split", "test", "--posthoc", "none", "--out", none)
    pick = lambda f: [row["pred"] for row in csv.DictReader(f.open())]  # noqa: E731
    assert pick(none) == pick(temp)


def test_an_older_run_without_inference_json_predicts_the_same(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    old = tmp_path / "old"
    shutil.copytree(runs["cnn"], old)
    record = json.loads((old / "inference.json").read_text())
    (old / "inference.json").unlink()
    assert load_run(old).record["posthoc"]["temperature"] == record["posthoc"]["temperature"]
    pred = tmp_path / "p.csv"
    r = cli("predict", old, "--split", "test", "--posthoc", "none", "--out", pred)
    assert r.returncode == 0, r.stderr
    assert pred.read_bytes() == (old / "predictions.csv").read_bytes()


def test_folders_give_labels_files_do_not_and_tta_is_mirror_invariant(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    run, data = runs["cnn"], runs["data"]
    r = cli("predict", run, data / "test", data / "val" / "red" / "red 0.png", "--tta")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(r.stdout.splitlines()))
    assert len(rows) == 10 and rows[0]["path"].endswith("test/blue/blue 0.png")
    assert rows[0]["label"] == "blue" and rows[-1]["label"] == "" and rows[-1]["label_idx"] == ""
    for row in rows:
        assert sum(float(row[f"p:{c}"]) for c in COLOURS) == pytest.approx(1.0)
    # TTA averages an image with its mirror: the mirror image gets the same probabilities
    from PIL import Image, ImageOps

    src = data / "test" / "blue" / "blue 1.png"
    mirror = tmp_path / "mirror.png"
    ImageOps.mirror(Image.open(src)).save(mirror)
    p = load_run(run)
    a, _ = p.predict([str(src), str(mirror)], tta=True)
    b, _ = p.predict([str(src), str(mirror)], tta=False)
    assert np.allclose(a[0], a[1], atol=1e-6) and not np.allclose(b[0], b[1], atol=1e-6)


def test_bad_inputs_exit_1_naming_the_file(runs: dict[str, Path], tmp_path: Path) -> None:
    run = runs["cnn"]
    note = tmp_path / "notes.txt"
    note.write_text("not an image")
    r = cli("predict", run, note, process=True)
    assert r.returncode == 1 and "notes.txt" in r.stderr and "not an image" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli("predict", run, empty)
    assert r.returncode == 1 and "holds no images" in r.stderr and "Traceback" not in r.stderr
    folder = tmp_path / "imgs"
    folder.mkdir()
    colour_image(np.random.default_rng(0), COLOURS["red"]).save(folder / "ok.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (folder / "readme.md").write_text("x")
    r = cli("predict", run, folder)
    assert r.returncode == 1 and "broken.png" in r.stderr and "--skip-unreadable" in r.stderr
    r = cli("predict", run, folder, "--skip-unreadable")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2  # header and ok.png
    assert "left out" in r.stderr and "broken.png" in r.stderr and "readme.md" in r.stderr
    # outputs never replace the run's files, nor an existing file without --overwrite
    r = cli("predict", run, folder / "ok.png", "--out", run / "predictions.csv")
    assert r.returncode == 1 and "inside the run folder" in r.stderr
    r = cli("predict", run, folder / "ok.png", "--out", note)
    assert r.returncode == 1 and "--overwrite" in r.stderr and note.read_text() == "not an image"
    r = cli("predict", run, folder / "ok.png", "--metrics", tmp_path / "m.csv")
    assert r.returncode == 1 and "true class" in r.stderr
    r = cli("predict", tmp_path, folder)
    assert r.returncode == 1 and "finished imgbalance run" in r.stderr
    r = cli("predict", run, folder, "--posthoc", "magic")
    assert r.returncode == 1 and "temperature" in r.stderr


def test_out_writes_into_a_stream_and_refuses_a_folder(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """--out /dev/stdout --overwrite renamed a regular file onto /dev/stdout (the device
    link became a file); a folder as --out was an IsADirectoryError traceback; --out and
    --metrics on one file lost the metrics silently."""
    import os
    import stat

    from imgtools import ENTRY

    run, image = runs["cnn"], next((runs["data"] / "test" / "red").iterdir())
    with (tmp_path / "redirected.txt").open("w") as fh:  # stdout redirected to a file
        fh.write("earlier line\n")
        fh.flush()
        r = subprocess.run([*ENTRY, "predict", str(run), str(image), "--out", "/dev/stdout",
                            "--overwrite"], stdout=fh, stderr=subprocess.PIPE, text=True,
                           stdin=subprocess.DEVNULL, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert os.path.islink("/dev/stdout")  # still the link to the process's descriptor
    lines = (tmp_path / "redirected.txt").read_text().splitlines()
    assert lines[0] == "earlier line" and lines[1].startswith("path,") and len(lines) == 3
    assert "wrote 1 prediction(s) to /dev/stdout" in r.stderr  # not into the CSV
    r = cli("predict", run, image, "--out", "/dev/stdout", process=True)  # a pipe
    assert r.returncode == 0 and r.stdout.startswith("path,"), r.stderr
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    r = cli("predict", run, image, "--out", fifo)
    assert r.returncode == 0 and reader.communicate(timeout=60)[0].startswith("path,")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    r = cli("predict", run, image, "--out", "-")  # the usual name of standard output
    assert r.returncode == 0 and r.stdout.startswith("path,") and not Path("-").exists()
    folder = tmp_path / "reports"
    folder.mkdir()
    for extra in ([], ["--overwrite"]):
        r = cli("predict", run, image, "--out", folder, *extra)
        assert r.returncode == 1 and f'"{folder}" is a folder' in " ".join(r.stderr.split())
    below = tmp_path / "file.txt"
    below.write_text("x")
    r = cli("predict", run, image, "--out", below / "p.csv")
    assert r.returncode == 1 and "which is a file, not a folder" in " ".join(r.stderr.split())
    same = tmp_path / "same.csv"
    r = cli("predict", run, "--split", "test", "--out", same, "--metrics", same)
    assert r.returncode == 1 and "give each its own file" in " ".join(r.stderr.split())
    assert not same.exists()


def test_outputs_on_a_read_only_disk_are_a_clear_error(
    runs: dict[str, Path], small_disk: Path
) -> None:
    """predict --out and export onto a read-only disk were OSError tracebacks."""
    run, image = runs["cnn"], next((runs["data"] / "test" / "red").iterdir())
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    for args in (
        ["predict", run, image, "--out", small_disk / "p.csv"],
        ["predict", run, "--split", "test", "--metrics", small_disk / "sub" / "m.csv"],
        ["export", run, "--format", "torchscript", "--out", small_disk / "m.pt"],
        ["export", run, "--format", "torchscript", "--out", small_disk / "sub" / "m.pt"],
    ):
        r = cli(*args)
        assert r.returncode == 1, (args, r.stderr)
        assert (
            "Cannot write" in r.stderr and "read-only" in r.stderr and "Traceback" not in r.stderr
        )


def test_find_images_leaves_out_links_out_of_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "in" / "red"
    folder.mkdir(parents=True)
    colour_image(np.random.default_rng(0), COLOURS["red"]).save(folder / "a.png")
    outside = tmp_path / "outside.png"
    colour_image(np.random.default_rng(1), COLOURS["red"]).save(outside)
    (folder / "b.png").symlink_to(outside)
    found = find_images([tmp_path / "in"], list(COLOURS), follow_links=False)
    assert [Path(p).name for p, _, _ in found.images] == ["a.png"]
    assert found.images[0][2] == list(COLOURS).index("red")
    assert "link out of the folder" in found.skipped[0][1]
    found = find_images([tmp_path / "in"], list(COLOURS), follow_links=True)
    assert len(found.images) == 2
    with pytest.raises(ImgBalanceError, match="does not exist"):
        find_images([tmp_path / "nope"], [], follow_links=False)


def test_a_run_records_its_split_absolute_and_predict_refuses_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A split named relative to where train ran must not become another split when
    predict runs elsewhere; one whose splits.csv differs from the run's is refused."""
    import imgbalance

    rng = np.random.default_rng(3)
    for name, colour in COLOURS.items():
        (tmp_path / "flat" / name).mkdir(parents=True)
        for i in range(12):
            colour_image(rng, colour).save(tmp_path / "flat" / name / f"{i}.png")
    imgbalance.write_split(imgbalance.split(tmp_path / "flat", random_state=0), tmp_path / "split")
    monkeypatch.chdir(tmp_path)
    cfg = {"data": "split", "model": "linear", "features": "pca:5:thumbnail:8", "seed": 1}
    run_training(RunConfig.from_dict(cfg), tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    assert recorded == str(tmp_path / "split")
    other = tmp_path / "elsewhere" / "split"
    imgbalance.write_split(imgbalance.split(tmp_path / "flat", random_state=1), other)
    r = cli("predict", tmp_path / "run", "--split", "test", "--data", other)
    assert r.returncode == 1 and "is not the split the run was trained on" in r.stderr, r.stderr
    assert cli("predict", tmp_path / "run", "--split", "test").returncode == 0
