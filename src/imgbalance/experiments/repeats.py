"""Repeated splits of an experiment grid: the grid's ``splits`` checked, each split made
once into ``RUNS/_splits/split<R>`` and kept on resume, and every split a grid trains on
read once before any run."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._fs import atomic_write_text
from ..dataset.catalog import Catalog
from ..errors import ConfigError, DatasetError

__all__ = [
    "SPLITS_DIR", "check_data", "make_splits", "split_spec", "without_classes",
    "write_split_without",
]  # fmt: skip

#: the keys of ``splits``, their types and defaults
_SPLIT_KEYS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "repeats": (int, 5),
    "val": ((int, float), 0.15),
    "test": ((int, float), 0.15),
    "seed": (int, 0),
    "group_by": (str, None),
    "near_duplicates": (bool, True),
    "exclude_classes": (list, None),
}
SPLITS_DIR = "_splits"


def split_spec(spec: Any, where: str | os.PathLike[str] = "the grid") -> dict[str, Any]:
    """The grid's ``splits``, checked and with its defaults (an int is ``repeats``)."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = {"repeats": spec}
    if not isinstance(spec, dict):
        raise ConfigError(
            f'"{where}": splits must be a number of repeats or a mapping with '
            f"{', '.join(_SPLIT_KEYS)}; got {spec!r}."
        )
    unknown = sorted(set(spec) - set(_SPLIT_KEYS))
    if unknown:
        raise ConfigError(
            f'"{where}": splits: unknown key(s) {unknown}; use {", ".join(_SPLIT_KEYS)}.'
        )
    out: dict[str, Any] = {}
    for key, (kind, default) in _SPLIT_KEYS.items():
        value = spec.get(key, default)
        bad_bool = isinstance(value, bool) and kind is not bool
        if value is not None and (bad_bool or not isinstance(value, kind)):
            raise ConfigError(
                f'"{where}": splits: {key} must be {_kind_name(kind)}; got {value!r}.'
            )
        out[key] = value
    if out["repeats"] < 1:
        raise ConfigError(f'"{where}": splits: repeats must be >= 1; got {out["repeats"]}.')
    return out


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list"}  # fmt: skip
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(dict.fromkeys(names[k] for k in kinds))


def make_splits(
    data: str | os.PathLike[str],
    spec: dict[str, Any],
    where: Path,
    log: Callable[[str], None] = lambda _m: None,
) -> list[Path]:
    """Write the grid's repeated splits of the image folder ``data`` into
    ``where/split<R>`` (split R with seed ``spec["seed"] + R``); a folder that already
    holds the same split (same images, seed and fractions) is kept, so a grid resumes."""
    from ..dataset.scanner import scan
    from ..dataset.splits import split

    data = Path(data)
    if (data / "splits.csv").is_file() or (data / "train").is_dir():
        raise ConfigError(
            f'"{data}" is already a split, but the grid asks for repeated splits ("splits:"). '
            "Point data at the image folder itself (class folders), or drop splits."
        )
    catalog = without_classes(scan(data), spec.get("exclude_classes") or [])
    folders = []
    extra: dict[str, Any] = {}
    if spec.get("near_duplicates") is False:
        extra["near_duplicates"] = False
    for rep in range(spec["repeats"]):
        folder = where / f"split{rep}"
        folders.append(folder)
        result = split(
            catalog,
            val=float(spec["val"]),
            test=float(spec["test"]),
            random_state=int(spec["seed"]) + rep,
            group_by=spec.get("group_by"),
            **extra,
        )
        _refuse_untestable(result, data, float(spec["test"]))
        wanted = "".join(f"{r['path']}\0{r['split']}\0{r['sha256']}\n" for r in result.rows)
        repeat = {"index": rep, "of": spec["repeats"], "seed": int(spec["seed"]) + rep}
        if _same_split(folder, wanted) and _has_repeat(folder):
            continue
        write_split_without(result, folder, spec.get("exclude_classes") or [], repeat=repeat)
        log(f"split {rep + 1}/{spec['repeats']}: {folder}")
    return folders


def _refuse_untestable(result: Any, data: Path, test: float) -> None:
    """A repeated split in which a class has no test image cannot measure that class: its
    recall is missing from every comparison, and the verdict is on the other classes
    (a class of 20 identical copies is one group, kept in one split). Refused, naming
    the class and why, before any run trains on it."""
    if test <= 0:
        raise ConfigError(
            "splits: test is 0, so the runs would have no test images to measure on. Give "
            "the test fraction (test: 0.2)."
        )
    counts = result.counts()
    empty = [c for c in result.catalog.classes if counts["test"].get(c, 0) == 0
             and sum(counts[s].get(c, 0) for s in counts) > 0]  # fmt: skip
    if empty:
        c = empty[0]
        groups = len({r["group"] for r in result.rows if r["class"] == c})
        n = sum(counts[s][c] for s in counts)
        raise DatasetError(
            f'Class "{c}" of "{data}" gets no test image in a split: its {n} image(s) form '
            f"{groups} group(s) (identical or near-duplicate files, or --group-by), and a "
            "group is never divided between splits. Add distinct images of it, or leave "
            "it out (exclude it, or merge it with a related class)."
        )


def _has_repeat(folder: Path) -> bool:
    try:
        summary = json.loads((folder / "split_summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and isinstance(summary.get("repeat"), dict)


def write_split_without(
    result: Any,
    folder: Path,
    excluded: list[str],
    *,
    overwrite: bool = True,
    repeat: dict[str, int] | None = None,
) -> dict[str, Any]:
    """``write_split`` of a split made without ``excluded`` classes, recording them in
    ``split_summary.json`` so that reading the split expects them gone, and, for one of
    a grid's repeated splits, ``repeat`` (its index, the number of repeats and its
    seed: the report then knows the splits are random re-splits of one dataset)."""
    from ..dataset.splits import write_split

    summary: dict[str, Any] = write_split(result, folder, overwrite=overwrite)
    if excluded or repeat:
        if excluded:
            summary["excluded_classes"] = sorted(excluded)
        if repeat:
            summary["repeat"] = repeat
        atomic_write_text(
            folder / "split_summary.json",
            json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
        )
    return summary


def without_classes(catalog: Catalog, classes: list[str]) -> Catalog:
    """``catalog`` without the images of ``classes`` (labels renumbered)."""
    if not classes:
        return catalog
    unknown = sorted(set(classes) - set(catalog.classes))
    if unknown:
        raise ConfigError(f"exclude_classes: {unknown} are not classes of {catalog.root}.")
    kept = [c for c in catalog.classes if c not in set(classes)]
    idx = {c: i for i, c in enumerate(kept)}
    records = [
        dataclasses.replace(r, label=idx[r.class_name])
        for r in catalog.records
        if r.class_name in idx
    ]
    return dataclasses.replace(catalog, classes=kept, records=records, near_duplicates=None)


def _same_split(folder: Path, wanted: str) -> bool:
    try:
        with (folder / "splits.csv").open(encoding="utf-8", newline="") as fh:
            have = "".join(
                f"{r['path']}\0{r['split']}\0{r['sha256']}\n" for r in csv.DictReader(fh)
            )
    except (OSError, ValueError, KeyError, csv.Error):
        return False
    return have == wanted


def check_data(folders: set[str] | list[str]) -> None:
    """Read every split the grid trains on once, before any run: a missing or broken split
    is one clear error, not one failed run folder per run."""
    from .data import load_split

    scans: dict[tuple[str, bool], Catalog] = {}  # repeated splits of one dataset: one scan
    for folder in sorted(folders):
        try:
            load_split(folder, scans=scans)
        except DatasetError as exc:
            raise DatasetError(f"The grid cannot train on its data: {exc}") from exc
