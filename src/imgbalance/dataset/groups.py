"""What must stay in one split: the user's groups, near duplicates, and the union-find
that joins files.

A split joins files into *units* (:class:`Units`): the same group (``group_by``
regex or a ``path,group`` file, :func:`group_of`), byte-identical content, or
near-duplicate pixels (:func:`merge_near_duplicates`, found by
:mod:`.near_duplicates`). Every unit then goes to one split as a whole.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._fs import atomic_open_text
from .._tables import read_csv_rows
from ..errors import DatasetError
from .catalog import ImageRecord
from .images import DEFAULT_MAX_PIXELS
from .near_duplicates import THRESHOLD, find_near_duplicates

__all__ = [
    "NEAR_DUPLICATES_CSV",
    "NearDuplicateReport",
    "Units",
    "group_of",
    "merge_near_duplicates",
    "read_groups_csv",
    "without_undecodable",
    "write_near_duplicates_csv",
]

#: the file :func:`~imgbalance.dataset.splits.write_split` lists the pairs in
NEAR_DUPLICATES_CSV = "near_duplicates.csv"
_WARN_PAIRS = 10  # cross-class pairs named one by one in the warnings


def read_groups_csv(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a ``path,group`` CSV (with a header row) into a mapping.

    Paths are relative to the dataset root, with ``/`` separators. The file must be
    UTF-8; a row without a path or a group, or a path listed twice, is refused.
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f'Groups file "{p}" does not exist.')
    then = "then run the split again"
    header, rows = read_csv_rows(p, then)
    if not {"path", "group"} <= set(header):
        raise DatasetError(
            f'Groups file "{p}" needs a header row with the columns '
            f'"path" and "group"; found {header}.'
        )
    out: dict[str, str] = {}
    lines: dict[str, int] = {}
    for line, row in rows:
        where = f'Groups file "{p}", line {line}'
        rel, group = row["path"].replace("\\", "/"), row["group"]
        if not rel.strip():
            raise DatasetError(
                f'{where}: the "path" column is empty. Every row names one image by its path '
                f"relative to the dataset folder: fill it in or delete the row, {then}."
            )
        if not group.strip():
            raise DatasetError(
                f'{where}: "{rel}" has an empty group. Every image needs a group (its patient, '
                f"leaf or slide): fill it in, or give the image a group of its own (its file "
                f"name), {then}."
            )
        if rel in out:
            raise DatasetError(
                f'{where}: "{rel}" is listed again (first on line {lines[rel]}). An image has '
                f"one group: delete one of the two rows, {then}."
            )
        out[rel], lines[rel] = group, line
    return out


def group_of(
    rec: ImageRecord, pattern: re.Pattern[str] | None, groups: Mapping[str, str] | None
) -> str | None:
    """The user's group of one file (None without ``pattern`` and ``groups``)."""
    if groups is not None:
        if rec.path not in groups:
            raise DatasetError(
                f'Groups file has no row for "{rec.path}". Every image needs '
                "a group: add the row, or give the file a group of its own."
            )
        return groups[rec.path]
    if pattern is not None:
        m = pattern.search(rec.path)
        if m is None:
            raise DatasetError(
                f'--group-by pattern "{pattern.pattern}" does not match '
                f'"{rec.path}". Every path must match; adjust the pattern.'
            )
        return m.group(1) if pattern.groups else m.group(0)
    return None


class Units:
    """Union-find over record indices; a unit is named by its smallest index."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    @classmethod
    def of(cls, recs: Sequence[ImageRecord], groups: Sequence[str | None]) -> Units:
        """Units of records joined by their group (None: none) and their sha256."""
        units = cls(len(recs))
        first: dict[tuple[str, str], int] = {}
        for i, (r, g) in enumerate(zip(recs, groups, strict=True)):
            for key in (("g", g) if g is not None else None, ("h", r.sha256 or f"#{i}")):
                if key is None:
                    continue
                if key in first:
                    units.union(first[key], i)
                else:
                    first[key] = i
        return units

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> bool:
        """Join the units of ``i`` and ``j``; True when they were two units before."""
        a, b = self.find(i), self.find(j)
        if a == b:
            return False
        self.parent[max(a, b)] = min(a, b)
        return True

    def members(self) -> list[list[int]]:
        """Every unit's indices, units in the order of their smallest index."""
        out: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            out.setdefault(self.find(i), []).append(i)
        return [out[u] for u in sorted(out)]


@dataclass
class NearDuplicateReport:
    """What :func:`merge_near_duplicates` found: CSV rows, the summary entry, warnings."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=lambda: {"enabled": False})
    warnings: list[str] = field(default_factory=list)
    #: the records (paths) whose pixels could not be decoded, though their header opened
    undecodable: list[str] = field(default_factory=list)


def merge_near_duplicates(
    recs: Sequence[ImageRecord],
    root: Path,
    units: Units,
    *,
    threshold: float = THRESHOLD,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
) -> NearDuplicateReport:
    """Join the units of near-duplicate records (one file per sha256 is decoded)."""
    first: dict[str, int] = {}
    reps = [i for i, r in enumerate(recs) if first.setdefault(r.sha256 or f"#{i}", i) == i]
    pairs, failed = find_near_duplicates(
        [str(root / recs[i].path) for i in reps],
        threshold=threshold,
        max_pixels=max_pixels,
        workers=workers,
    )
    report = NearDuplicateReport()
    merged = 0
    for i, j, s in pairs:
        a, b = recs[reps[i]], recs[reps[j]]
        merged += units.union(reps[i], reps[j])
        report.rows.append(
            {
                "a": a.path,
                "b": b.path,
                "similarity": f"{s:.4f}",
                "same_class": a.class_name == b.class_name,
            }
        )
    report.rows.sort(key=lambda row: (row["a"], row["b"]))
    cross = [row for row in report.rows if not row["same_class"]]
    classes = {r.path: r.class_name for r in recs}
    for row in cross[:_WARN_PAIRS]:
        report.warnings.append(
            f'Near duplicates in different classes: "{row["a"]}" ({classes[row["a"]]}) and '
            f'"{row["b"]}" ({classes[row["b"]]}), similarity {row["similarity"]}; they are '
            "kept in one split. One label is probably wrong: decide which class is right "
            "and remove the other copy."
        )
    if len(cross) > _WARN_PAIRS:
        report.warnings.append(
            f"{len(cross) - _WARN_PAIRS} more near-duplicate pair(s) in different classes: "
            f"see {NEAR_DUPLICATES_CSV}."
        )
    if failed:
        bad = {recs[reps[i]].sha256 or f"#{reps[i]}" for i in failed}
        report.undecodable = sorted(
            r.path for i, r in enumerate(recs) if (r.sha256 or f"#{i}") in bad
        )
        names = ", ".join(f'"{p}"' for p in report.undecodable[:3])
        report.warnings.append(
            f"{len(report.undecodable)} file(s) could not be decoded for the near-duplicate "
            f"check ({names}{', ...' if len(report.undecodable) > 3 else ''}): their header "
            "opens but their pixels do not, so they are left out of every split, with the "
            "unreadable files. Run `imgbalance analyze --verify` to see what is wrong with them."
        )
    report.summary = {
        "enabled": True,
        "threshold": threshold,
        "pairs": len(report.rows),
        "cross_class_pairs": len(cross),
        "groups_merged": merged,
        "undecodable": len(failed),
    }
    return report


def without_undecodable(
    recs: list[ImageRecord], names: list[str | None], near: NearDuplicateReport
) -> tuple[list[ImageRecord], list[str | None], Units]:
    """The records, group names and units once ``near.undecodable`` are taken out (the
    near-duplicate pairs joined again: no undecodable file is in one)."""
    bad = set(near.undecodable)
    keep = [i for i, r in enumerate(recs) if r.path not in bad]
    recs, names = [recs[i] for i in keep], [names[i] for i in keep]
    units = Units.of(recs, names)
    position = {r.path: i for i, r in enumerate(recs)}
    for row in near.rows:
        units.union(position[row["a"]], position[row["b"]])
    return recs, names, units


def write_near_duplicates_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write the pairs (``a, b, similarity, same_class``) atomically, a header always."""
    with atomic_open_text(path) as fh:
        writer = csv.DictWriter(
            fh, fieldnames=["a", "b", "similarity", "same_class"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
