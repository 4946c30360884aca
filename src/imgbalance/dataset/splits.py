"""Stratified, group-aware train / val / test splits.

Files are first joined into *units* that must stay together (:mod:`.groups`):
the same group (``group_by`` regex or ``groups`` mapping), byte-identical
content, or near-duplicate pixels (:mod:`.near_duplicates`: resized,
re-encoded or slightly cropped copies). Units are then assigned, in a seeded
order, to the split whose per-class quota they fill best. With one file per
unit this meets every class's quota exactly, so each class is split to within
one image of the requested fractions.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._fs import (
    STAGING,
    atomic_open_text,
    atomic_write_text,
    check_inside,
    check_output_dir,
    link_or_copy,
    output_faults,
    output_lock,
    remove_listed,
    remove_temporaries,
    same_content,
)
from .._options import option
from .._random import RandomState, as_generator, resolve_seed_alias, seed_of
from ..errors import ConfigError, DatasetError, OutputError
from .catalog import Catalog
from .groups import (
    NEAR_DUPLICATES_CSV,
    NearDuplicateReport,
    Units,
    group_of,
    merge_near_duplicates,
    read_groups_csv,
    without_undecodable,
    write_near_duplicates_csv,
)
from .images import DEFAULT_MAX_PIXELS
from .scanner import scan

__all__ = ["SPLITS", "SplitResult", "read_groups_csv", "split", "write_split"]

SPLITS = ("train", "val", "test")


@dataclass
class SplitResult:
    """The outcome of :func:`split`: one row per readable image, plus warnings."""

    catalog: Catalog
    rows: list[dict[str, Any]]
    fractions: dict[str, float]
    seed: int | None
    warnings: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    near_duplicates: NearDuplicateReport = field(default_factory=NearDuplicateReport)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class: n}}`` with every class and split present."""
        out = {s: dict.fromkeys(self.catalog.classes, 0) for s in SPLITS}
        for row in self.rows:
            out[row["split"]][row["class"]] += 1
        return out

    def summary(self) -> dict[str, Any]:
        counts = self.counts()
        return {
            "seed": self.seed,
            "fractions": self.fractions,
            "classes": self.catalog.classes,
            "class_to_idx": self.catalog.class_to_idx,
            "counts": counts,
            "totals": {s: sum(c.values()) for s, c in counts.items()},
            "groups": len({row["group"] for row in self.rows}),
            # how the images were found: reading the split scans the same way
            "follow_links": bool(self.catalog.settings.get("follow_links", False)),
            "near_duplicates": self.near_duplicates.summary,
            "warnings": self.warnings,
            "excluded_unreadable": self.excluded,
            # what the scan left out: not images, hidden, links out of the tree, broken links
            "skipped": [{"path": k.path, "reason": k.reason} for k in self.catalog.skipped],
        }


def _targets(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Split ``n`` by largest remainder; then at least one image per split where possible."""
    raw = {s: n * fractions[s] for s in SPLITS}
    out = {s: int(np.floor(raw[s])) for s in SPLITS}
    order = sorted(SPLITS, key=lambda s: (-(raw[s] - out[s]), SPLITS.index(s)))
    for s in order[: n - sum(out.values())]:
        out[s] += 1
    for s in ("train", "test", "val"):  # priority when there are too few images
        if out[s] == 0 and fractions[s] > 0:
            donor = max(SPLITS, key=lambda d: (out[d], -SPLITS.index(d)))
            if out[donor] > 1:
                out[donor] -= 1
                out[s] += 1
    return out


def split(
    data: Catalog | str | os.PathLike[str],
    *,
    val: float = 0.15,
    test: float = 0.15,
    random_state: RandomState = 42,
    group_by: str | None = None,
    groups: Mapping[str, str] | None = None,
    near_duplicates: bool = True,
    workers: int | None = None,
    seed: int | None = None,
) -> SplitResult:
    """Assign every readable image to train, val or test.

    Parameters
    ----------
    data
        A :class:`Catalog` from :func:`scan`, or a dataset folder to scan.
    val, test
        Fractions of each class for validation and test; train gets the rest.
    random_state
        Seed (or ``numpy.random.Generator``) that orders the units: the same seed gives
        the same split on any machine. ``seed`` is its deprecated old name.
    group_by
        Regular expression over the relative path; its first capture group
        (or whole match) names the group (patient, leaf, slide...).
    groups
        Mapping from relative path to group name (e.g. from :func:`read_groups_csv`).
    near_duplicates
        Also keep near duplicates together: resized, re-encoded or slightly
        cropped copies, found from a perceptual key and confirmed by aligned
        pixels (:mod:`imgbalance.dataset.near_duplicates`; every image is
        decoded once, as a small thumbnail). ``False`` joins only groups and
        byte-identical files.
    workers
        Processes that decode the thumbnails; default: the CPU count (at most 8).

    Examples
    --------
    >>> result = imgbalance.split("data", val=0.15, test=0.15, random_state=42)  # doctest: +SKIP
    >>> result.counts()["test"]                                                  # doctest: +SKIP
    """
    random_state = resolve_seed_alias(random_state, seed, "split")
    if group_by is not None and groups is not None:
        raise ConfigError("Give either group_by or groups, not both.")
    for name, value in (("val", val), ("test", test)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {value}")
    if val + test >= 1.0:
        raise ConfigError(f"val + test must leave images for training; got {val} + {test}.")
    catalog = data if isinstance(data, Catalog) else scan(data)
    pattern = None
    if group_by is not None:
        try:
            pattern = re.compile(group_by)
        except re.error as exc:
            raise DatasetError(
                f'--group-by "{group_by}" is not a valid regular expression: {exc}'
            ) from exc
    fractions = {"train": 1.0 - val - test, "val": val, "test": test}
    recs = sorted(catalog.usable(), key=lambda r: r.path)
    excluded = sorted(r.path for r in catalog.records if not r.readable)
    if not recs:
        raise DatasetError(
            f'Dataset "{catalog.root}" has no readable images to split '
            f"({len(excluded)} unreadable file(s)). Run `imgbalance analyze "
            f'"{catalog.root}"` to see what is wrong with each.'
        )
    names = [group_of(r, pattern, groups) for r in recs]

    units = Units.of(recs, names)
    near = NearDuplicateReport()
    if near_duplicates:
        max_pixels = int(catalog.settings.get("max_pixels", DEFAULT_MAX_PIXELS))
        near = merge_near_duplicates(
            recs, catalog.root, units, max_pixels=max_pixels, workers=workers
        )
        if near.undecodable:  # pixels that cannot be decoded would fail training later
            recs, names, units = without_undecodable(recs, names, near)
            excluded = sorted([*excluded, *near.undecodable])
            if not recs:
                raise DatasetError(
                    f'Dataset "{catalog.root}" has no decodable images to split. Run '
                    f'`imgbalance analyze "{catalog.root}" --verify` to see what is wrong.'
                )

    k = len(catalog.classes)
    idx = catalog.class_to_idx
    unit_list = units.members()
    unit_counts = np.zeros((len(unit_list), k), dtype=np.int64)
    for u, mem in enumerate(unit_list):
        for i in mem:
            unit_counts[u, idx[recs[i].class_name]] += 1
    totals = unit_counts.sum(axis=0)
    targets = np.array([[_targets(int(n), fractions)[s] for n in totals] for s in SPLITS])
    filled = np.zeros_like(targets)

    rng = as_generator(random_state)
    order = rng.permutation(len(unit_list))
    sizes = unit_counts.sum(axis=1)
    order = order[np.argsort(-sizes[order], kind="stable")]  # big units first
    assign = np.empty(len(unit_list), dtype=np.int64)
    for u in order:
        deficit = np.maximum(targets - filled, 0)
        gain = np.minimum(deficit, unit_counts[u]).sum(axis=1)
        room = deficit.sum(axis=1) / np.maximum(targets.sum(axis=1), 1)
        best = max(range(len(SPLITS)), key=lambda s: (gain[s], room[s], -s))
        assign[u] = best
        filled[best] += unit_counts[u]

    rows: list[dict[str, Any]] = []
    for u, mem in enumerate(unit_list):
        for i in mem:
            r = recs[i]
            group = names[i] if names[i] is not None else f"unit-{u}"
            rows.append(
                {
                    "path": r.path,
                    "class": r.class_name,
                    "label": r.label,
                    "split": SPLITS[assign[u]],
                    "group": group,
                    "sha256": r.sha256,
                }
            )
    rows.sort(key=lambda row: row["path"])
    result = SplitResult(
        catalog=catalog,
        rows=rows,
        fractions=fractions,
        seed=seed_of(random_state),
        excluded=excluded,
        near_duplicates=near,
    )
    result.warnings = _warnings(result, targets, filled) + near.warnings
    return result


def _warnings(result: SplitResult, targets: np.ndarray, filled: np.ndarray) -> list[str]:
    out = []
    counts = result.counts()
    for c in result.catalog.classes:
        missing = [s for s in SPLITS if counts[s][c] == 0 and result.fractions[s] > 0]
        if missing and sum(counts[s][c] for s in SPLITS) > 0:
            n = sum(counts[s][c] for s in SPLITS)
            out.append(
                f'Class "{c}" has {n} image(s) and is missing from '
                f"{' and '.join(missing)}: metrics for it there cannot be measured. "
                "Collect more images of it, or merge it with a related class."
            )
    off = np.abs(filled - targets).max() if targets.size else 0
    if off > 1:
        out.append(
            f"Groups are too large to meet the split fractions exactly: a class is off "
            f"its target by up to {int(off)} image(s). See split_summary.json."
        )
    if result.excluded:
        out.append(
            f"{len(result.excluded)} unreadable file(s) left out of every split "
            "(run `imgbalance analyze` for the reasons)."
        )
    return out


#: the tree files a materializing split will write, listed before it moves any in
SPLIT_LEDGER = ".imgbalance-split-outputs.txt"
SPLIT_OUTPUTS = ("splits.csv", "split_summary.json", NEAR_DUPLICATES_CSV, SPLIT_LEDGER, *SPLITS)


def write_split(
    result: SplitResult,
    out: str | os.PathLike[str],
    *,
    materialize: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``splits.csv``, ``split_summary.json``, ``near_duplicates.csv`` (the pairs
    :func:`split` kept together: ``a, b, similarity, same_class``; only a header when
    it looked for none) and optionally ImageFolder trees.

    Parameters
    ----------
    materialize
        ``None`` (CSV only), ``"link"`` (hard links, copying where the
        filesystem refuses) or ``"copy"``: builds ``out/train``, ``out/val``
        and ``out/test`` with every class folder present in each, so
        ``class_to_idx`` is identical across the three.
    overwrite
        Replace these outputs if ``out`` already holds them; other files in
        ``out`` are left alone.

    Returns the summary that was written to ``split_summary.json``.
    """
    if materialize not in (None, "link", "copy"):
        raise ConfigError(f'materialize must be "link", "copy" or None, got {materialize!r}')
    out = Path(out)
    root = result.catalog.root
    check_output_dir(out, [root], overwrite=overwrite, replaces=SPLIT_OUTPUTS)
    then = f"run it again with {option('overwrite', True)}"
    with output_faults(out, then), output_lock(out):
        return _write(result, out, root, materialize)  # a second writer: a clear error


_HEADER = "path,class,label,split,group,sha256"


def _refuse_foreign_files(out: Path) -> None:
    """A ``splits.csv``, ``split_summary.json`` or ``near_duplicates.csv`` in a folder
    without an earlier split's marks (its ledger, its summary, its CSV header) is
    someone else's file: refused, never replaced."""
    names = ("splits.csv", "split_summary.json", NEAR_DUPLICATES_CSV)
    present = [n for n in names if (out / n).exists() or (out / n).is_symlink()]
    if not present or (out / SPLIT_LEDGER).is_file():
        return
    try:
        summary = json.loads((out / "split_summary.json").read_text(encoding="utf-8"))
        if isinstance(summary, dict) and {"classes", "root"} <= set(summary):
            return
    except (OSError, ValueError):
        pass
    try:
        with (out / "splits.csv").open(encoding="utf-8", errors="replace") as fh:
            if fh.readline().strip() == _HEADER:
                return
    except OSError:
        pass
    raise OutputError(
        f'"{out / present[0]}" is not an output of an earlier imgbalance split, and this split '
        "would write there. imgbalance never replaces files it did not write: move it, or "
        "choose another output folder."
    )


def _write(result: SplitResult, out: Path, root: Path, materialize: str | None) -> dict[str, Any]:
    """The body of :func:`write_split`, under its lock on ``out``."""
    _refuse_foreign_files(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{STAGING}*"):  # left by a killed run: ours by name
        shutil.rmtree(stale, ignore_errors=True)
    remove_temporaries(out)  # a killed writer's .splits.csv.<pid>.<hex>.tmp and the like
    summary = result.summary()
    summary["root"] = str(root.resolve())  # absolute: the split is read from anywhere
    previous = _materialized_before(out)
    if not previous and any((out / s).is_dir() for s in SPLITS):  # a record that is unreadable
        previous = _copies_of_inputs(out, root, result.rows)
    trees = [f"{row['split']}/{row['path']}" for row in result.rows] if materialize else []
    check_inside(out, [*trees, *(f"{s}/." for s in SPLITS)])  # no tree may be a link out
    if materialize is None:
        remove_listed(out, previous, protect=[root])  # earlier trees are replaced by none
    else:
        done: dict[str, int] = defaultdict(int)
        staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=out))
        try:
            for s in SPLITS:
                for c in result.catalog.classes:
                    (staging / s / c).mkdir(parents=True, exist_ok=True)
            for row in result.rows:
                done[
                    link_or_copy(
                        root / row["path"], staging / row["split"] / row["path"], materialize
                    )
                ] += 1
            ours = set(previous)
            for row in result.rows:  # refuse before anything of the earlier split is removed
                rel = f"{row['split']}/{row['path']}"
                if rel not in ours and ((out / rel).exists() or (out / rel).is_symlink()):
                    raise OutputError(
                        f'"{out / rel}" is not a file an earlier imgbalance split wrote, and '
                        "this split would write there. imgbalance never replaces files it "
                        "did not write: move it, or choose another --out."
                    )
            # listed before any tree file moves in, so an interrupted run's files are ours
            atomic_write_text(out / SPLIT_LEDGER, "\n".join([*previous, *trees]) + "\n")
            remove_listed(out, previous, protect=[root])  # only the files an earlier split wrote
            for s in SPLITS:
                _move_in(staging / s, out / s)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        summary["materialized"] = {
            "mode": materialize,
            "linked": done["link"],
            "copied": done["copy"],
        }
    with atomic_open_text(out / "splits.csv") as fh:
        writer = csv.DictWriter(
            fh,
            fieldnames=_HEADER.split(","),
            lineterminator="\n",
        )
        writer.writeheader()
        writer.writerows(result.rows)
    write_near_duplicates_csv(out / NEAR_DUPLICATES_CSV, result.near_duplicates.rows)
    atomic_write_text(
        out / "split_summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    )
    (out / SPLIT_LEDGER).unlink(missing_ok=True)  # splits.csv lists the trees from now on
    return summary


def _materialized_before(out: Path) -> list[str]:
    """The tree files an earlier ``write_split`` in ``out`` wrote (from its splits.csv and
    summary, and the ledger of one that was interrupted), relative to ``out``."""
    ledger: list[str] = []
    if (out / SPLIT_LEDGER).is_file():
        ledger = (out / SPLIT_LEDGER).read_text(encoding="utf-8", errors="replace").splitlines()
    return ledger + _recorded_trees(out)


def _copies_of_inputs(out: Path, root: Path, rows: list[dict[str, Any]]) -> list[str]:
    """The tree files ``<split>/<path>`` in ``out`` that are the input file ``path`` itself
    (a hard link) or a byte-identical copy: an earlier split's, found when its record
    (splits.csv, split_summary.json) was damaged. Replacing them loses nothing."""
    return [
        f"{s}/{row['path']}"
        for s in SPLITS
        for row in rows
        if same_content(out / s / row["path"], root / row["path"], row.get("sha256"))
    ]


def _recorded_trees(out: Path) -> list[str]:
    try:
        summary = json.loads((out / "split_summary.json").read_text(encoding="utf-8"))
        if not isinstance(summary, dict) or not summary.get("materialized"):
            return []
        with (out / "splits.csv").open(encoding="utf-8", newline="") as fh:
            return [f"{r['split']}/{r['path']}" for r in csv.DictReader(fh) if r.get("path")]
    except (OSError, ValueError, KeyError, csv.Error):
        return []


def _move_in(staged: Path, target: Path) -> None:
    """Put the staged tree at ``target``: one rename when ``target`` is gone, else file by
    file, so files of someone else's in ``target`` stay (one in the way is an error)."""
    if not target.exists():
        os.replace(staged, target)
        return
    moves = []
    for folder, _dirs, files in os.walk(staged):
        for name in files:
            src = Path(folder, name)
            dst = target / src.relative_to(staged)
            if dst.exists() or dst.is_symlink():
                raise OutputError(
                    f'"{dst}" is not a file an earlier imgbalance split wrote, and this split '
                    "would write there. imgbalance never replaces files it did not write: "
                    "move it, or choose another --out."
                )
            moves.append((src, dst))
    for folder, _dirs, _files in os.walk(staged):  # every class folder, empty ones too
        (target / Path(folder).relative_to(staged)).mkdir(parents=True, exist_ok=True)
    for src, dst in moves:
        os.replace(src, dst)
