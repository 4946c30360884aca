"""Small filesystem helpers: atomic writes, path containment, output checks."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import OutputError

__all__ = [
    "atomic_open_text",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_dir",
    "is_hidden",
    "is_within",
    "link_or_copy",
    "write_csv",
]


def is_hidden(name: str) -> bool:
    """Return True for dot-files and dot-folders (``.DS_Store``, ``.ipynb_checkpoints``)."""
    return name.startswith(".")


def is_within(path: Path, parent: Path) -> bool:
    """Return True when ``path`` is ``parent`` or lies below it (both resolved)."""
    path, parent = path.resolve(), parent.resolve()
    return path == parent or parent in path.parents


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it into place on success.

    The temporary file lives in the same folder, so the final ``os.replace`` is
    atomic: a reader sees the old file or the complete new one, never half.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its files are mode 0600. The writer creates this path itself,
    # so the output gets the user's usual permissions.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file and a rename."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_open_text(target: Path) -> Iterator[IO[str]]:
    """Open a temporary text file (UTF-8, ``newline=''``) renamed to ``target`` on success."""
    with atomic_path(target) as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
        yield fh


def link_or_copy(src: Path, dst: Path, mode: str) -> str:
    """Hard-link ``src`` to ``dst`` (``mode='link'``), or copy it byte for byte.

    A link that the filesystem refuses (another device, no hard-link support)
    falls back to a copy. Returns what was done: ``"link"`` or ``"copy"``.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    if mode == "link":
        try:
            os.link(src, dst, follow_symlinks=True)
            return "link"
        except OSError:
            pass
    shutil.copyfile(src, dst)
    return "copy"


def check_output_dir(
    out: Path,
    inputs: Iterable[Path],
    *,
    overwrite: bool,
    replaces: Iterable[str] = (),
) -> None:
    """Refuse an output folder that would write into an input or lose files.

    Parameters
    ----------
    out
        The output folder the command wants to write.
    inputs
        Folders that must never be written to.
    overwrite
        Whether the user allowed replacing earlier outputs in ``out``.
    replaces
        Names inside ``out`` that the command replaces with ``overwrite``; none
        of them may contain an input folder.
    """
    for src in inputs:
        if is_within(out, src):
            raise OutputError(
                f'Output folder "{out}" is inside the input folder "{src}". '
                "The input tree is never written to: choose an output folder outside it."
            )
        for name in replaces:
            if is_within(src, out / name):
                raise OutputError(
                    f'Output "{out / name}" would replace the input folder "{src}". '
                    "Choose another output folder."
                )
    if out.exists() and not out.is_dir():
        raise OutputError(f'Output path "{out}" exists and is a file. Choose a folder path.')
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputError(
            f'Destination path "{out}" already exists and is not empty. '
            "Choose a new folder, or pass --overwrite to replace imgbalance's own outputs in it "
            "(other files there are left alone)."
        )


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` (dicts with the same keys) as CSV, atomically; NaN becomes empty."""

    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(v, float) and v != v else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())
