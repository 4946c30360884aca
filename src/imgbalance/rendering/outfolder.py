"""The output folder of a balance run: what may be replaced in it, its preparation
(checks, ``--overwrite``, ``--resume``) and the journal of finished files.

An earlier run's files are recognised by its marks (the ledger, the journal, a balance
``plan.json``); ``--overwrite`` removes only what such a run recorded writing, and a file
of someone else's where this run would write is an error, never replaced.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from pathlib import Path
from typing import Any

from .._fs import (
    LOCK,
    atomic_write_text,
    check_inside,
    check_output_dir,
    remove_listed,
    remove_temporaries,
)
from .._options import option
from ..errors import OutputError

__all__ = [
    "JOURNAL",
    "LEDGER",
    "OUR_FILES",
    "check_balance_out",
    "check_class_names",
    "prepare_out",
    "read_journal",
    "recorded_outputs",
]

#: every file and folder a balance run writes at the top of OUT (what --overwrite replaces)
OUR_FILES = (
    "manifest.csv",
    "summary.json",
    "balance_summary.txt",
    "plan.json",
    "preview.png",
    "class_distribution.png",
    "stages",
    ".imgbalance-journal.jsonl",
    ".imgbalance-outputs.txt",
)
JOURNAL = ".imgbalance-journal.jsonl"
#: every path a run will write, listed before it writes any (removed when the run is done)
LEDGER = ".imgbalance-outputs.txt"


def check_balance_out(out: Path, root: Path, *, overwrite: bool) -> None:
    """A balance run's output checks before it plans (:func:`check_output_dir`); a folder
    an interrupted run left is refused with ``--resume`` as the way on."""
    resumable = (LEDGER, JOURNAL)
    check_output_dir(out, [root], overwrite=overwrite, replaces=OUR_FILES, resumable=resumable)


def read_journal(out: Path) -> dict[str, str]:
    """The resume journal (output path -> sha256). A line cut short by a kill is skipped:
    its file is not trusted and is rendered again."""
    journal: dict[str, str] = {}
    if (out / JOURNAL).exists():
        for line in (out / JOURNAL).read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
                journal[str(entry["path"])] = str(entry["sha256"])
            except (ValueError, KeyError, TypeError):
                continue
    return journal


def _written_by_us(out: Path) -> bool:
    """Whether ``out`` bears an earlier balance run's marks: its ledger or journal (an
    interrupted run), or a ``plan.json`` that is a balance plan (a finished one)."""
    if (out / LEDGER).is_file() or (out / JOURNAL).is_file():
        return True
    plan = _recorded_plan(out / "plan.json")
    return isinstance(plan, dict) and {"classes", "config", "recipes"} <= set(plan)


def recorded_outputs(out: Path) -> list[str]:
    """Every path (relative to ``out``) that an earlier run in ``out`` recorded writing:
    its ledger (written before any output), journal, manifest and stage manifests, and
    the files in :data:`OUR_FILES`. ``--overwrite`` removes these and nothing else. In a
    folder without an earlier run's marks there are none: a ``manifest.csv`` or
    ``summary.json`` of someone else's is not imgbalance's to replace."""
    if not _written_by_us(out):
        return []
    paths = [name for name in OUR_FILES if name != "stages"]
    if (out / LEDGER).is_file():
        paths += (out / LEDGER).read_text(encoding="utf-8", errors="replace").splitlines()
    paths += list(read_journal(out))
    manifests = [out / "manifest.csv", *sorted((out / "stages").glob("*/manifest.csv"))]
    for manifest in manifests:
        if manifest.is_file():
            paths.append(str(manifest.relative_to(out)))
            with contextlib.suppress(OSError, csv.Error, UnicodeDecodeError):
                paths += _manifest_paths(manifest)
    return paths


def _manifest_paths(manifest: Path) -> list[str]:
    with manifest.open(encoding="utf-8", newline="") as fh:
        return [row.get("path") or "" for row in csv.DictReader(fh)]


def _unreadable_record(out: Path) -> str:
    """Why an earlier run's record of its files cannot be read (a manifest saved by a
    spreadsheet in another encoding, say), as a sentence for an error; empty if none."""
    for manifest in [out / "manifest.csv", *sorted((out / "stages").glob("*/manifest.csv"))]:
        if manifest.is_file():
            try:
                _manifest_paths(manifest)
            except (OSError, csv.Error, UnicodeDecodeError) as exc:
                return (
                    f' The earlier run\'s record of its files, "{manifest}", cannot be read '
                    f"({exc}), so its files cannot be told from others: restore it as the "
                    "run wrote it (UTF-8), or remove that run's files yourself."
                )
    return ""


def _occupied(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _occupied_paths(out: Path, paths: list[str]) -> list[str]:
    """The ``paths`` (relative to ``out``) that something occupies, in their order.

    A folder that is missing or empty (every folder of a first run) is looked at once
    instead of once per path (5,600 stat calls on a 2,000-image job); the others are
    checked path by path, which also holds on case-insensitive file systems.
    """
    vacant: dict[str, bool] = {}
    for folder in {os.path.dirname(p) for p in paths}:
        try:
            with os.scandir(out / folder) as entries:
                vacant[folder] = next(entries, None) is None
        except (FileNotFoundError, NotADirectoryError):
            vacant[folder] = True
    return [p for p in paths if not vacant[os.path.dirname(p)] and _occupied(out / p)]


def check_class_names(classes: list[str]) -> None:
    """A class folder named like a file or folder a run writes at the top of OUT
    (``manifest.csv``, ``stages``, the lock...) is refused before anything is written;
    compared without case, as a case-insensitive disk (macOS, Windows) compares them."""
    ours = {name.casefold(): name for name in (*OUR_FILES, LOCK)}
    for cls in classes:
        if cls.casefold() in ours:
            raise OutputError(
                f'The class folder "{cls}" has the name of the {ours[cls.casefold()]} that '
                "imgbalance writes at the top of the output folder, beside the class "
                f'folders. Rename that class folder in the input (e.g. "{cls}_class"), then '
                "run it again."
            )


def prepare_out(
    out: Path,
    root: Path,
    classes: list[str],
    plan_json: str,
    *,
    overwrite: bool,
    resume: bool,
    planned: list[str],
) -> dict[str, str]:
    """Check and prepare ``out``; return the journal of a resumed run (out path -> sha256).

    ``planned`` is every path this run will write. It goes into the ledger before any
    output, so a later ``--overwrite`` or ``--resume`` knows which files are imgbalance's
    even after a kill. ``--overwrite`` removes only what earlier runs recorded; a file of
    someone else's where this run would write is an error, never replaced.
    """
    replaces = (*classes, *OUR_FILES)
    check_inside(out, planned)  # no class folder may be a link that leaves `out`
    for cls in classes:
        if (out / cls).exists() and not (out / cls).is_dir():
            raise OutputError(
                f'"{out / cls}" is a file, and this run writes the class folder "{cls}" '
                "there. Move the file, or choose another output folder."
            )
    # the same plan: the same JSON value, whatever its layout (a run interrupted under an
    # earlier version wrote it indented, one field per line)
    recorded_plan = _recorded_plan(out / "plan.json")
    now = json.loads(plan_json) if recorded_plan is not None else None
    same_plan = recorded_plan is not None and recorded_plan == now
    if resume and (out / "plan.json").exists() and (same_plan or not overwrite):
        check_output_dir(out, [root], overwrite=True, replaces=replaces)
        if not same_plan:
            raise OutputError(
                f'"{out}" holds an interrupted run with a different plan (other input, '
                f"method, target, seed or settings{_differences(recorded_plan, now)}). "
                f"Use the same settings to resume it, or {option('overwrite', True)} to start "
                "again."
            )
        remove_temporaries(out)
        atomic_write_text(out / LEDGER, "\n".join(planned) + "\n")
        atomic_write_text(out / "plan.json", plan_json)  # an older layout of the same plan
        return read_journal(out)
    check_output_dir(out, [root], overwrite=overwrite or resume, replaces=replaces)
    if out.is_dir():
        recorded = set(recorded_outputs(out))
        theirs = [p for p in planned if p not in recorded]
        if not _written_by_us(out):  # its manifest.csv, summary.json... are someone else's
            theirs += OUR_FILES
        in_the_way = _occupied_paths(out, theirs)
        if in_the_way:  # refused before anything is removed
            raise OutputError(
                f'"{out / in_the_way[0]}" (and {len(in_the_way) - 1} more) is not an output '
                "of an earlier imgbalance run, and this run would write there. imgbalance "
                "never replaces files it did not write: move it, or choose another folder."
                + _unreadable_record(out)
            )
        remove_listed(out, [*recorded, LEDGER, JOURNAL], protect=[root])
        remove_temporaries(out)
        left = _occupied_paths(out, planned)
        if left:  # recorded, but not removable (outside `out`, or inside the input)
            raise OutputError(
                f'"{out / left[0]}" (and {len(left) - 1} more) could not be removed as an '
                "earlier output, and this run would write there. Move it, or choose another "
                "folder."
            )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / LEDGER, "\n".join(planned) + "\n")
    atomic_write_text(out / "plan.json", plan_json)
    return {}


def _recorded_plan(path: Path) -> Any:
    """The JSON value of ``path`` (an earlier run's plan.json), or None when there is no
    such file or it cannot be read as JSON."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _differences(before: Any, now: Any) -> str:
    """``"; it differs in ..."``: the settings of the recorded plan ``before`` that this
    run's plan ``now`` changes (with both values) and its other parts that differ; empty
    when the recorded plan cannot be read."""
    if not isinstance(before, dict):
        return ""
    old_config, new_config = before.get("config") or {}, now.get("config") or {}
    if not isinstance(old_config, dict):
        old_config = {}
    named = [
        f"{key} ({json.dumps(old_config.get(key))[:40]} there, "
        f"{json.dumps(new_config.get(key))[:40]} now)"
        for key in sorted(set(old_config) | set(new_config))
        if key != "timings" and old_config.get(key) != new_config.get(key)
    ]
    named += [k for k in sorted(now) if k != "config" and before.get(k) != now.get(k)]
    return f"; it differs in {', '.join(named[:6])}" if named else ""
