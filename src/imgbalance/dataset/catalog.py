"""The result of a scan: classes, image records, problems and skipped files."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Catalog", "ImageRecord", "Problem", "Skipped", "ratios"]

SEVERITIES = ("error", "warning", "info")


def ratios(counts: Mapping[str, int]) -> dict[str, float | None]:
    """Both ratios of class counts, over non-empty classes (None when all are empty).

    ``balance_ratio = min/max`` (STEM's ``target_ratio``) and
    ``imbalance_ratio = max/min`` (the literature's IR); 1.0 is balanced.
    """
    nz = [n for n in counts.values() if n > 0]
    if not nz:
        return {"balance_ratio": None, "imbalance_ratio": None}
    return {"balance_ratio": min(nz) / max(nz), "imbalance_ratio": max(nz) / min(nz)}


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

    def left_out(self) -> list[dict[str, str]]:
        """Every file that cannot be used, with its reason: unreadable images (their error
        problems) and files the scan skipped (not images, hidden, links...)."""
        out = [
            {
                "path": r.path,
                "reason": "; ".join(
                    f"{p.code}: {p.message}" for p in r.problems if p.severity == "error"
                ),
            }
            for r in self.records
            if not r.readable
        ]
        return out + [{"path": s.path, "reason": s.reason} for s in self.skipped]

    def usable(self) -> list[ImageRecord]:
        """Records whose pixels can be read."""
        return [r for r in self.records if r.readable]

    def counts(self) -> dict[str, int]:
        """Readable images per class, every class listed (empty ones with 0)."""
        out = dict.fromkeys(self.classes, 0)
        for r in self.usable():
            out[r.class_name] += 1
        return out

    @property
    def balance_ratio(self) -> float | None:
        """``min/max`` of the non-empty class counts (1.0 is balanced); STEM's target_ratio."""
        return ratios(self.counts())["balance_ratio"]

    @property
    def imbalance_ratio(self) -> float | None:
        """``max/min`` of the non-empty class counts (1.0 is balanced); the literature's IR."""
        return ratios(self.counts())["imbalance_ratio"]

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
        from .._version import __version__

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


def _tally(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[v] += 1
    return dict(sorted(out.items()))
