"""Scanning a class-folder dataset into a :class:`~imgbalance.dataset.catalog.Catalog`.

Layout: ``root/<class>/**/<image>``. Class names are the sorted names of the
non-hidden sub-folders of ``root`` (torchvision ``ImageFolder`` order; unlike
``ImageFolder``, hidden folders such as ``.ipynb_checkpoints`` are not
classes), images in nested folders belong to their top-level class, and
whether a file is an image is decided by its content.
"""

from __future__ import annotations

import errno
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .._fs import is_hidden
from .._procs import process_pool
from ..errors import ConfigError, DatasetError
from .catalog import Catalog, ImageRecord, Problem, Skipped
from .images import DEFAULT_MAX_PIXELS
from .probe import FileFacts, probe_files

__all__ = ["scan"]

_PARALLEL_MIN_FILES = 256  # below this, starting processes costs more than it saves
_BATCH = 256  # files per task sent to a worker process


def _outside(path: str, tree: str) -> str | None:
    """The target of the link ``path`` when it resolves outside ``tree`` (a resolved
    folder), else None (not a link, or a link that stays inside)."""
    if not os.path.islink(path):
        return None
    target = os.path.realpath(path)
    inside = target == tree or target.startswith(tree.rstrip(os.sep) + os.sep)
    return None if inside else target


def _link_reason(target: str) -> str:
    return (
        f"a symbolic link to {target}, outside the dataset: not followed "
        "(--follow-links follows links out of the tree)"
    )


def _broken_link(path: str) -> str:
    """Why the link ``path`` at the top of the dataset leads nowhere."""
    try:
        to = f" (to {os.readlink(path)})"
    except OSError:
        to = ""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"broken-link: symbolic link loop: the link{to} leads back to itself"
    return f"broken-link: the link{to} points to nothing"


def _skip_reason(folder: str, name: str, follow_links: bool, tree: str) -> str | None:
    """Why the entry ``name`` of ``folder`` is skipped (hidden, or a link out of ``tree``
    that is not to be followed), or None to use it."""
    if is_hidden(name):
        return "hidden"
    target = None if follow_links else _outside(os.path.join(folder, name), tree)
    return None if target is None else _link_reason(target)


def _walk_class(
    root: str, class_name: str, follow_links: bool, tree: str
) -> Iterator[tuple[str, str | None]]:
    """Yield ``(path relative to root, why it is skipped or None)`` below a class folder,
    sorted.

    Symbolic links to folders are followed once (a link loop is not re-entered) when
    they stay inside ``tree`` (the resolved dataset root), or with ``follow_links``;
    a link out of the tree, to a folder or a file, is skipped with its reason.
    """
    seen: set[tuple[int, int]] = set()
    prefix = len(root) + 1
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, class_name), followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        rel_dir = dirpath[prefix:].replace(os.sep, "/")
        keep = []
        for d in sorted(dirnames):
            why = _skip_reason(dirpath, d, follow_links, tree)
            if why is None:
                keep.append(d)
            else:
                yield f"{rel_dir}/{d}", why
        dirnames[:] = keep
        for name in sorted(filenames):
            yield f"{rel_dir}/{name}", _skip_reason(dirpath, name, follow_links, tree)


def _discover(
    root: Path, follow_links: bool = False
) -> tuple[list[str], list[tuple[str, str]], list[Skipped]]:
    """Class names, ``(class, relative path)`` of every candidate file, and skipped entries."""
    if not root.exists():
        if root.is_symlink():
            raise DatasetError(f'Dataset path "{root}" is a broken symbolic link.')
        raise DatasetError(
            f'Dataset path "{root}" does not exist. Check the spelling, '
            "or run `imgbalance demo` to try the tool on built-in data."
        )
    if not root.is_dir():
        raise DatasetError(
            f'Dataset path "{root}" is a file. Pass the folder that holds one '
            f'sub-folder per class, e.g. "{root.parent}/<class>/*.jpg".'
        )
    tree = os.path.realpath(root)
    skipped: list[Skipped] = []
    classes: list[str] = []
    top_files = 0
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        target = None if follow_links else _outside(entry.path, tree)
        if is_hidden(entry.name):
            skipped.append(Skipped(entry.name, "hidden"))
        elif entry.is_symlink() and not os.path.exists(entry.path):  # a loop, or dangling
            skipped.append(Skipped(entry.name, _broken_link(entry.path)))
        elif target is not None and os.path.isdir(entry.path):
            skipped.append(Skipped(entry.name, "class folder: " + _link_reason(target)))
        elif entry.is_dir():
            classes.append(entry.name)
        else:
            top_files += 1
            skipped.append(Skipped(entry.name, "not inside a class folder"))
    if not classes:
        hint = (
            (
                f" It holds {top_files} file(s) directly: put each class's images in a "
                "sub-folder named after the class."
            )
            if top_files
            else ""
        )
        links = [s for s in skipped if "symbolic link" in s.reason]
        if links:
            hint += (
                f" {len(links)} class folder(s) are links out of the dataset, not followed: "
                "pass --follow-links to follow them."
            )
        raise DatasetError(
            f'Dataset path "{root}" has no class folders; expected "{root}/<class>/<image>".{hint}'
        )
    files: list[tuple[str, str]] = []
    for c in classes:
        for rel, why in _walk_class(str(root), c, follow_links, tree):
            if why is not None:
                skipped.append(Skipped(rel, why))
            else:
                files.append((c, rel))
    return classes, files, skipped


def scan(
    root: str | os.PathLike[str],
    *,
    verify: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    near_duplicates: bool = False,
    near_duplicate_distance: int = 4,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    follow_links: bool = False,
) -> Catalog:
    """Scan ``root/<class>/...`` and validate every file.

    Parameters
    ----------
    root
        Folder with one sub-folder per class.
    verify
        Decode every image fully (slower) to find corrupt pixel data; by
        default only headers are parsed and file trailers checked.
    max_pixels
        Images with more pixels are reported as decompression bombs and not decoded.
    near_duplicates
        Also compute a perceptual hash per image and report pairs whose hashes
        differ in at most ``near_duplicate_distance`` of 64 bits (approximate).
    workers
        Processes used for probing; default: the CPU count (at most 8).
    progress
        Called as ``progress(done, total)`` while files are probed.
    follow_links
        Follow symbolic links that lead out of ``root`` (as ``find -L`` does). By
        default such a link, to a class folder, a sub-folder or a file, is not
        followed and is listed among the skipped entries with its target: a dataset
        cannot pull in (and hash) files from elsewhere on the machine unasked.

    Returns
    -------
    Catalog

    Raises
    ------
    DatasetError
        The path is missing or a file, has no class folders, or no image files.

    Examples
    --------
    >>> catalog = imgbalance.scan("data")               # doctest: +SKIP
    >>> print(catalog.counts(), catalog.balance_ratio)  # doctest: +SKIP
    """
    root = Path(root)
    if max_pixels < 1:
        raise ConfigError(f"max_pixels must be positive, got {max_pixels}")
    classes, files, skipped = _discover(root, follow_links)
    base = str(root)
    paths = [os.path.join(base, rel) for _, rel in files]
    probe = partial(
        probe_files, verify=verify, max_pixels=max_pixels, near_duplicates=near_duplicates
    )
    facts = _run_probes(probe, paths, workers, progress)
    class_to_idx = {c: i for i, c in enumerate(classes)}
    records: list[ImageRecord] = []
    for (c, rel), f in zip(files, facts, strict=True):
        if f.is_image:
            records.append(_record(rel, c, class_to_idx[c], f))
        else:
            skipped.append(Skipped(rel, f.skip_reason or "not an image"))
    if not records:
        raise DatasetError(
            f'Dataset path "{root}" has class folders ({", ".join(classes[:5])}'
            f"{', ...' if len(classes) > 5 else ''}) but no images in them. "
            "Supported formats include JPEG, PNG, BMP, TIFF, WebP and GIF."
        )
    _mark_duplicates(records)
    settings = {
        "verify": verify,
        "max_pixels": max_pixels,
        "near_duplicates": near_duplicates,
        "near_duplicate_distance": near_duplicate_distance,
        "follow_links": follow_links,
    }
    catalog = Catalog(
        root=root,
        classes=classes,
        records=records,
        skipped=skipped,
        class_problems=[],
        settings=settings,
    )
    counts = catalog.counts()
    catalog.class_problems = [
        Problem(
            c,
            "empty-class",
            "warning",
            "the class folder has no readable images",
            "add images, or remove the folder so it is not a class",
        )
        for c, n in counts.items()
        if n == 0
    ] + [
        Problem(
            c,
            "single-image-class",
            "warning",
            "the class has only one readable image: "
            "it cannot appear in both training and test, nor be interpolated",
            "collect more images of this class, or merge or drop it",
        )
        for c, n in counts.items()
        if n == 1
    ]
    if near_duplicates:
        catalog.near_duplicates = _near_duplicates(records, near_duplicate_distance)
    return catalog


def _run_probes(
    probe: Callable[[list[str]], list[FileFacts]],
    paths: list[str],
    workers: int | None,
    progress: Callable[[int, int], None] | None,
) -> list[FileFacts]:
    total = len(paths)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    batches = [paths[i : i + _BATCH] for i in range(0, total, _BATCH)]
    out: list[FileFacts] = []
    if workers <= 1 or total < _PARALLEL_MIN_FILES:
        results: Iterator[list[FileFacts]] = map(probe, batches)
        for batch in results:
            out.extend(batch)
            if progress:
                progress(len(out), total)
        return out
    with process_pool(workers) as pool:
        for batch in pool.map(probe, batches):
            out.extend(batch)
            if progress:
                progress(len(out), total)
    return out


def _record(rel: str, class_name: str, label: int, f: FileFacts) -> ImageRecord:
    rec = ImageRecord(
        path=rel,
        class_name=class_name,
        label=label,
        size_bytes=f.size,
        format=f.format,
        mode=f.mode,
        width=f.width,
        height=f.height,
        bit_depth=f.bit_depth,
        orientation=f.orientation,
        sha256=f.sha256,
        dhash=f.dhash,
    )
    rec.problems = [Problem(rel, *p) for p in f.problems]
    return rec


def _mark_duplicates(records: list[ImageRecord]) -> None:
    by_hash: dict[str, list[ImageRecord]] = defaultdict(list)
    for r in records:
        if r.sha256 is not None:
            by_hash[r.sha256].append(r)
    for group in by_hash.values():
        if len(group) < 2:
            continue
        classes = sorted({r.class_name for r in group})
        for r in group:
            others = ", ".join(o.path for o in group if o is not r)
            if len(classes) > 1:
                r.problems.append(
                    Problem(
                        r.path,
                        "label-conflict",
                        "error",
                        f"byte-identical to {others} in another class ({', '.join(classes)})",
                        "decide which class is right and delete the other copies",
                    )
                )
            else:
                r.problems.append(
                    Problem(
                        r.path,
                        "duplicate",
                        "warning",
                        f"byte-identical to {others}",
                        "delete the extra copies; splits keep duplicates together meanwhile",
                    )
                )


def _near_duplicates(records: list[ImageRecord], max_distance: int) -> list[dict[str, Any]]:
    """Pairs of images whose 64-bit dHashes differ in few bits (approximate)."""
    recs = [r for r in records if r.dhash is not None]
    if len(recs) < 2:
        return []
    hashes = np.array([r.dhash for r in recs], dtype=np.uint64)
    pairs: list[dict[str, Any]] = []
    for start in range(0, len(recs), 1024):
        dist = np.bitwise_count(hashes[start : start + 1024, None] ^ hashes[None, :])
        for i, j in zip(*np.nonzero(dist <= max_distance), strict=True):
            a, b = recs[start + int(i)], recs[int(j)]
            if start + i < j and a.sha256 != b.sha256:
                pairs.append(
                    {
                        "a": a.path,
                        "b": b.path,
                        "distance": int(dist[i, j]),
                        "same_class": a.class_name == b.class_name,
                        "approximate": True,
                    }
                )
    return pairs
