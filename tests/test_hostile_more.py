"""Hand-edited and hostile inputs end in one clear line (exit 1) naming the file, the rule
broken and the fix, never in a traceback: edited split files, non-UTF-8 CSVs, bad group
files, a link loop, analyze's --strict and --near-duplicates reports, and a class named
like one of balance's own output files."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import imgbalance
from imgbalance.cli import app
from imgbalance.errors import EXIT_ERROR, DatasetError
from imgbalance.experiments.data import load_split

from imgtools import rgb, save, write


def cli(*args: str | Path) -> tuple[int, str]:
    """Run the command line; return the exit code and its whole output."""
    r = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "2000"})
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output
    return r.exit_code, r.output


def error_line(*args: str | Path) -> str:
    """The one ``Error:`` line of a command that must fail with exit code 1."""
    code, output = cli(*args)
    assert code == EXIT_ERROR, output
    lines = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, output
    assert lines[0].rstrip().endswith("."), lines[0]  # the whole message, on one line
    return lines[0]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Two small classes of PNGs; one file has a non-ASCII name."""
    root = tmp_path / "data"
    for c, n in (("ants", 8), ("bees", 6)):
        for i in range(n):
            save(rgb(100 * len(c) + 10 * n + i, (12, 10)), root / c / f"{c}{i}.png")
    os.replace(root / "ants" / "ants0.png", root / "ants" / "café.png")
    return root


@pytest.fixture
def split_dir(data: Path, tmp_path: Path) -> Path:
    """``imgbalance split DATA --out S`` of ``data``."""
    out = tmp_path / "S"
    result = imgbalance.split(data, random_state=0, near_duplicates=False)
    imgbalance.write_split(result, out)
    return out


def _rows(split_dir: Path) -> list[list[str]]:
    with (split_dir / "splits.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def _write_rows(split_dir: Path, rows: list[list[str]], encoding: str = "utf-8") -> None:
    with (split_dir / "splits.csv").open("w", encoding=encoding, newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def _train(split_dir: Path, tmp_path: Path) -> str:
    return error_line("train", split_dir, "--out", tmp_path / "R", "--model", "linear")


# -- 1. splits.csv edited by hand ------------------------------------------------------------


def test_a_split_value_that_is_not_train_val_or_test(split_dir: Path, tmp_path: Path) -> None:
    rows = _rows(split_dir)
    col = rows[0].index("split")
    line = next(i for i, r in enumerate(rows) if r[col] == "val") + 1  # the header is line 1
    rows[line - 1][col] = "validation"
    _write_rows(split_dir, rows)
    msg = _train(split_dir, tmp_path)
    assert f'"{split_dir / "splits.csv"}", line {line}, column "split"' in msg
    assert "'validation' is not a split" in msg
    assert '"train", "val" and "test"' in msg and 'write "val"' in msg
    with pytest.raises(DatasetError, match=rf"line {line}, column \"split\""):
        load_split(split_dir)
    assert not (tmp_path / "R").exists() or not any((tmp_path / "R").iterdir())


def test_a_splits_csv_without_a_path_column(split_dir: Path, tmp_path: Path) -> None:
    rows = _rows(split_dir)
    rows[0][rows[0].index("path")] = "file"
    _write_rows(split_dir, rows)
    msg = _train(split_dir, tmp_path)
    assert f"\"{split_dir / 'splits.csv'}\" has no 'path' column" in msg
    assert "file,class,label,split,group,sha256" in msg  # the header it found
    assert "Restore the header row" in msg and "imgbalance split" in msg
    with pytest.raises(DatasetError, match="has no 'path' column"):
        load_split(split_dir)


def test_a_path_listed_twice_in_splits_csv_is_refused(split_dir: Path) -> None:
    rows = _rows(split_dir)
    col, path = rows[0].index("split"), rows[0].index("path")
    test = next(r for r in rows[1:] if r[col] == "test")
    train = next(i for i, r in enumerate(rows) if r[col] == "train")
    copy = list(rows[train])
    copy[path] = test[path]  # the test image listed again, as training
    rows.append(copy)
    _write_rows(split_dir, rows)
    with pytest.raises(DatasetError, match=r"is listed again .* in \"test\"; here in \"train\""):
        load_split(split_dir)


def test_a_splits_csv_row_without_a_path(split_dir: Path, tmp_path: Path) -> None:
    rows = _rows(split_dir)
    rows[3][0] = ""
    _write_rows(split_dir, rows)
    msg = _train(split_dir, tmp_path)
    assert 'line 4: the "path" column is empty' in msg and "delete the row" in msg


# -- 2. split_summary.json edited by hand ----------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: json.dumps({k: v for k, v in s.items() if k != "classes"}), "no 'classes' key"),
        (lambda s: json.dumps(s)[:-9], "is not valid JSON (line 1, column"),
        (lambda s: json.dumps(list(s)), 'must hold a JSON object with "root" and "classes"'),
        (lambda s: json.dumps({**s, "classes": "ants,bees"}), '"classes" must be a list'),
    ],
    ids=["no-classes", "not-json", "a-list", "classes-a-string"],
)
def test_a_broken_split_summary(split_dir: Path, tmp_path: Path, edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    file = split_dir / "split_summary.json"
    file.write_text(edit(json.loads(file.read_text(encoding="utf-8"))), encoding="utf-8")
    msg = _train(split_dir, tmp_path)
    assert f'"{file}"' in msg and expected in msg
    assert f"imgbalance split DATA --out {split_dir} --overwrite" in msg
    with pytest.raises(DatasetError, match=r"split_summary\.json"):
        load_split(split_dir)
    # `experiment` reads the summary too: the same message, before any run
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"data: {split_dir}\narms:\n  baseline: {{}}\n", encoding="utf-8")
    msg = error_line("experiment", grid, "--out", tmp_path / "runs")
    assert f'"{file}"' in msg and expected in msg


# -- 3. CSVs that are not UTF-8 --------------------------------------------------------------


def test_a_latin1_splits_csv(split_dir: Path, tmp_path: Path) -> None:
    rows = _rows(split_dir)
    line = next(i for i, r in enumerate(rows) if r[0] == "ants/café.png") + 1
    _write_rows(split_dir, rows, encoding="latin-1")
    msg = _train(split_dir, tmp_path)
    assert f'"{split_dir / "splits.csv"}" is not UTF-8 text: line {line}' in msg
    assert "Save the file as UTF-8" in msg


def test_a_latin1_groups_csv(data: Path, tmp_path: Path) -> None:
    groups = tmp_path / "groups.csv"
    paths = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.png"))
    text = "path,group\n" + "".join(f"{p},patient-{i % 3}\n" for i, p in enumerate(paths))
    groups.write_bytes(text.encode("latin-1"))
    line = paths.index("ants/café.png") + 2  # the header is line 1
    msg = error_line("split", data, "--out", tmp_path / "S", "--groups", groups)
    assert f'"{groups}" is not UTF-8 text: line {line}' in msg
    assert "Save the file as UTF-8" in msg
    assert not (tmp_path / "S").exists()
    groups.write_bytes(text.encode("utf-8"))  # saved as UTF-8, the same file splits
    code, output = cli(
        "split", data, "--out", tmp_path / "S", "--groups", groups, "--no-near-duplicates"
    )
    assert code == 0, output


# -- 4. analyze --near-duplicates mentions only files it wrote -------------------------------


def _near_duplicate_data(root: Path) -> Path:
    x = np.linspace(0, 255, 32)
    arr = np.stack(
        [np.tile(x, (24, 1)), np.tile(x[:24, None], (1, 32)), np.full((24, 32), 90.0)], -1
    ).astype(np.uint8)
    save(Image.fromarray(arr), root / "ants" / "grad.png")
    save(Image.fromarray(arr), root / "ants" / "grad.jpg", quality=90)  # a re-encoded copy
    for i in range(3):
        save(rgb(i), root / "bees" / f"b{i}.png")
    for i in range(7):  # more zero-byte files than the table shows
        write(root / "bees" / f"empty{i}.jpg", b"")
    return root


def test_analyze_near_duplicates_without_out_names_no_file(tmp_path: Path) -> None:
    root = _near_duplicate_data(tmp_path / "data")
    code, output = cli("analyze", root, "--near-duplicates")
    assert code == 0, output
    assert "1 near-duplicate pair(s)" in output and "2 more" in output
    assert "analysis.json" not in output  # it wrote none
    assert "--json" in output
    assert list(tmp_path.iterdir()) == [root]
    out = tmp_path / "report"
    code, output = cli("analyze", root, "--near-duplicates", "--out", out)
    assert code == 0, output
    assert output.count(str(out / "analysis.json")) >= 2  # both mentions name the file
    assert (out / "analysis.json").is_file()


# -- 5. analyze --strict names the first error -----------------------------------------------


def test_strict_names_the_first_error_and_both_counts(tmp_path: Path) -> None:
    root = tmp_path / "data"
    save(rgb(1), root / "ants" / "a.png")
    write(root / "ants" / "a_copy.png", (root / "ants" / "a.png").read_bytes())  # 2 warnings
    save(rgb(2), root / "ants" / "b.png")
    write(root / "ants" / "broken.png", b"")  # the one error, listed after the warnings
    save(rgb(3), root / "solo" / "only.png")  # a class warning, listed first
    cat = imgbalance.scan(root, workers=1)
    assert next(p.severity for p in cat.problems) == "warning"
    msg = error_line("analyze", root, "--strict")
    assert "--strict allows no errors or warnings" in msg
    assert "1 error(s) and 3 warning(s)" in msg
    assert "first error: ants/broken.png: zero-byte" in msg and "Fix:" in msg
    save(rgb(4), root / "solo" / "two.png")
    (root / "ants" / "broken.png").unlink()
    msg = error_line("analyze", root, "--strict")  # only warnings: the first warning
    assert "0 error(s) and 2 warning(s)" in msg and "first warning: ants/a.png: duplicate" in msg


# -- 6. a link loop is a link loop -----------------------------------------------------------


def test_a_self_referencing_link_is_reported_as_a_link_loop(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for i in range(3):
        save(rgb(i), root / "ants" / f"a{i}.png")
        save(rgb(10 + i), root / "bees" / f"b{i}.png")
    os.symlink("loop", root / "ants" / "loop")
    os.symlink("pong.png", root / "bees" / "ping.png")  # two links that point at each other
    os.symlink("ping.png", root / "bees" / "pong.png")
    cat = imgbalance.scan(root, workers=1)
    looped = {p.path: p for p in cat.problems if p.code == "broken-link"}
    assert set(looped) == {"ants/loop", "bees/ping.png", "bees/pong.png"}
    for p in looped.values():
        assert "link loop" in p.message and "delete the link" in p.fix
        assert "permission" not in str(p).lower()
    code, output = cli("analyze", root)
    assert code == 0, output
    assert "symbolic link loop" in output and "permission" not in output.lower()
    msg = error_line("analyze", root, "--strict")
    assert "first error: ants/loop: broken-link: symbolic link loop" in msg


# -- 7. a --groups CSV with an empty group or a path twice -----------------------------------


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ({0: ("ants/ants1.png", "")}, 'line 2: "ants/ants1.png" has an empty group'),
        ({0: ("ants/ants1.png", "  ")}, 'line 2: "ants/ants1.png" has an empty group'),
        ({4: ("ants/ants1.png", "p9")}, '"ants/ants1.png" is listed again (first on line 2)'),
        ({4: ("ants\\ants1.png", "p2")}, '"ants/ants1.png" is listed again (first on line 2)'),
        ({2: ("", "p1")}, 'line 4: the "path" column is empty'),
    ],
    ids=["empty-group", "blank-group", "path-twice", "path-twice-backslash", "no-path"],
)
def test_a_groups_csv_with_a_bad_row(
    data: Path, tmp_path: Path, rows: dict[int, tuple[str, str]], expected: str
) -> None:
    paths = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.png"))
    table = [[p, f"patient-{i % 3}"] for i, p in enumerate(paths)]
    for i, row in rows.items():
        table[i] = list(row)
    groups = tmp_path / "groups.csv"
    with groups.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows([["path", "group"], *table])
    msg = error_line("split", data, "--out", tmp_path / "S", "--groups", groups)
    assert f'Groups file "{groups}", ' in msg and expected in msg
    assert "listed again" not in expected or 'line 6: "ants/ants1.png"' in msg
    assert "then run the split again" in msg
    with pytest.raises(DatasetError, match="Groups file"):
        imgbalance.read_groups_csv(groups)
    assert not (tmp_path / "S").exists()


# -- a class named like one of balance's own outputs -------------------------------------


@pytest.mark.parametrize("name", ["manifest.csv", "Plan.JSON", "stages"])
def test_a_class_named_like_an_output_file_is_refused_before_writing(
    data: Path, tmp_path: Path, name: str
) -> None:
    """A class folder ``manifest.csv`` used to be rendered into, then the manifest write
    failed on it (IsADirectoryError traceback, a folder of images and no manifest)."""
    os.replace(data / "bees", data / name)
    out = tmp_path / "out"
    msg = error_line("balance", data, out, "--method", "random-over")
    assert f'The class folder "{name}" has the name of the' in msg and "Rename" in msg
    assert not out.exists()  # nothing written, not even the lock
    with pytest.raises(imgbalance.ImgBalanceError, match="Rename that class folder"):
        imgbalance.balance(data, out, "random-over")
    assert not out.exists()


def test_a_link_loop_at_the_class_level_is_skipped_and_named(data: Path) -> None:
    """A class-level link to itself, two links to each other, a dangling one: a traceback
    (ELOOP from is_dir) before; now each is skipped with its reason."""
    (data / "loop").symlink_to("loop")
    (data / "x").symlink_to("y")
    (data / "y").symlink_to("x")
    (data / "gone").symlink_to("nowhere")
    catalog = imgbalance.scan(data)
    reasons = {s.path: s.reason for s in catalog.skipped}
    assert (
        reasons["loop"]
        == "broken-link: symbolic link loop: the link (to loop) leads back to itself"
    )
    assert "symbolic link loop" in reasons["x"] and "symbolic link loop" in reasons["y"]
    assert reasons["gone"] == "broken-link: the link (to nowhere) points to nothing"
    assert catalog.classes == ["ants", "bees"]
    code, output = cli("analyze", data)
    assert code == 0 and "leads back to itself" in output


@pytest.mark.parametrize(
    "command",
    [
        ["balance", "{data}", "{out}"],
        ["split", "{data}", "--out", "{out}"],
        ["analyze", "{data}", "--out", "{out}"],
        ["train", "{split}", "--out", "{out}", "--model", "linear"],
    ],
    ids=["balance", "split", "analyze", "train"],
)
def test_an_output_path_below_a_file_is_a_clear_error(
    data: Path, split_dir: Path, tmp_path: Path, command: list[str]
) -> None:
    """A NotADirectoryError traceback before (from the lock, or the first mkdir)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    args = [a.format(data=data, split=split_dir, out=afile / "out") for a in command]
    msg = error_line(*args)
    assert f'lies below "{afile}", which is a file, not a folder' in msg
    assert afile.read_text() == "x"
    if command[0] == "train":  # OUT itself a file
        assert "exists and is a file" in error_line(*args[:3], str(afile), *args[4:])


def test_an_existing_output_names_the_keyword_in_python_and_the_flag_on_the_cli(
    data: Path, tmp_path: Path
) -> None:
    """The Python API said "pass --overwrite" (a flag a caller of balance() cannot pass)."""
    out = tmp_path / "out"
    imgbalance.balance(data, out, "random-over", plots=False)
    with pytest.raises(imgbalance.ImgBalanceError, match=r"pass overwrite=True to replace"):
        imgbalance.balance(data, out, "random-over", plots=False)
    split = imgbalance.split(data, random_state=0, near_duplicates=False)
    imgbalance.write_split(split, tmp_path / "S")
    with pytest.raises(imgbalance.ImgBalanceError, match=r"pass overwrite=True to replace"):
        imgbalance.write_split(split, tmp_path / "S")
    assert "pass --overwrite to replace" in error_line("balance", data, out)
    assert "pass --overwrite to replace" in error_line("split", data, "--out", tmp_path / "S")


def test_split_lists_what_the_scan_left_out(data: Path, tmp_path: Path) -> None:
    """A class folder linked out of the tree, a file linked out of it and a text file
    vanished from a split without a word (analyze and balance listed them)."""
    elsewhere = tmp_path / "elsewhere"
    save(rgb(7, (12, 10)), elsewhere / "wasps" / "w.png")
    (data / "wasps").symlink_to(elsewhere / "wasps")
    (data / "bees" / "outside.png").symlink_to(elsewhere / "wasps" / "w.png")
    (data / "ants" / "notes.txt").write_text("not an image")
    code, output = cli("split", data, "--out", tmp_path / "S")
    assert code == 0
    assert "skipped 3 file(s)" in output and "bees/outside.png" in output
    summary = json.loads((tmp_path / "S" / "split_summary.json").read_text())
    skipped = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {"wasps", "bees/outside.png", "ants/notes.txt"}
    assert "outside the dataset: not followed" in skipped["wasps"]


def test_a_split_whose_images_moved_reads_its_own_copies(data: Path, tmp_path: Path) -> None:
    """After the image folder moved, a split made with --materialize copy was refused
    ("re-run imgbalance split") though it holds every image, byte for byte. Its copies
    are read now, each checked against its recorded sha256; a split without copies, or
    with a copy that changed, is still refused."""
    import shutil

    moving = tmp_path / "moving"
    shutil.copytree(data, moving)
    result = imgbalance.split(moving, random_state=0, near_duplicates=False)
    imgbalance.write_split(result, tmp_path / "copies", materialize="copy")
    imgbalance.write_split(result, tmp_path / "plain")
    before = load_split(tmp_path / "copies")
    moving.rename(tmp_path / "elsewhere")
    after = load_split(tmp_path / "copies")
    assert after.classes == before.classes
    for s in ("train", "val", "test"):
        assert [lab for _, lab in after.rows[s]] == [lab for _, lab in before.rows[s]]
        assert all(p.startswith(str((tmp_path / "copies" / s).resolve())) for p, _ in after.rows[s])
    assert after.train_fingerprint() == before.train_fingerprint()  # the same training set
    assert (tmp_path / "copies").resolve() in [p.resolve() for p in after.inputs]
    with pytest.raises(DatasetError, match=r"no longer exists .*no copies of its images"):
        load_split(tmp_path / "plain")
    changed = next((tmp_path / "copies" / "test").rglob("*.png"))
    changed.write_bytes(changed.read_bytes() + b"x")
    with pytest.raises(DatasetError, match="no longer exists"):
        load_split(tmp_path / "copies")
