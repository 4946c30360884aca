"""Small filesystem helpers: atomic writes, path containment, output checks."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from ._options import option
from .errors import OutputError

__all__ = [
    "LOCK",
    "STAGING",
    "atomic_open_text",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "cache_dir",
    "check_inside",
    "check_not_below_file",
    "check_output_dir",
    "file_sha256",
    "is_hidden",
    "is_temporary",
    "is_within",
    "link_or_copy",
    "output_faults",
    "output_lock",
    "remove_listed",
    "remove_temporaries",
    "same_content",
    "sha256_of",
]


def is_hidden(name: str) -> bool:
    """Return True for dot-files and dot-folders (``.DS_Store``, ``.ipynb_checkpoints``)."""
    return name.startswith(".")


def is_within(path: Path, parent: Path) -> bool:
    """Return True when ``path`` is ``parent`` or lies below it (both resolved)."""
    path, parent = path.resolve(), parent.resolve()
    return path == parent or parent in path.parents


def _tmp_name(target: Path) -> Path:
    # Not mkstemp: its files are mode 0600. The writer creates this path itself,
    # so the output gets the user's usual permissions.
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _discard(tmp: Path) -> None:
    """Remove a temporary after a failure; a second error here must not hide the first."""
    with contextlib.suppress(OSError):
        tmp.unlink()


def _named(exc: OSError, target: Path, tmp: Path) -> OSError:
    # a failed write() names no file, a failed open() the temporary: name the target
    if exc.filename is None or exc.filename == str(tmp):
        return OSError(exc.errno, exc.strerror, str(target))
    return exc


@contextlib.contextmanager
def _replacing(target: Path, tmp: Path) -> Iterator[None]:
    """On a failure inside the block, remove ``tmp`` and re-raise, naming ``target``."""
    try:
        yield
    except OSError as exc:
        _discard(tmp)
        named = _named(exc, target, tmp)
        if named is exc:
            raise
        raise named from exc
    except BaseException:
        _discard(tmp)
        raise


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it into place on success.

    The temporary file lives in the same folder, so the final ``os.replace`` is
    atomic: a reader sees the old file or the complete new one, never half.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(target)
    with _replacing(target, tmp):
        yield tmp
        os.replace(tmp, target)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file and a rename.

    The common case costs four system calls (open, write, close, rename): the folder
    is created only when the first open finds it missing, and the temporary name is
    removed only when something failed (it is gone after the rename).
    """
    tmp = _tmp_name(target)
    with _replacing(target, tmp):
        try:
            fh = open(tmp, "xb")  # noqa: SIM115 - closed below, before the rename
        except FileNotFoundError:
            target.parent.mkdir(parents=True, exist_ok=True)
            fh = open(tmp, "xb")  # noqa: SIM115
        with fh:
            fh.write(data)
        os.replace(tmp, target)


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
    falls back to a copy. A copy goes through a temporary name and a rename, so an
    interrupted one (disk full, kill -9) never leaves a half-written file under the
    final name; a symlink's target is linked, not the link. Returns ``"link"`` or ``"copy"``.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    if mode == "link":
        try:
            os.link(os.path.realpath(src), dst)
            return "link"
        except OSError:
            pass
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return "copy"


#: the name :func:`atomic_path` gives a temporary: ``.<name>.<pid>.<8 hex>.tmp``
_TEMPORARY = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")


def is_temporary(name: str) -> bool:
    """True for a temporary file of :func:`atomic_path` (left behind by a killed writer)."""
    return bool(_TEMPORARY.match(name))


def _left_by_a_kill(name: str) -> bool:
    return name == LOCK or name.startswith(STAGING) or is_temporary(name)


def remove_temporaries(root: Path) -> int:
    """Delete imgbalance's own leftover temporaries under ``root``; return how many.

    Only names :func:`atomic_path` makes are touched, and links are not followed.
    """
    removed = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if is_temporary(name):
                Path(folder, name).unlink(missing_ok=True)
                removed += 1
    return removed


def check_inside(out: Path, paths: Iterable[str]) -> None:
    """Refuse output paths (relative to ``out``) whose folder is reached through a link
    that leaves ``out``: writing there would write, or replace files, somewhere else."""
    base = out.resolve()
    seen: dict[str, bool] = {}
    for rel in paths:
        folder = os.path.dirname(rel)
        if folder not in seen:
            parent = (out / folder).resolve()
            seen[folder] = parent == base or base in parent.parents
        if not seen[folder]:
            raise OutputError(
                f'"{out / folder}" leads out of the output folder "{out}" (a symbolic link '
                f'to "{(out / folder).resolve()}"). imgbalance writes only inside its output '
                "folder: remove the link, or choose another folder."
            )


def cache_dir() -> Path:
    """Where imgbalance's caches live (feature rows, balanced training sets, decoded
    pixels): ``$IMGBALANCE_CACHE_DIR``, or ``imgbalance`` under ``$XDG_CACHE_HOME`` or
    ``~/.cache``. Never inside a dataset."""
    if env := os.environ.get("IMGBALANCE_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imgbalance"


def sha256_of(path: Path) -> str:
    """sha256 of the file's bytes, read in blocks (an ``OSError`` when it cannot be read)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str | None:
    """:func:`sha256_of`, or None when the file cannot be read."""
    try:
        return sha256_of(path)
    except OSError:
        return None


def same_content(path: Path, source: Path, sha256: str | None) -> bool:
    """Whether ``path`` holds ``source``'s bytes: the same file (a hard link), or a copy of
    the same size whose sha256 is ``sha256`` (the source's, from the scan)."""
    try:
        if path.is_symlink() or not path.is_file():
            return False
        if os.path.samefile(path, source):
            return True
        if path.stat().st_size != source.stat().st_size:
            return False
    except OSError:
        return False
    return sha256 is not None and file_sha256(path) == sha256


def remove_listed(out: Path, paths: Iterable[str], protect: Iterable[Path] = ()) -> int:
    """Delete the files ``paths`` (relative to ``out``) that imgbalance wrote, then the
    folders that this leaves empty; never anything outside ``out``. Returns the count.

    This is how ``--overwrite`` replaces imgbalance's own outputs: the previous run's
    records (manifest, journal, split record) say which files are ours; every other
    file in ``out`` stays, and so do the folders that still hold one.
    """
    base = out.resolve()
    inputs = [p.resolve() for p in protect]
    removed = 0
    folders: set[Path] = set()
    for rel in paths:
        if not rel or os.path.isabs(rel):
            continue  # an absolute path is an original referenced in place: never ours
        target = out / rel
        try:
            parent = target.parent.resolve()
        except OSError:
            continue
        if parent != base and base not in parent.parents:
            continue  # "../" or a link out of the folder: not ours to touch
        if any(parent == i or i in parent.parents for i in inputs):
            continue  # inside an input tree: never, whatever a record says
        if target.is_symlink() or target.is_file():
            target.unlink()
            removed += 1
        folders.update(p for p in [target.parent, *target.parent.parents] if is_within(p, out))
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        if folder.resolve() != base:
            with contextlib.suppress(OSError):  # not empty (a user's file), or gone
                folder.rmdir()
    return removed


def check_output_dir(
    out: Path,
    inputs: Iterable[Path],
    *,
    overwrite: bool,
    replaces: Iterable[str] = (),
    resumable: Iterable[str] = (),
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
    resumable
        Names that only an interrupted run leaves: then the way on is ``--resume``.
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
    if out.is_symlink() and not out.exists():
        raise OutputError(
            f'Output path "{out}" is a symbolic link to a missing folder '
            f'("{os.readlink(out)}"). Create that folder or choose another path.'
        )
    if out.exists() and not out.is_dir():
        raise OutputError(f'Output path "{out}" exists and is a file. Choose a folder path.')
    check_not_below_file(out, "Choose a folder path.")
    # a killed run's lock, staging folder and temporaries are ours by name: not in the way
    left = [n for n in os.listdir(out) if not _left_by_a_kill(n)] if out.is_dir() else []
    if left and not overwrite and set(left) & set(resumable):
        raise OutputError(
            f'"{out}" holds an interrupted imgbalance run. Pass {option("resume", True)} to go on '
            f"(the files already written are verified and kept), or {option('overwrite', True)} "
            "to start again."
        )
    if left and not overwrite:
        raise OutputError(
            f'Destination path "{out}" already exists and is not empty. '
            f"Choose a new folder, or pass {option('overwrite', True)} to replace imgbalance's own "
            "outputs in it (other files there are left alone)."
        )


def check_not_below_file(out: Path, fix: str) -> None:
    """An output path below a file (``notes.txt/out``) cannot be made: a clear error."""
    above = next((p for p in out.absolute().parents if p.exists() or p.is_symlink()), None)
    if above is not None and not above.is_dir():
        why = f'lies below "{above}", which is a file, not a folder'
        raise OutputError(f'Output path "{out}" {why}. {fix}')


#: errors of the place written to, not of imgbalance: reported as a clear OutputError
_WRITE_HERE = "an output folder you can write to"
_OTHER_DISK = "an output folder on another disk"
#: errno -> (the cause, the fix in this folder, where else the command could write)
_OUTPUT_FAULTS = {
    errno.ENOSPC: ("the disk is full", "Free some space on it", _OTHER_DISK),
    errno.EDQUOT: ("the disk quota is exceeded", "Free some of your quota", _OTHER_DISK),
    errno.EROFS: (
        "the file system is read-only",
        "Remount it writable",
        "an output folder on a writable disk",
    ),
    errno.EACCES: ("permission denied", "Change the folder's permissions", _WRITE_HERE),
    errno.EPERM: ("operation not permitted", "Change the folder's permissions", _WRITE_HERE),
    errno.EISDIR: ("a folder is in the way", "Move that folder", "another output folder"),
}


@contextlib.contextmanager
def output_faults(out: Path, then: str) -> Iterator[None]:
    """Turn a full disk, a read-only or a forbidden output into an :class:`OutputError`
    naming the file, the cause and the fix (``then``: how to continue afterwards)."""
    try:
        yield
    except OSError as exc:
        fault = _OUTPUT_FAULTS.get(exc.errno or 0)
        named = [Path(f) for f in (exc.filename2, exc.filename) if f]  # a copy names both
        where = next((f for f in named if is_within(f, out)), None)
        if fault is None or where is None:
            raise  # another fault, one of an input file, or one that names no file
        if is_temporary(where.name):  # name the file being written, not its temporary
            where = where.with_name(where.name[1:].rsplit(".", 3)[0])
        cause, fix, elsewhere = fault  # `then` goes on in this folder; elsewhere starts anew
        raise OutputError(
            f'Cannot write "{where}": {cause} ({exc.strerror}). {fix}, then {then}; or choose '
            f"{elsewhere} and start there."
        ) from exc


#: the lock file a writer holds in its output folder (kept: removing it would race)
LOCK = ".imgbalance.lock"
#: the prefix of the folder a split fills before moving its trees in (a killed one's stays)
STAGING = ".imgbalance-staging-"


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the output folder ``out`` while writing into it.

    A second imgbalance process writing into the same folder gets a clear error
    naming the first one's PID instead of both crashing half-way. The lock is the
    kernel's (``flock``), so it is released when the process ends, even by kill -9.
    """
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    try:  # never through a link: truncating one would empty its target
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise OutputError(
            f'"{out / LOCK}" is a symbolic link; imgbalance keeps its lock file there. '
            "Remove the link."
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise OutputError(
                f'"{out}" is in use by another imgbalance process (PID {holder}) writing '
                "into it. Wait for it to finish, or choose another output folder."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # emptied when done: the same run leaves the same bytes
    finally:
        os.close(fd)  # closing releases the lock
