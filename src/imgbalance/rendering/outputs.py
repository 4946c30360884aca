"""What a render writes besides the images: the job list, the output folder's
preparation and resume journal, ``manifest.csv``, ``summary.json`` and per-stage manifests.

Output layout (ImageFolder)::

    OUT/<class>/<original relative path>        hard links to the kept originals
    OUT/<class>/synthetic/<op>-<index>.<ext>    rendered images
    OUT/manifest.csv  OUT/summary.json  OUT/balance_summary.txt  OUT/plan.json
    OUT/preview.png   OUT/class_distribution.png
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._fs import (
    LOCK,
    atomic_open_text,
    atomic_write_text,
    check_inside,
    check_output_dir,
    remove_listed,
    remove_temporaries,
)
from .._options import option
from .._version import __version__
from ..dataset.catalog import ImageRecord, ratios
from ..errors import ImgBalanceError, OutputError
from ..planning.recipes import Plan
from .kernel import RenderJob, RenderOptions, output_extension

__all__ = [
    "GRAY_MODES",
    "JOURNAL",
    "LEDGER",
    "OUR_FILES",
    "BalanceResult",
    "check_class_names",
    "check_collisions",
    "class_modes",
    "json_list",
    "manifest_rows",
    "original_row",
    "parse_list",
    "prepare_out",
    "read_journal",
    "recorded_outputs",
    "render_jobs_for",
    "summary",
    "write_manifest",
    "write_stages",
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
GRAY_MODES = frozenset({"L", "1", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


@dataclass
class BalanceResult:
    """What :func:`balance` did: the plan, where outputs are, counts and timings."""

    plan: Plan
    out: Path | None
    manifest: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def counts_before(self) -> dict[str, int]:
        return self.plan.counts_before()

    @property
    def counts_after(self) -> dict[str, int]:
        return self.plan.counts_after()


def class_modes(records: list[ImageRecord], classes: list[str]) -> dict[int, str]:
    """RGB for a class with any colour image, else L (grayscale stays grayscale)."""
    modes = dict.fromkeys(range(len(classes)), "L")
    for r in records:
        if r.mode not in GRAY_MODES:
            modes[r.label] = "RGB"
    return modes


def render_jobs_for(
    the_plan: Plan, records: list[ImageRecord], root: Path, opts: RenderOptions, manifest_only: bool
) -> tuple[list[RenderJob], list[tuple[int, str]]]:
    """Render jobs (synthetic, plus resized originals) and ``(original, out path)`` links."""
    modes = class_modes(records, the_plan.classes)
    jobs: list[RenderJob] = []
    links: list[tuple[int, str]] = []
    for i in the_plan.kept:
        rec = records[i]
        if opts.image_size is None:
            if not manifest_only:
                links.append((i, rec.path))
        else:  # resizing means re-encoding the originals too
            ext = output_extension(rec.format, opts)
            jobs.append(
                RenderJob(
                    index=-1 - i,
                    out=str(Path(rec.path).with_suffix(ext)),
                    op="resize",
                    parents=(str(root / rec.path),),
                    weights=(1.0,),
                    mode=modes[rec.label],
                )
            )
    for n, r in enumerate(the_plan.recipes):
        base = records[r.parents[0]]
        ext = (
            Path(base.path).suffix.lower()
            if r.op == "copy" and opts.image_size is None
            else output_extension(base.format, opts)
        )
        cls = the_plan.classes[r.label]
        jobs.append(
            RenderJob(
                index=n,
                out=f"{cls}/synthetic/{r.op}-{n:06d}{ext}",
                op=r.op,
                parents=tuple(str(root / records[p].path) for p in r.parents),
                weights=r.weights,
                mode=modes[r.label],
                augment=r.params if r.op == "augment" else None,
            )
        )
    return jobs, links


def check_collisions(jobs: list[RenderJob], links: list[tuple[int, str]]) -> None:
    seen: set[str] = set()
    for path in [p for _, p in links] + [j.out for j in jobs]:
        if path in seen:
            raise ImgBalanceError(
                f'Two outputs would be written to "{path}" (an original is '
                "named like a synthetic image). Rename that file."
            )
        seen.add(path)


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
            with (
                contextlib.suppress(OSError, csv.Error, UnicodeDecodeError),
                manifest.open(encoding="utf-8", newline="") as fh,
            ):
                paths += [row.get("path") or "" for row in csv.DictReader(fh)]
    return paths


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


def original_row(
    rec: ImageRecord, path: str, seed: Any, sha256: str | None, op: str = ""
) -> dict[str, Any]:
    """The manifest row of an original: linked, referenced in place, or re-encoded by
    ``op`` (``resize``)."""
    return {
        "path": path,
        "class": rec.class_name,
        "label": rec.label,
        "split": "train",
        "origin": "original",
        "method": op,
        "op": op,
        "parents": json_list([rec.path]),
        "weights": "[1.0]",
        "params": "",
        "seed": seed,
        "sha256": sha256,
    }


def manifest_rows(
    the_plan: Plan,
    records: list[ImageRecord],
    jobs: list[RenderJob],
    links: list[tuple[int, str]],
    done: dict[int, tuple[str, int]],
    root: Path,
    manifest_only: bool,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    seed = the_plan.config.get("seed")
    if manifest_only:
        links = [(i, str(root / records[i].path)) for i in the_plan.kept]
    for i, path in links:
        rec = records[i]
        rows.append(original_row(rec, path, seed, rec.sha256))
    for job in jobs:
        sha = done[job.index][0]
        if job.index < 0:
            rec = records[-1 - job.index]
            rows.append(original_row(rec, job.out, seed, sha, op="resize"))
            continue
        r = the_plan.recipes[job.index]
        rows.append(
            {
                "path": job.out,
                "class": the_plan.classes[r.label],
                "label": r.label,
                "split": "train",
                "origin": "synthetic",
                "method": r.method,
                "op": r.op,
                "parents": json_list([records[p].path for p in r.parents]),
                "weights": "[" + ", ".join(f"{w:.6f}" for w in r.weights) + "]",
                "params": json.dumps(
                    r.params if r.seed is None else {**r.params, "image_seed": r.seed},
                    sort_keys=True,
                ),
                "seed": seed,
                "sha256": sha,
            }
        )
    rows.sort(key=lambda row: (row["label"], row["origin"] != "original", row["path"]))
    return rows


def write_stages(
    result: BalanceResult,
    records: list[ImageRecord],
    jobs: list[RenderJob],
    links: list[tuple[int, str]],
    root: Path,
    out: Path,
) -> None:
    """One manifest per intermediate stage, listing the rows it had (same files)."""
    by_path = {row["path"]: row for row in result.manifest}
    original_out = dict(links)
    original_out.update({-1 - j.index: j.out for j in jobs if j.index < 0})
    recipe_out = {j.index: j.out for j in jobs if j.index >= 0}
    for name, stage in result.plan.stages.items():
        rows = []
        for i in stage["kept"]:
            path = original_out.get(i)
            if path is not None and path in by_path:
                rows.append(by_path[path])
            else:  # not in the final output: referenced in place
                rec = records[i]
                seed = result.manifest[0]["seed"]
                rows.append(original_row(rec, str(root / rec.path), seed, rec.sha256))
        rows += [by_path[recipe_out[n]] for n in stage["recipes"]]
        with atomic_open_text(out / "stages" / name / "manifest.csv") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(result.manifest[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)


def json_list(items: list[str]) -> str:
    """A manifest cell holding a list: JSON, so any file or class name (``;``, ``,``,
    quotes, newlines) round-trips; the CSV writer quotes the cell as needed."""
    return json.dumps(items, ensure_ascii=False)


def parse_list(cell: str) -> list[Any]:
    """The list in a ``parents`` or ``weights`` cell of ``manifest.csv``."""
    value = json.loads(cell)
    return value if isinstance(value, list) else [value]


def write_manifest(out: Path, rows: list[dict[str, Any]]) -> None:
    """``manifest.csv``: one row per output file (originals and synthetic images)."""
    with atomic_open_text(out / "manifest.csv") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def summary(p: Plan, timings: dict[str, float]) -> dict[str, Any]:
    """The content of ``summary.json``: configuration, counts and ratios before and after."""
    before, after = p.counts_before(), p.counts_after()
    return {
        "imgbalance_version": __version__,
        "config": p.config,
        "classes": p.classes,
        "class_to_idx": {c: i for i, c in enumerate(p.classes)},
        "before": before,
        "after": after,
        "before_ratios": ratios(before),
        "after_ratios": ratios(after),
        "synthetic": p.synthetic_by_op(),
        "removed_originals": p.n_originals - len(p.kept),
        "steps": p.log,
        "notes": p.notes,
        "left_out": p.left_out,
        "timings": timings,
    }
