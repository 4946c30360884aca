"""Scanning a class-folder dataset into a :class:`Catalog`.

Layout: ``root/<class>/**/<image>``. Class names are the sorted names of the
non-hidden sub-folders of ``root`` (torchvision ``ImageFolder`` order), images
in nested folders belong to their top-level class, and whether a file is an
image is decided by its content.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ._fs import is_hidden
from .errors import DatasetError
from .images import DEFAULT_MAX_PIXELS, FileFacts, probe_file

__all__ = ["Catalog", "ImageRecord", "Problem", "Skipped", "scan"]

SEVERITIES = ("error", "warning", "info")
_PARALLEL_MIN_FILES = 256
_CHUNK = 64


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file (or one class)."""

    path: str
    code: str
    severity: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.code}: {self.message}. Fix: {self.fix}."


@dataclass(frozen=True)
class Skipped:
    """A file that is not part of the dataset, and why."""

    path: str
    reason: str


@dataclass
class ImageRecord:
    """Facts about one image file. ``path`` is relative to the root, with ``/``."""

    path: str
    class_name: str
    label: int
    size_bytes: int
    format: str | None
    mode: str | None
    width: int | None
    height: int | None
    bit_depth: int | None
    orientation: int | None
    sha256: str | None
    dhash: int | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def readable(self) -> bool:
        """True when the pixels can be used (no unreadable/truncated/... problem)."""
        return not any(
            p.severity == "error" and p.code not in _DATASET_LEVEL for p in self.problems
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "class": self.class_name,
            "label": self.label,
            "format": self.format,
            "mode": self.mode,
            "width": self.width,
            "height": self.height,
            "bit_depth": self.bit_depth,
            "exif_orientation": self.orientation,
            "bytes": self.size_bytes,
            "sha256": self.sha256,
            "readable": self.readable,
            "problems": [p.code for p in self.problems],
        }


# Errors about the dataset's labels rather than the file's pixels.
_DATASET_LEVEL = frozenset({"label-conflict"})


@dataclass
class Catalog:
    """Everything a scan found: classes, images, problems and skipped files.

    Examples
    --------
    >>> cat = imgbalance.scan("data")            # doctest: +SKIP
    >>> cat.counts(), cat.imbalance_ratio        # doctest: +SKIP
    """

    root: Path
    classes: list[str]
    records: list[ImageRecord]
    skipped: list[Skipped]
    class_problems: list[Problem]
    near_duplicates: list[dict[str, Any]] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    @property
    def problems(self) -> list[Problem]:
        """Class-level problems, then every file's problems in path order."""
        return self.class_problems + [p for r in self.records for p in r.problems]

    def usable(self) -> list[ImageRecord]:
        """Records whose pixels can be read."""
        return [r for r in self.records if r.readable]

    def counts(self) -> dict[str, int]:
        """Readable images per class, every class listed (empty ones with 0)."""
        out = dict.fromkeys(self.classes, 0)
        for r in self.usable():
            out[r.class_name] += 1
        return out

    def _nonzero(self) -> list[int]:
        return [n for n in self.counts().values() if n > 0]

    @property
    def balance_ratio(self) -> float | None:
        """``min/max`` of the non-empty class counts (1.0 is balanced); STEM's target_ratio."""
        n = self._nonzero()
        return min(n) / max(n) if n else None

    @property
    def imbalance_ratio(self) -> float | None:
        """``max/min`` of the non-empty class counts (1.0 is balanced); the literature's IR."""
        n = self._nonzero()
        return max(n) / min(n) if n else None

    def minority_classes(self, threshold: float = 0.5) -> list[str]:
        """Non-empty classes with fewer than ``threshold`` x the largest class's images."""
        counts = self.counts()
        top = max(counts.values(), default=0)
        return [c for c, n in counts.items() if 0 < n < threshold * top]

    def problem_counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for p in self.problems:
            out[p.code] += 1
        return dict(sorted(out.items()))

    def class_stats(self) -> list[dict[str, Any]]:
        """Per-class summary rows: count, share, size range, modes, formats, problems."""
        counts = self.counts()
        total = sum(counts.values())
        by_class: dict[str, list[ImageRecord]] = defaultdict(list)
        for r in self.records:
            by_class[r.class_name].append(r)
        rows = []
        for c in self.classes:
            recs = by_class[c]
            ok = [r for r in recs if r.readable and r.width is not None]
            widths = [r.width for r in ok if r.width is not None]
            heights = [r.height for r in ok if r.height is not None]
            areas = [(r.width or 0) * (r.height or 0) for r in ok]
            smallest = ok[int(np.argmin(areas))] if ok else None
            largest = ok[int(np.argmax(areas))] if ok else None
            rows.append(
                {
                    "class": c,
                    "label": self.class_to_idx[c],
                    "count": counts[c],
                    "share": counts[c] / total if total else 0.0,
                    "files": len(recs),
                    "min_size": [smallest.width, smallest.height] if smallest else None,
                    "max_size": [largest.width, largest.height] if largest else None,
                    "width_range": [min(widths), max(widths)] if widths else None,
                    "height_range": [min(heights), max(heights)] if heights else None,
                    "modes": _tally(r.mode for r in recs if r.mode),
                    "formats": _tally(r.format for r in recs if r.format),
                    "problems": sum(len(r.problems) for r in recs),
                    "bytes": sum(r.size_bytes for r in recs),
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Everything above as JSON-ready data (the content of ``analysis.json``)."""
        from . import __version__

        counts = self.counts()
        return {
            "imgbalance_version": __version__,
            "root": str(self.root),
            "settings": self.settings,
            "classes": self.classes,
            "class_to_idx": self.class_to_idx,
            "counts": counts,
            "total_images": sum(counts.values()),
            "empty_classes": [c for c, n in counts.items() if n == 0],
            "balance_ratio": self.balance_ratio,
            "imbalance_ratio": self.imbalance_ratio,
            "ratio_definitions": {
                "balance_ratio": "min/max of non-empty class counts (1 = balanced)",
                "imbalance_ratio": "max/min of non-empty class counts (1 = balanced)",
            },
            "majority_class": max(counts, key=lambda c: counts[c]) if counts else None,
            "minority_classes": self.minority_classes(),
            "per_class": self.class_stats(),
            "problem_counts": self.problem_counts(),
            "problems": [p.__dict__ for p in self.problems],
            "skipped": [s.__dict__ for s in self.skipped],
            "near_duplicates": self.near_duplicates,
            "files": [r.to_dict() for r in self.records],
        }


def _tally(values: Iterator[str] | Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[v] += 1
    return dict(sorted(out.items()))


def _walk_class(class_dir: Path) -> Iterator[tuple[Path, bool]]:
    """Yield ``(file, hidden)`` below a class folder, sorted, following links once."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        st = os.stat(dirpath)
        key = (st.st_dev, st.st_ino)
        if key in seen:  # a symlink loop: do not descend again
            dirnames[:] = []
            continue
        seen.add(key)
        hidden_dirs = sorted(d for d in dirnames if is_hidden(d))
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for d in hidden_dirs:
            yield Path(dirpath, d), True
        for name in sorted(filenames):
            yield Path(dirpath, name), is_hidden(name)


def _discover(root: Path) -> tuple[list[str], list[tuple[str, Path]], list[Skipped]]:
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
    skipped: list[Skipped] = []
    classes: list[str] = []
    top_files = 0
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if is_hidden(entry.name):
            skipped.append(Skipped(entry.name, "hidden"))
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
        raise DatasetError(
            f'Dataset path "{root}" has no class folders; expected "{root}/<class>/<image>".{hint}'
        )
    files: list[tuple[str, Path]] = []
    for c in classes:
        for path, hidden in _walk_class(root / c):
            rel = path.relative_to(root).as_posix()
            if hidden:
                skipped.append(Skipped(rel, "hidden"))
            else:
                files.append((c, path))
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

    Returns
    -------
    Catalog

    Examples
    --------
    >>> catalog = imgbalance.scan("data")               # doctest: +SKIP
    >>> print(catalog.counts(), catalog.balance_ratio)  # doctest: +SKIP
    """
    root = Path(root)
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    classes, files, skipped = _discover(root)
    paths = [str(p) for _, p in files]
    probe = partial(
        probe_file, verify=verify, max_pixels=max_pixels, near_duplicates=near_duplicates
    )
    facts = list(_run_probes(probe, paths, workers, progress))
    class_to_idx = {c: i for i, c in enumerate(classes)}
    records: list[ImageRecord] = []
    for (c, path), f in zip(files, facts, strict=True):
        rel = path.relative_to(root).as_posix()
        if not f.is_image:
            skipped.append(Skipped(rel, f.skip_reason or "not an image"))
            continue
        records.append(_record(rel, c, class_to_idx[c], f))
    _mark_duplicates(records)
    if not records:
        raise DatasetError(
            f'Dataset path "{root}" has class folders ({", ".join(classes[:5])}'
            f"{', ...' if len(classes) > 5 else ''}) but no images in them. "
            "Supported formats include JPEG, PNG, BMP, TIFF, WebP and GIF."
        )
    settings = {
        "verify": verify,
        "max_pixels": max_pixels,
        "near_duplicates": near_duplicates,
        "near_duplicate_distance": near_duplicate_distance,
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
    probe: Callable[[str], FileFacts],
    paths: list[str],
    workers: int | None,
    progress: Callable[[int, int], None] | None,
) -> Iterator[FileFacts]:
    total = len(paths)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    if workers <= 1 or total < _PARALLEL_MIN_FILES:
        for i, p in enumerate(paths, 1):
            yield probe(p)
            if progress:
                progress(i, total)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for i, f in enumerate(pool.map(probe, paths, chunksize=_CHUNK), 1):
            yield f
            if progress and (i % _CHUNK == 0 or i == total):
                progress(i, total)


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
        block = hashes[start : start + 1024, None] ^ hashes[None, :]
        dist = np.bitwise_count(block)
        ii, jj = np.nonzero(dist <= max_distance)
        for i, j in zip(ii + start, jj, strict=True):
            a, b = recs[int(i)], recs[int(j)]
            if i < j and a.sha256 != b.sha256:
                pairs.append(
                    {
                        "a": a.path,
                        "b": b.path,
                        "distance": int(dist[i - start, j]),
                        "same_class": a.class_name == b.class_name,
                    }
                )
    return pairs
