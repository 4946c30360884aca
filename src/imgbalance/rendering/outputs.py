"""What a render writes besides the images: the job list, ``manifest.csv``,
``summary.json`` and per-stage manifests (the output folder's preparation and resume
journal: :mod:`.outfolder`).

Output layout (ImageFolder)::

    OUT/<class>/<original relative path>        hard links to the kept originals
    OUT/<class>/synthetic/<op>-<index>.<ext>    rendered images
    OUT/manifest.csv  OUT/summary.json  OUT/balance_summary.txt  OUT/plan.json
    OUT/preview.png   OUT/class_distribution.png
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._fs import (
    atomic_open_text,
)
from .._version import __version__
from ..dataset.catalog import ImageRecord, ratios
from ..errors import ImgBalanceError
from ..planning.recipes import Plan
from .kernel import RenderJob, RenderOptions, output_extension

__all__ = [
    "GRAY_MODES",
    "BalanceResult",
    "check_collisions",
    "class_modes",
    "json_list",
    "manifest_rows",
    "original_row",
    "parse_list",
    "render_jobs_for",
    "summary",
    "write_manifest",
    "write_stages",
]

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
