"""Nothing lost, nothing half-written: --overwrite removes only imgbalance's own files,
copies are atomic, --resume keeps only verified files, temporaries are cleaned up."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import shutil
from pathlib import Path

import pytest

import imgbalance
import imgbalance._fs as fs
import imgbalance.rendering.pool as pool
from imgbalance import OutputError
from imgbalance.rendering.kernel import RenderJob, RenderOptions

from conftest import tree_digest


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _user_files(out: Path) -> dict[Path, bytes]:
    files = {
        out / "README.txt": b"my notes on this run",
        out / "ants" / "my_notes.txt": b"ants I checked by hand",
        out / "ants" / "keep" / "photo.png": b"not an imgbalance output",
        out / "wasps" / "synthetic" / "mine.txt": b"a file in imgbalance's own folder",
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_balance_overwrite_removes_only_its_own_files(balanced_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = imgbalance.balance(balanced_tree, out, "smote", "count:45", workers=1, plots=False)
    assert sum(first.counts_after.values()) == 135
    mine = _user_files(out)
    imgbalance.balance(balanced_tree, out, "mixup", workers=1, overwrite=True, plots=False)
    for path, data in mine.items():  # every file of the user's is still there, unchanged
        assert path.read_bytes() == data
    listed = {row["path"] for row in _manifest(out)}
    on_disk = {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and p.parent != out and p not in mine
    }
    assert on_disk == listed  # no file of the first run is left behind
    assert not list(out.rglob("smote-*"))
    assert not (out / ".imgbalance-outputs.txt").exists()  # the ledger goes once done


def test_balance_refuses_to_replace_a_file_it_did_not_write(
    balanced_tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    imgbalance.balance(balanced_tree, out, "random-under", workers=1, plots=False)
    before = tree_digest(out)
    theirs = [out / c / "synthetic" / "smote-000000.png" for c in ("ants", "bees", "wasps")]
    for path in theirs:  # someone's files, named like the next run's first image
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"someone else's")
    with pytest.raises(OutputError, match=r"smote-000000.png\" .*not an output of an earlier"):
        imgbalance.balance(balanced_tree, out, "smote", workers=1, plots=False, overwrite=True)
    assert all(p.read_bytes() == b"someone else's" for p in theirs)
    after = tree_digest(out)  # refused before anything was removed: the last run is intact
    assert {k: v for k, v in after.items() if "synthetic" not in k} == before


def test_split_overwrite_keeps_other_files_in_the_trees(
    balanced_tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "splits"
    first = imgbalance.split(balanced_tree, random_state=1)
    imgbalance.write_split(first, out, materialize="copy")
    mine = {
        out / "train" / "ants" / "mine.txt": b"mine",
        out / "train" / "extra" / "photo.png": b"also mine",
        out / "test" / "notes.md": b"notes",
    }
    for path, data in mine.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    second = imgbalance.split(balanced_tree, random_state=2)
    imgbalance.write_split(second, out, materialize="link", overwrite=True)
    for path, data in mine.items():
        assert path.read_bytes() == data
    for row in second.rows:  # the new trees are complete and byte-identical to the input
        assert _sha(out / row["split"] / row["path"]) == row["sha256"]
    for row in first.rows:  # and nothing of the first split is left where it no longer is
        moved = next(r["split"] for r in second.rows if r["path"] == row["path"])
        if moved != row["split"]:
            assert not (out / row["split"] / row["path"]).exists()
    imgbalance.write_split(second, out, overwrite=True)  # no trees: the old ones go, not mine
    assert not (out / "train" / "ants" / second.rows[0]["path"].split("/")[-1]).exists()
    for path, data in mine.items():
        assert path.read_bytes() == data


def test_split_overwrite_removes_a_killed_runs_staging_folder(
    balanced_tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "splits"
    result = imgbalance.split(balanced_tree, random_state=1)
    imgbalance.write_split(result, out, materialize="copy")
    stale = out / ".imgbalance-staging-k1ll3d" / "train" / "ants"
    stale.mkdir(parents=True)
    (stale / "half.png").write_bytes(b"\x89PNG half")
    imgbalance.write_split(result, out, materialize="copy", overwrite=True)
    assert not list(out.glob(".imgbalance-staging-*"))


def test_a_symlinked_original_is_written_as_its_image_not_as_a_link(
    balanced_tree: Path, tmp_path: Path
) -> None:
    """A link in the input whose target is left out (hidden) or dropped must not dangle."""
    wasps = balanced_tree / "wasps"
    shutil.copyfile(wasps / "wasps_000.png", wasps / ".hidden.png")
    (wasps / "vis.png").symlink_to(".hidden.png")
    before = tree_digest(balanced_tree)
    out = tmp_path / "out"
    imgbalance.balance(balanced_tree, out, method="random-over", random_state=0, plots=False)
    split_out = tmp_path / "splits"
    imgbalance.write_split(imgbalance.split(balanced_tree, random_state=1), split_out,
                           materialize="link")  # fmt: skip
    written = [*out.rglob("vis.png"), *split_out.rglob("vis.png")]
    assert len(written) == 2
    for path in written:
        assert not path.is_symlink()
        assert path.read_bytes() == (wasps / ".hidden.png").read_bytes()
    assert tree_digest(balanced_tree) == before


@pytest.mark.parametrize("name", ["manifest.csv", "summary.json", "plan.json"])
def test_balance_overwrite_keeps_a_strangers_file_with_one_of_its_names(
    balanced_tree: Path, tmp_path: Path, name: str
) -> None:
    """A folder imgbalance never wrote into: its manifest.csv (or summary.json...) is
    someone else's, and --overwrite refuses instead of replacing it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text("mine\n")
    with pytest.raises(OutputError, match=rf"{name}\" .*not an output of an earlier"):
        imgbalance.balance(balanced_tree, out, "random-over", workers=1, plots=False,
                           overwrite=True)  # fmt: skip
    assert (out / name).read_text() == "mine\n"
    assert sorted(p.name for p in out.iterdir()) == sorted([name, ".imgbalance.lock"])


def test_balance_overwrite_names_an_earlier_manifest_it_cannot_read(
    balanced_tree: Path, tmp_path: Path
) -> None:
    """A manifest saved back in Latin-1 (by a spreadsheet, say): --overwrite cannot tell
    the run's files from others and refuses, and now says which record it could not read."""
    out = tmp_path / "out"
    imgbalance.balance(balanced_tree, out, "random-over", workers=1, plots=False)
    text = (out / "manifest.csv").read_text(encoding="utf-8")
    (out / "manifest.csv").write_bytes(text.encode("utf-8") + "é\n".encode("latin-1"))
    before = tree_digest(out)
    with pytest.raises(OutputError, match=r"manifest.csv\", cannot be read \('utf-8' codec"):
        imgbalance.balance(balanced_tree, out, "random-over", workers=1, plots=False,
                           overwrite=True)  # fmt: skip
    assert tree_digest(out) == before


def test_balance_overwrite_still_replaces_its_own_run(balanced_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    imgbalance.balance(balanced_tree, out, "random-over", workers=1, plots=False)
    again = imgbalance.balance(balanced_tree, out, "smote", workers=1, plots=False,
                               overwrite=True)  # fmt: skip
    assert json.loads((out / "summary.json").read_text())["synthetic"] == again.summary["synthetic"]
    assert again.summary["synthetic"]  # smote wrote new images, random-over copies only


@pytest.mark.parametrize("name", ["splits.csv", "split_summary.json", "near_duplicates.csv"])
def test_split_overwrite_keeps_a_strangers_file_with_one_of_its_names(
    balanced_tree: Path, tmp_path: Path, name: str
) -> None:
    out = tmp_path / "splits"
    out.mkdir()
    (out / name).write_text("mine\n")
    result = imgbalance.split(balanced_tree, random_state=1)
    with pytest.raises(OutputError, match=rf"{name}\" is not an output of an earlier"):
        imgbalance.write_split(result, out, overwrite=True)
    assert (out / name).read_text() == "mine\n"
    imgbalance.write_split(result, tmp_path / "mine", overwrite=True)  # its own: replaced
    imgbalance.write_split(result, tmp_path / "mine", materialize="link", overwrite=True)


@pytest.mark.parametrize("name", ["analysis.json", "class_distribution.png", "samples.png"])
def test_analyze_overwrite_keeps_a_strangers_file_with_one_of_its_names(
    balanced_tree: Path, tmp_path: Path, name: str
) -> None:
    """analyze --out DIR --overwrite replaced a user's samples.png (or a balance run's
    class_distribution.png) in a folder no analysis wrote; refused now, before the scan."""
    from typer.testing import CliRunner

    from imgbalance.cli import app

    out = tmp_path / "report"
    out.mkdir()
    (out / name).write_text("mine\n")
    r = CliRunner().invoke(app, ["analyze", str(balanced_tree), "--out", str(out), "--overwrite"])
    assert r.exit_code == 1 and "not an output of an earlier imgbalance analyze" in r.output
    assert (out / name).read_text() == "mine\n" and len(list(out.iterdir())) == 1
    mine = tmp_path / "mine"  # an earlier analysis of its own is replaced
    for _ in range(2):
        r = CliRunner().invoke(app, ["analyze", str(balanced_tree), "--out", str(mine),
                                     "--overwrite"])  # fmt: skip
        assert r.exit_code == 0, r.output
    assert (mine / "samples.png").read_bytes().startswith(b"\x89PNG")


def test_split_overwrite_removes_a_killed_writers_temporary(
    balanced_tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "splits"
    result = imgbalance.split(balanced_tree, random_state=1)
    imgbalance.write_split(result, out)
    (out / ".splits.csv.12.abcdef01.tmp").write_text("half")
    imgbalance.write_split(result, out, overwrite=True)
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("damage", ["csv-header", "summary"])
def test_split_overwrite_redoes_trees_whose_record_is_damaged(
    balanced_tree: Path, tmp_path: Path, damage: str
) -> None:
    """The fix the error of a damaged split prints ("re-run imgbalance split ...
    --overwrite") was refused: the tree files were not recognised as the split's own.
    Copies identical to their input file are, and no stale copy is left across splits."""
    out = tmp_path / "splits"
    imgbalance.write_split(imgbalance.split(balanced_tree, random_state=1), out,
                           materialize="copy")  # fmt: skip
    if damage == "csv-header":
        text = (out / "splits.csv").read_text()
        (out / "splits.csv").write_text(text.replace("path,", "file,", 1))
    else:
        (out / "split_summary.json").write_text("{ not json")
    mine = out / "train" / "ants" / "mine.txt"
    mine.write_text("mine")
    second = imgbalance.split(balanced_tree, random_state=2)
    imgbalance.write_split(second, out, materialize="copy", overwrite=True)
    trees = sorted(p.relative_to(out).as_posix() for s in ("train", "val", "test")
                   for p in (out / s).rglob("*") if p.is_file() and p != mine)  # fmt: skip
    assert trees == sorted(f"{r['split']}/{r['path']}" for r in second.rows)
    assert mine.read_text() == "mine"


def test_a_failed_copy_leaves_no_half_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 10_000)

    def disk_full(a: Path, b: Path) -> None:
        Path(b).write_bytes(Path(a).read_bytes()[:4000])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fs.shutil, "copyfile", disk_full)
    dst = tmp_path / "out" / "a.bin"
    with pytest.raises(OSError, match="No space"):
        fs.link_or_copy(src, dst, "copy")
    assert not dst.exists() and list(dst.parent.iterdir()) == []


def _interrupted(src: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A balance whose originals are copies (output on another filesystem), stopped by
    Ctrl-C a few images into its second chunk."""

    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(fs.os, "link", no_links)
    real = pool.render_recipe
    calls = {"n": 0}

    def flaky(job: RenderJob, opts: RenderOptions) -> bytes:
        calls["n"] += 1
        if calls["n"] > pool.CHUNK + 3:  # one chunk finished and journaled, one begun
            raise KeyboardInterrupt
        return real(job, opts)

    monkeypatch.setattr(pool, "render_recipe", flaky)
    with pytest.raises(KeyboardInterrupt):
        imgbalance.balance(src, out, "smote", random_state=3, workers=1, plots=False)
    monkeypatch.setattr(pool, "render_recipe", real)


def test_a_rerun_into_an_interrupted_balance_is_told_to_resume(
    balanced_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--overwrite would throw the work done away: the way on named first is --resume."""
    part = tmp_path / "part"
    _interrupted(balanced_tree, part, monkeypatch)
    monkeypatch.undo()
    with pytest.raises(
        OutputError, match=r"holds an interrupted imgbalance run\. Pass resume=True"
    ):
        imgbalance.balance(balanced_tree, part, "smote", random_state=3, workers=1, plots=False)
    imgbalance.balance(
        balanced_tree, part, "smote", random_state=3, workers=1, plots=False, resume=True
    )
    assert not (part / ".imgbalance-journal.jsonl").exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_parent_truncated_after_planning_is_named_not_a_traceback(
    balanced_tree: Path, tmp_path: Path, workers: int
) -> None:
    """A file that changed between the plan and its render: a clear error naming it."""
    src = tmp_path / "src"
    shutil.copytree(balanced_tree, src)
    planned = imgbalance.plan(src, "smote", random_state=0)
    parent = src / "wasps" / "wasps_000.png"
    parent.write_bytes(parent.read_bytes()[:60])  # the header only: truncated
    with pytest.raises(imgbalance.DatasetError, match=r"wasps_000\.png.*changed since"):
        imgbalance.render(planned, tmp_path / "out", workers=workers, plots=False)


def test_a_split_killed_while_materializing_is_run_again_as_it_was(
    balanced_tree: Path, tmp_path: Path
) -> None:
    """kill -9 leaves only the lock and the staging folder: the same command goes on."""
    out = tmp_path / "splits"
    stale = out / ".imgbalance-staging-k1ll3d" / "train" / "ants"
    stale.mkdir(parents=True)
    (stale / "half.png").write_bytes(b"\x89PNG half")
    (out / ".imgbalance.lock").write_text("")
    (out / ".splits.csv.123.0badc0de.tmp").write_text("half")
    result = imgbalance.split(balanced_tree, random_state=1)
    imgbalance.write_split(result, out, materialize="copy")
    assert not list(out.glob(".imgbalance-staging-*")) and not list(out.glob("*.tmp"))
    assert (out / "splits.csv").is_file()
    (out / "notes.txt").write_text("mine")  # a folder with a file of someone else's: refused
    with pytest.raises(OutputError, match="not empty"):
        imgbalance.write_split(result, out, materialize="copy")


def test_resume_keeps_only_verified_copies_and_cleans_temporaries(
    balanced_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = tmp_path / "full"
    imgbalance.balance(balanced_tree, full, "smote", random_state=3, workers=1, plots=False)
    part = tmp_path / "part"
    _interrupted(balanced_tree, part, monkeypatch)
    half = part / "ants" / "ants_003.png"  # a copy cut short, as an older version left it
    half.write_bytes(half.read_bytes()[:40])
    changed = part / "bees" / "bees_001.png"  # same size, other bytes
    changed.write_bytes(bytes(len(changed.read_bytes())))
    temp = part / "wasps" / "synthetic" / ".smote-000001.png.4242.deadbeef.tmp"
    temp.parent.mkdir(parents=True, exist_ok=True)
    temp.write_bytes(b"")  # a 0-byte temporary of a killed writer
    journal = part / ".imgbalance-journal.jsonl"
    journal.write_text(journal.read_text() + '{"path": "wasps/synth')  # a line cut by kill -9
    imgbalance.balance(
        balanced_tree, part, "smote", random_state=3, workers=1, plots=False, resume=True
    )
    assert _sha(half) == _sha(balanced_tree / "ants" / "ants_003.png")
    assert _sha(changed) == _sha(balanced_tree / "bees" / "bees_001.png")
    assert not temp.exists()
    for row in _manifest(part):
        assert _sha(part / row["path"]) == row["sha256"]
    timed = ("summary.json", "balance_summary.txt")
    a = {k: v for k, v in tree_digest(full).items() if k not in timed}
    b = {k: v for k, v in tree_digest(part).items() if k not in timed}
    assert a == b


def test_overwrite_cleans_a_killed_runs_temporaries(
    balanced_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    _interrupted(balanced_tree, out, monkeypatch)
    temp = out / "ants" / ".ants_000.png.77.0badf00d.tmp"
    temp.write_bytes(b"half")
    assert list(out.rglob("synthetic/smote-*"))  # the interrupted run had written some images
    imgbalance.balance(balanced_tree, out, "mixup", workers=1, plots=False, overwrite=True)
    assert not temp.exists()
    assert not list(out.rglob("smote-*"))  # the interrupted run's images are gone as well
    leftover = [p for p in out.rglob("*") if p.is_file() and fs.is_temporary(p.name)]
    assert leftover == []
    shutil.rmtree(out)


def test_names_with_separators_quotes_and_newlines_round_trip(tmp_path: Path) -> None:
    """The manifest's list cells are JSON and its fields CSV-quoted: a ``;`` in a class or
    file name once made balance render everything and then fail."""
    from imgtools import rgb, save

    src = tmp_path / "src"
    names = ['x;1,"q".png', "new\nline.png", "semi;colon.png", "it's a, name.png", "plain.png"]
    for k, cls in enumerate(['a;b,"c"', "plain"]):
        for i in range(12 if k else 4):
            save(rgb(i + 50 * k), src / cls / (names[i] if i < len(names) else f"{i}.png"))
    out = tmp_path / "out"
    result = imgbalance.balance(src, out, "smote", workers=1)
    assert result.counts_after == {'a;b,"c"': 12, "plain": 12}
    rows = _manifest(out)
    assert len(rows) == 24 and (out / "preview.png").is_file()
    for row in rows:
        parents = json.loads(row["parents"])
        weights = json.loads(row["weights"])
        assert len(parents) == len(weights) and all((src / p).is_file() for p in parents)
        assert _sha(out / row["path"]) == row["sha256"]
    originals = {json.loads(r["parents"])[0] for r in rows if r["origin"] == "original"}
    assert f'a;b,"c"/{names[1]}' in originals and f'a;b,"c"/{names[0]}' in originals


def test_two_writers_one_output_the_second_gets_a_clear_error(
    balanced_tree: Path, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys

    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from imgbalance._fs import output_lock\n"
            "with output_lock(Path(sys.argv[1])):\n"
            "    print('locked', flush=True); time.sleep(60)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(
            OutputError, match=rf"in use by another imgbalance process \(PID {holder.pid}\)"
        ):
            imgbalance.balance(balanced_tree, out, "smote", workers=1, overwrite=True)
        with pytest.raises(OutputError, match="in use"):
            imgbalance.write_split(imgbalance.split(balanced_tree), out, overwrite=True)
        assert not (out / "manifest.csv").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # kill -9 releases the lock with the process
        holder.wait()
    result = imgbalance.balance(balanced_tree, out, "smote", workers=1, plots=False)
    assert all((out / row["path"]).is_file() for row in result.manifest)


def _noisy_tree(root: Path, n: int = 40) -> Path:
    """Incompressible 48x48 PNGs (~7 KiB each): 40 of them fill a 400 KiB disk with copies."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, k in (("big", n), ("small", n // 4)):
        for i in range(k):
            path = root / cls / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(path)
    return root


def test_a_full_disk_is_a_clear_error_and_resume_finishes(tmp_path: Path, small_disk: Path) -> None:
    import subprocess

    src = _noisy_tree(tmp_path / "src")
    reference = tmp_path / "reference"
    imgbalance.balance(src, reference, "smote", random_state=1, workers=1, plots=False)
    out = small_disk / "out"  # another filesystem: originals are copied, not linked
    # from Python the hint names the keyword; the command line below names the flag
    with pytest.raises(OutputError, match=r"Cannot write .*the disk is full.*resume=True") as info:
        imgbalance.balance(src, out, "smote", random_state=1, workers=1, plots=False)
    assert info.value.__cause__ is not None and "Free some space" in str(info.value)
    for p in out.rglob("*"):  # nothing half-written under a final name
        if p.is_file() and p.suffix == ".png":
            rel = p.relative_to(out)
            assert _sha(p) == _sha((reference if "synthetic" in str(rel) else src) / rel)
    # the command line says the same in one line, exit 1, no traceback
    r = subprocess.run(
        [sys_executable(), "-m", "imgbalance", "balance", str(src), str(out), "--seed", "1",
         "--workers", "1", "--resume"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 1 and "the disk is full" in r.stderr and "Traceback" not in r.stderr
    assert "--resume" in r.stderr and "resume=True" not in r.stderr
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    imgbalance.balance(src, out, "smote", random_state=1, workers=1, plots=False, resume=True)
    timed = ("summary.json", "balance_summary.txt")
    a = {k: v for k, v in tree_digest(reference).items() if k not in timed}
    b = {k: v for k, v in tree_digest(out).items() if k not in timed}
    assert a == b


def test_a_read_only_output_is_a_clear_error(tmp_path: Path, small_disk: Path) -> None:
    import subprocess

    src = _noisy_tree(tmp_path / "src", 8)
    (small_disk / "out").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(OutputError, match=r"Cannot write .*read-only") as info:
        imgbalance.balance(src, small_disk / "out", "smote", workers=1, plots=False)
    assert "writable disk" in str(info.value) and "Free some space" not in str(info.value)
    # going on (--resume) is for this folder once it is writable; another folder starts anew
    assert "Remount it writable, then run it again with resume=True" in str(info.value)
    assert str(info.value).endswith(
        "or choose an output folder on a writable disk and start there."
    )
    with pytest.raises(OutputError, match=r"Cannot write .*read-only.*overwrite=True"):
        imgbalance.write_split(imgbalance.split(src), small_disk / "out")
    from imgbalance.reports.analysis import write_analysis

    with pytest.raises(OutputError, match=r"Cannot write .*read-only"):
        write_analysis(imgbalance.scan(src), small_disk / "out" / "report")


def sys_executable() -> str:
    import sys

    return sys.executable


# -- found by review: each of these lost data, wrote outside OUT or kept wrong bytes --------


def test_manifest_only_from_a_relative_input_never_deletes_the_input(
    balanced_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "base"
    shutil.copytree(balanced_tree, base / "in")
    monkeypatch.chdir(base)
    before = tree_digest(base / "in")
    for _ in range(2):  # the second run's cleanup read the in-place rows as OUT/in/...
        imgbalance.balance("in", "out", "smote", workers=1, manifest_only=True, overwrite=True)
    assert tree_digest(base / "in") == before
    rows = _manifest(base / "out")
    assert all(Path(r["path"]).is_absolute() for r in rows if r["origin"] == "original")


def test_a_class_folder_linked_out_of_the_output_is_refused(
    balanced_tree: Path, tmp_path: Path
) -> None:
    import os

    src = tmp_path / "src"
    shutil.copytree(balanced_tree, src)
    before = tree_digest(src)
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(src / "bees", out / "bees")
    with pytest.raises(OutputError, match=r"leads out of the output folder"):
        imgbalance.balance(src, out, "smote", workers=1, overwrite=True, manifest_only=True)
    splits = tmp_path / "splits"
    splits.mkdir()
    os.symlink(src / "ants", splits / "train")
    with pytest.raises(OutputError, match=r"leads out of the output folder"):
        imgbalance.write_split(imgbalance.split(src), splits, materialize="link", overwrite=True)
    assert tree_digest(src) == before


def test_rendering_again_after_the_inputs_changed_uses_the_new_pixels(
    balanced_tree: Path, tmp_path: Path
) -> None:
    from PIL import Image, ImageOps

    import imgbalance.rendering.kernel as kernel

    src = tmp_path / "src"
    shutil.copytree(balanced_tree, src)
    imgbalance.balance(src, tmp_path / "a", "smote", workers=1, plots=False)
    for p in src.rglob("*.png"):  # every image inverted in place, same names
        with Image.open(p) as im:
            inverted = ImageOps.invert(im.convert("RGB"))
        inverted.save(p)
    b = imgbalance.balance(src, tmp_path / "b", "smote", workers=1, plots=False)
    kernel._CACHE.items.clear()  # a fresh process's view
    kernel._CACHE.bytes = 0
    c = imgbalance.balance(src, tmp_path / "c", "smote", workers=1, plots=False)
    assert [r["sha256"] for r in b.manifest] == [r["sha256"] for r in c.manifest]


def test_resume_refuses_a_changed_input_or_other_settings(
    balanced_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    shutil.copytree(balanced_tree, src)
    part = tmp_path / "part"
    _interrupted(src, part, monkeypatch)
    with pytest.raises(OutputError, match="different plan"):  # another PNG level
        imgbalance.balance(
            src, part, "smote", random_state=3, workers=1, resume=True, png_compress_level=6
        )
    first = sorted(src.rglob("*.png"))[0]
    first.write_bytes(next(p for p in sorted(src.rglob("*.png")) if p != first).read_bytes())
    with pytest.raises(OutputError, match="different plan"):  # the same names, other bytes
        imgbalance.balance(src, part, "smote", random_state=3, workers=1, resume=True)
    # --resume --overwrite with a changed plan starts again instead of refusing
    imgbalance.balance(
        src, part, "smote", random_state=3, workers=1, resume=True, overwrite=True, plots=False
    )
    assert all(_sha(part / r["path"]) == r["sha256"] for r in _manifest(part))


def test_an_interrupted_split_can_be_redone_with_overwrite(
    balanced_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import imgbalance.dataset.splits as splits

    out = tmp_path / "splits"
    result = imgbalance.split(balanced_tree, random_state=1)
    real = splits._move_in
    moved = []

    def killed_after_train(staged: Path, target: Path) -> None:
        if moved:
            raise KeyboardInterrupt
        moved.append(target)
        real(staged, target)

    monkeypatch.setattr(splits, "_move_in", killed_after_train)
    with pytest.raises(KeyboardInterrupt):
        imgbalance.write_split(result, out, materialize="copy")
    assert (out / "train").is_dir() and not (out / "splits.csv").exists()
    monkeypatch.setattr(splits, "_move_in", real)
    imgbalance.write_split(result, out, materialize="copy", overwrite=True)
    for row in result.rows:
        assert _sha(out / row["split"] / row["path"]) == row["sha256"]
    assert not (out / ".imgbalance-split-outputs.txt").exists()


def test_odd_output_folders_are_clear_errors(balanced_tree: Path, tmp_path: Path) -> None:
    import os

    victim = tmp_path / "victim.txt"
    victim.write_text("important\n")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim, out / ".imgbalance.lock")
    with pytest.raises(OutputError, match="is a symbolic link"):
        imgbalance.balance(balanced_tree, out, "smote", workers=1, plots=False)
    assert victim.read_text() == "important\n"  # never truncated through the link
    (out / ".imgbalance.lock").unlink()
    (out / "ants").write_text("a file named like a class")
    with pytest.raises(OutputError, match=r'"ants" there'):
        imgbalance.balance(balanced_tree, out, "smote", workers=1, overwrite=True)
    os.symlink(tmp_path / "missing", tmp_path / "dangling")
    with pytest.raises(OutputError, match="link to a missing folder"):
        imgbalance.balance(balanced_tree, tmp_path / "dangling", "smote", workers=1)
    src = tmp_path / "src"
    shutil.copytree(balanced_tree, src)
    planned = imgbalance.plan(src, "smote")
    next(src.rglob("*.png")).unlink()
    with pytest.raises(imgbalance.DatasetError, match=r"is gone now\. Plan again"):
        imgbalance.render(planned, tmp_path / "out2", workers=1, plots=False)


def test_compare_on_a_full_or_read_only_disk_is_a_clear_error_and_resumes(
    tmp_path: Path, small_disk: Path
) -> None:
    import subprocess

    pytest.importorskip("torch", reason="compare's report goes through the torch extra")
    from imgbalance.experiments.compare import compare

    src = _noisy_tree(tmp_path / "src", 48)
    out = small_disk / "cmp"
    with pytest.raises(
        OutputError,
        match=r"Cannot write .*the disk is full.*it resumes|"
        r"Cannot write .*the disk is full.*runs are kept",
    ):
        compare(src, out, model="linear", repeats=3, techniques=["weighted-ce"])  # fmt: skip
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    done = compare(src, out, model="linear", repeats=3, techniques=["weighted-ce"])
    assert done["status"]["failed"] == 0 and (out / "verdict.json").is_file()
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and "tmp" in p.name]
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(OutputError, match=r"Cannot write .*read-only"):
        compare(src, small_disk / "other", model="linear", repeats=3)


def test_the_demo_on_a_full_disk_is_a_clear_error_and_the_next_demo_finishes(
    small_disk: Path,
) -> None:
    import subprocess

    out = small_disk / "demo"
    r = subprocess.run(
        [sys_executable(), "-m", "imgbalance", "demo", "--out", str(out), "--no-experiment"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "the disk is full" in r.stderr and "run `imgbalance demo` again" in r.stderr
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    r = subprocess.run(
        [sys_executable(), "-m", "imgbalance", "demo", "--out", str(out), "--no-experiment"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (out / "balanced" / "manifest.csv").is_file()


def test_occupied_paths_looks_at_empty_folders_once(tmp_path: Path) -> None:
    from imgbalance.rendering.outfolder import _occupied_paths

    out = tmp_path / "out"
    (out / "empty").mkdir(parents=True)
    (out / "full").mkdir()
    (out / "full" / "a.jpg").write_bytes(b"someone's")
    (out / "full" / "dangling.jpg").symlink_to(tmp_path / "nowhere")
    (out / "file").write_bytes(b"x")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "c.jpg").write_bytes(b"y")
    (out / "linked").symlink_to(tmp_path / "elsewhere")
    paths = ["missing/a.jpg", "empty/a.jpg", "full/b.jpg", "full/dangling.jpg", "full/a.jpg",
             "file/a.jpg", "linked/c.jpg", "linked/d.jpg"]  # fmt: skip
    assert _occupied_paths(out, paths) == ["full/dangling.jpg", "full/a.jpg", "linked/c.jpg"]
    assert _occupied_paths(out, paths) == [
        p for p in paths if (out / p).exists() or (out / p).is_symlink()
    ]


def test_balance_says_when_the_same_image_is_in_two_classes(
    balanced_tree: Path, tmp_path: Path
) -> None:
    """analyze calls a label conflict an error: balance uses the files, and says so."""
    shutil.copyfile(balanced_tree / "ants" / "ants_002.png", balanced_tree / "bees" / "cross.png")
    out = tmp_path / "out"
    imgbalance.balance(balanced_tree, out, method="random-over", random_state=0, plots=False)
    notes = json.loads((out / "summary.json").read_text())["notes"]
    said = [n for n in notes if "byte-identical to a file of another class" in n]
    assert len(said) == 1 and "2 file(s)" in said[0], notes
