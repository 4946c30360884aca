"""``balance``: scan, plan on features, render at full resolution, write provenance.

Output layout (ImageFolder)::

    OUT/<class>/<original relative path>        hard links to the kept originals
    OUT/<class>/synthetic/<op>-<index>.<ext>    rendered images
    OUT/manifest.csv  OUT/summary.json  OUT/balance_summary.txt  OUT/plan.json
    OUT/preview.png   OUT/class_distribution.png
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._fs import atomic_open_text, atomic_write_text, check_output_dir, link_or_copy
from .catalog import Catalog, ImageRecord, ratios
from .errors import DatasetError, ImgBalanceError, OutputError
from .features import compute_features, parse_feature_spec
from .methods import Method, create_pipeline
from .planner import plan_arrays
from .recipes import Plan
from .rendering import RenderJob, RenderOptions, output_extension, render_jobs
from .scanner import scan
from .targets import Target

__all__ = ["BalancePlan", "BalanceResult", "balance", "plan", "render"]

_OUR_FILES = (
    "manifest.csv",
    "summary.json",
    "balance_summary.txt",
    "plan.json",
    "preview.png",
    "class_distribution.png",
    "stages",
    ".imgbalance-journal.jsonl",
)
_JOURNAL = ".imgbalance-journal.jsonl"
_GRAY_MODES = frozenset({"L", "1", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
Progress = Callable[[str, int, int], None]


@dataclass
class BalancePlan:
    """A plan and the readable originals it indexes (sorted by path)."""

    plan: Plan
    records: list[ImageRecord]
    root: Path

    def counts_before(self) -> dict[str, int]:
        return self.plan.counts_before()

    def counts_after(self) -> dict[str, int]:
        return self.plan.counts_after()


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


def _class_modes(records: list[ImageRecord], classes: list[str]) -> dict[int, str]:
    """RGB for a class with any colour image, else L (grayscale stays grayscale)."""
    modes = dict.fromkeys(range(len(classes)), "L")
    for r in records:
        if r.mode not in _GRAY_MODES:
            modes[r.label] = "RGB"
    return modes


def plan(
    src: str | os.PathLike[str] | Catalog,
    method: str | list[str] | Method = "smote",
    target: Target | None = None,
    seed: int = 0,
    *,
    features: str = "thumbnail",
    workers: int | None = None,
    cache: bool = True,
    progress: Progress | None = None,
    **params: Any,
) -> BalancePlan:
    """Scan ``src`` (or use a Catalog), compute features and plan ``method``.

    Nothing is written except the feature cache. Pass the result to :func:`render`.

    Examples
    --------
    >>> p = imgbalance.plan("train", method="smote,enn", seed=0)  # doctest: +SKIP
    >>> p.counts_after()                                          # doctest: +SKIP
    """
    m = create_pipeline(method, **params)
    m.validate()
    spec = parse_feature_spec(features)
    catalog = (
        src
        if isinstance(src, Catalog)
        else scan(
            src,
            workers=workers,
            progress=(lambda d, t: progress("scan", d, t)) if progress else None,
        )
    )
    records = sorted(catalog.usable(), key=lambda r: r.path)
    if not records:
        raise DatasetError(
            f'"{catalog.root}" has no readable images to balance. Run '
            f'`imgbalance analyze "{catalog.root}"` to see why.'
        )
    root = catalog.root
    X, failed = compute_features(
        [str(root / r.path) for r in records],
        [r.sha256 or r.path for r in records],
        spec,
        workers=workers,
        cache=cache,
        progress=(lambda d, t: progress("features", d, t)) if progress else None,
        random_state=seed,
    )
    notes = []
    if failed:
        notes = [
            f'left out "{records[i].path}": its pixels cannot be decoded ({msg}). Run '
            "`imgbalance analyze --verify` to find every such file."
            for i, msg in sorted(failed.items())
        ]
        ok = [i for i in range(len(records)) if i not in failed]
        records = [records[i] for i in ok]
        X = X[ok]
    the_plan = plan_arrays(
        X,
        [r.label for r in records],
        catalog.classes,
        m,
        target,
        seed,
        originals=[r.path for r in records],
        feature_shape=spec.shape if spec.is_image else None,
    )
    the_plan.notes[:0] = notes
    the_plan.config.update({"features": str(spec), "source": str(root)})
    return BalancePlan(plan=the_plan, records=records, root=root)


def _jobs(
    the_plan: Plan, records: list[ImageRecord], root: Path, opts: RenderOptions, manifest_only: bool
) -> tuple[list[RenderJob], list[tuple[int, str]]]:
    """Render jobs (synthetic, plus resized originals) and ``(original, out path)`` links."""
    modes = _class_modes(records, the_plan.classes)
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


def _check_collisions(jobs: list[RenderJob], links: list[tuple[int, str]]) -> None:
    seen: set[str] = set()
    for path in [p for _, p in links] + [j.out for j in jobs]:
        if path in seen:
            raise ImgBalanceError(
                f'Two outputs would be written to "{path}" (an original is '
                "named like a synthetic image). Rename that file."
            )
        seen.add(path)


def _prepare_out(
    out: Path, root: Path, classes: list[str], plan_json: str, *, overwrite: bool, resume: bool
) -> dict[str, str]:
    """Check and prepare ``out``; return the journal of a resumed run (out path -> sha256)."""
    replaces = (*classes, *_OUR_FILES)
    if resume and (out / "plan.json").exists():
        check_output_dir(out, [root], overwrite=True, replaces=replaces)
        if (out / "plan.json").read_text(encoding="utf-8") != plan_json:
            raise OutputError(
                f'"{out}" holds an interrupted run with a different plan (other '
                "input, method, target or seed). Use --overwrite to start again."
            )
        journal: dict[str, str] = {}
        if (out / _JOURNAL).exists():
            for line in (out / _JOURNAL).read_text(encoding="utf-8").splitlines():
                if line.strip():
                    entry = json.loads(line)
                    journal[entry["path"]] = entry["sha256"]
        return journal
    check_output_dir(out, [root], overwrite=overwrite, replaces=replaces)
    for name in replaces:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "plan.json", plan_json)
    return {}


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def render(
    planned: BalancePlan,
    out: str | os.PathLike[str],
    *,
    workers: int | None = None,
    format: str = "keep",
    png_compress_level: int = 1,
    image_size: tuple[int, int] | None = None,
    manifest_only: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    plots: bool = True,
    save_stages: bool = False,
    progress: Progress | None = None,
    backend: str = "local",
    address: str | None = None,
) -> BalanceResult:
    """Render a plan into ``out``: links to kept originals, synthetic images, provenance.

    Parameters
    ----------
    format
        ``keep`` (the base parent's format: JPEG stays JPEG at quality 95, the
        rest becomes PNG), ``png`` or ``jpg``.
    png_compress_level
        zlib level of synthetic PNGs (1 is fast; Pillow's default 6 is ~4x slower).
    image_size
        ``(width, height)`` for every output (originals included, which are then
        re-encoded); default keeps native sizes.
    manifest_only
        Write only synthetic images; the manifest references originals in place.
    overwrite
        Replace imgbalance's own earlier outputs in ``out``.
    resume
        Continue an interrupted run of the same plan, skipping finished files.
    save_stages
        Also write ``stages/<name>/manifest.csv`` for a plan's intermediate stages
        (STEM: ``after_smote_enn``), pointing at the same files.
    backend, address
        ``local`` (a process pool, the default) or ``ray`` (Ray tasks on the cluster
        at ``address``, or on a local Ray instance): identical outputs.
    """
    if format not in ("keep", "png", "jpg"):
        raise ValueError(f'format must be "keep", "png" or "jpg", got {format!r}')
    if not 0 <= png_compress_level <= 9:
        raise ValueError(f"png_compress_level must be 0..9, got {png_compress_level}")
    out = Path(out)
    the_plan, records, root = planned.plan, planned.records, planned.root
    check_output_dir(out, [root], overwrite=overwrite or resume, replaces=_OUR_FILES)
    opts = RenderOptions(
        format=format, png_compress_level=png_compress_level, image_size=image_size
    )
    the_plan.config.update(
        {
            "format": format,
            "image_size": list(image_size) if image_size else None,
            "manifest_only": manifest_only,
        }
    )
    timings = dict(the_plan.config.pop("timings", {}))
    result = BalanceResult(plan=the_plan, out=out, timings=timings)
    jobs, links = _jobs(the_plan, records, root, opts, manifest_only)
    _check_collisions(jobs, links)
    journal = _prepare_out(
        out, root, the_plan.classes, the_plan.to_json(), overwrite=overwrite, resume=resume
    )
    t1 = time.perf_counter()
    for cls in the_plan.classes:
        (out / cls).mkdir(parents=True, exist_ok=True)
    for _, rel in links:
        if not (out / rel).exists():
            link_or_copy(root / rel, out / rel, "link")
    done: dict[int, tuple[str, int]] = {}
    todo = []
    for job in jobs:
        prior = journal.get(job.out)
        if prior is not None and _sha256(out / job.out) == prior:
            done[job.index] = (prior, (out / job.out).stat().st_size)
        else:
            todo.append(job)
    by_index = {j.index: j for j in todo}

    def write_journal(chunk: list[tuple[int, str, int]]) -> None:
        with (out / _JOURNAL).open("a", encoding="utf-8") as fh:
            for index, sha, _ in chunk:
                fh.write(json.dumps({"path": by_index[index].out, "sha256": sha}) + "\n")

    rendered = render_jobs(
        todo,
        out,
        opts,
        workers=workers,
        on_done=write_journal,
        backend=backend,
        address=address,
    )
    for index, sha, size in rendered:
        done[index] = (sha, size)
        if progress:
            progress("render", len(done), len(jobs))
    timings["render_s"] = round(time.perf_counter() - t1, 3)
    result.manifest = _manifest(the_plan, records, jobs, links, done, root, manifest_only)
    _write_outputs(result, out, timings, plots)
    if save_stages:
        _write_stages(result, records, jobs, links, root, out)
    (out / _JOURNAL).unlink(missing_ok=True)
    return result


def _write_stages(
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
                rows.append(
                    {
                        **result.manifest[0],
                        "path": str(root / rec.path),
                        "class": rec.class_name,
                        "label": rec.label,
                        "origin": "original",
                        "method": "",
                        "op": "",
                        "parents": rec.path,
                        "weights": "1",
                        "params": "",
                        "sha256": rec.sha256,
                    }
                )
        rows += [by_path[recipe_out[n]] for n in stage["recipes"]]
        with atomic_open_text(out / "stages" / name / "manifest.csv") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(result.manifest[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)


def balance(
    src: str | os.PathLike[str] | Catalog,
    out: str | os.PathLike[str] | None,
    method: str | list[str] | Method = "smote",
    target: Target | None = None,
    seed: int = 0,
    *,
    features: str = "thumbnail",
    workers: int | None = None,
    format: str = "keep",
    png_compress_level: int = 1,
    image_size: tuple[int, int] | None = None,
    manifest_only: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    dry_run: bool = False,
    cache: bool = True,
    plots: bool = True,
    save_stages: bool = False,
    progress: Progress | None = None,
    backend: str = "local",
    address: str | None = None,
    **params: Any,
) -> BalanceResult:
    """Balance the class folders in ``src`` into ``out``: :func:`plan`, then :func:`render`.

    Parameters
    ----------
    src
        Training images, ``src/<class>/...`` (split first: only ever balance train).
    out
        Output folder; refused inside ``src``. None only with ``dry_run``.
    method, target, seed, params
        See :func:`imgbalance.planner.plan_arrays`.
    dry_run
        Plan only; write nothing.
    features, cache
        Planning feature space and whether to cache features on disk.
    format, png_compress_level, image_size, manifest_only, overwrite, resume, plots, save_stages
        See :func:`render`.

    Examples
    --------
    >>> result = imgbalance.balance("train", "out", method="stem")  # doctest: +SKIP
    >>> result.counts_after                                         # doctest: +SKIP
    """
    if backend == "ray":  # a missing Ray fails before any work
        from .ray_backend import require_ray

        require_ray()
    m = create_pipeline(method, **params)
    if image_size is None and m.params.get("image_size") is not None:
        image_size = _size_param(m.params["image_size"])
    if out is None and not dry_run:
        raise ValueError("out is required unless dry_run=True")
    if out is not None and not dry_run:  # refuse a bad output before any work
        root = Path(src.root if isinstance(src, Catalog) else src)
        check_output_dir(Path(out), [root], overwrite=overwrite or resume, replaces=_OUR_FILES)
    t0 = time.perf_counter()
    planned = plan(
        src, m, target, seed, features=features, workers=workers, cache=cache, progress=progress
    )
    plan_s = round(time.perf_counter() - t0, 3)
    if dry_run or out is None:
        return BalanceResult(plan=planned.plan, out=None, timings={"plan_s": plan_s})
    planned.plan.config["timings"] = {"plan_s": plan_s}
    return render(
        planned,
        out,
        workers=workers,
        format=format,
        png_compress_level=png_compress_level,
        image_size=image_size,
        manifest_only=manifest_only,
        overwrite=overwrite,
        resume=resume,
        plots=plots,
        save_stages=save_stages,
        progress=progress,
        backend=backend,
        address=address,
    )


def _size_param(value: Any) -> tuple[int, int]:
    """STEM's ``image_size`` as (width, height), from ``[w, h]``, ``(w, h)`` or ``256``."""
    if isinstance(value, int):
        return value, value
    w, h = value
    return int(w), int(h)


def _manifest(
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
        rows.append(
            {
                "path": path,
                "class": rec.class_name,
                "label": rec.label,
                "split": "train",
                "origin": "original",
                "method": "",
                "op": "",
                "parents": rec.path,
                "weights": "1",
                "params": "",
                "seed": seed,
                "sha256": rec.sha256,
            }
        )
    for job in jobs:
        sha = done[job.index][0]
        if job.index < 0:
            rec = records[-1 - job.index]
            rows.append(
                {
                    "path": job.out,
                    "class": rec.class_name,
                    "label": rec.label,
                    "split": "train",
                    "origin": "original",
                    "method": "resize",
                    "op": "resize",
                    "parents": rec.path,
                    "weights": "1",
                    "params": "",
                    "seed": seed,
                    "sha256": sha,
                }
            )
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
                "parents": ";".join(records[p].path for p in r.parents),
                "weights": ";".join(f"{w:.6f}" for w in r.weights),
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


def _write_outputs(
    result: BalanceResult, out: Path, timings: dict[str, float], plots: bool
) -> None:
    from . import __version__
    from .balance_report import plot_balance, summary_text

    p = result.plan
    before, after = p.counts_before(), p.counts_after()
    with atomic_open_text(out / "manifest.csv") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(result.manifest[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(result.manifest)
    result.summary = {
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
        "timings": timings,
    }
    atomic_write_text(
        out / "summary.json", json.dumps(result.summary, indent=2, ensure_ascii=False) + "\n"
    )
    atomic_write_text(out / "balance_summary.txt", summary_text(result))
    if plots:
        plot_balance(result, out)
