"""One output file the user names (``predict --out`` / ``--metrics``, ``export --out``):
checked before any work, then written atomically, or written into when it is a stream.

A regular file is replaced only with ``--overwrite``, through a temporary beside it. A
stream the user names (``/dev/stdout``, a FIFO, bash's ``>(...)``) is written into, never
replaced: ``os.replace`` onto ``/dev/stdout`` turned the device into a regular file. A
folder, or a path below a file, is an error naming the path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ._fs import atomic_write_bytes, check_not_below_file, output_faults
from ._options import option
from ._text import control_escaped
from .errors import OutputError

__all__ = ["check_output_file", "existing_folder_of", "is_stream", "write_output_file"]


#: where a path names a device or a process's open file (``/dev/stdout`` is a link to
#: ``/proc/self/fd/1``, which is a terminal, a pipe or the file a shell redirected to)
_STREAM_ROOTS = (Path("/dev"), Path("/proc"))


def is_stream(path: Path) -> bool:
    """Whether ``path`` is written into rather than replaced: a character device, a FIFO
    or a socket, or any path in ``/dev`` or ``/proc`` (a descriptor redirected to a
    regular file is one too: renaming onto ``/dev/stdout`` replaced the link itself)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return True
    given = Path(os.path.abspath(path))
    return any(given == root or root in given.parents for root in _STREAM_ROOTS)


def check_output_file(
    path: Path, *, overwrite: bool, what: str = "--out", streams: bool = True
) -> None:
    """Refuse ``path`` as the file to write before any work is done: a folder, a path
    below a file, a stream where a stream cannot be written (``streams=False``), an
    existing file without ``--overwrite``."""
    if is_stream(path):
        if streams:
            return
        raise OutputError(
            f'"{path}" is a device or a pipe, and {what} writes a file with another file '
            "beside it. Name a file path."
        )
    if path.is_dir():
        raise OutputError(
            f'"{path}" is a folder; {what} names the file to write (for example '
            f'"{path / "predictions.csv"}").'
        )
    check_not_below_file(path, "Choose another path.")
    if path.exists() and not path.is_file():
        raise OutputError(f'"{path}" exists and is not a regular file. Choose another path.')
    if path.exists() and not overwrite:
        raise OutputError(
            f'"{path}" exists; pass {option("overwrite", True)} or choose another path.'
        )


def write_output_file(path: Path, data: str | bytes, then: str) -> None:
    """Write ``data`` to ``path``: into it when it is a stream (a terminal gets control
    characters written out), else atomically; a full disk or a read-only folder is an
    :class:`OutputError` naming the file (``then``: how to go on)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if is_stream(path):  # appended: a redirected stdout keeps what was written before
        with output_faults(path, then), open(path, "ab") as fh:
            if isinstance(data, str) and fh.isatty():
                raw = control_escaped(data).encode("utf-8")
            fh.write(raw)
        return
    with output_faults(existing_folder_of(path), then):
        atomic_write_bytes(path, raw)


def existing_folder_of(path: Path) -> Path:
    """The nearest folder above ``path`` that exists: the place whose faults are the
    write's, the folders it creates included (a read-only disk fails the first mkdir)."""
    return next((p for p in path.absolute().parents if p.exists()), Path(path.anchor))
