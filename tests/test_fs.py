from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from imgbalance._fs import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    check_output_dir,
    link_or_copy,
)
from imgbalance.errors import OutputError


def test_atomic_write_uses_normal_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_path_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_bytes_makes_folders_and_leaves_nothing_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    atomic_write_bytes(tmp_path / "a" / "b" / "x.bin", b"1")  # folders made on demand
    assert (tmp_path / "a" / "b" / "x.bin").read_bytes() == b"1"
    atomic_write_bytes(tmp_path / "a" / "b" / "x.bin", b"22")  # replaced whole
    assert (tmp_path / "a" / "b" / "x.bin").read_bytes() == b"22"
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError) as blocked:  # a folder that cannot be made: the target named
        atomic_write_bytes(tmp_path / "file" / "x.bin", b"1")
    assert blocked.value.filename == str(tmp_path / "file" / "x.bin")

    def full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError) as err:
        atomic_write_bytes(tmp_path / "a" / "b" / "x.bin", b"333")
    monkeypatch.undo()
    assert err.value.filename == str(tmp_path / "a" / "b" / "x.bin")
    assert (tmp_path / "a" / "b" / "x.bin").read_bytes() == b"22"
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["x.bin"]
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C during the write: no temporary left
        monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
        atomic_write_bytes(tmp_path / "a" / "b" / "y.bin", b"1")
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["x.bin"]


def test_link_or_copy(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"abc")
    assert link_or_copy(src, tmp_path / "l" / "x.bin", "link") == "link"
    assert link_or_copy(src, tmp_path / "c" / "x.bin", "copy") == "copy"
    assert (tmp_path / "c" / "x.bin").stat().st_ino != src.stat().st_ino
    assert (tmp_path / "c" / "x.bin").read_bytes() == b"abc"


def test_link_or_copy_links_a_symlinks_target_not_the_link(tmp_path: Path) -> None:
    """link(2) does not follow a symlink: a relative one would dangle in its new folder."""
    (tmp_path / "in").mkdir()
    target = tmp_path / "in" / ".hidden.bin"
    target.write_bytes(b"abc")
    (tmp_path / "in" / "vis.bin").symlink_to(".hidden.bin")
    dst = tmp_path / "out" / "vis.bin"
    assert link_or_copy(tmp_path / "in" / "vis.bin", dst, "link") == "link"
    assert not dst.is_symlink() and dst.read_bytes() == b"abc"
    assert dst.stat().st_ino == target.stat().st_ino


def test_check_output_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    check_output_dir(tmp_path / "new", [data], overwrite=False)
    with pytest.raises(OutputError, match="inside the input folder"):
        check_output_dir(data / "sub", [data], overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        check_output_dir(tmp_path / "file", [data], overwrite=True)
    with pytest.raises(OutputError, match="would replace the input folder"):
        check_output_dir(tmp_path, [data], overwrite=True, replaces=("data",))
