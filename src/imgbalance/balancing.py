"""The three verbs of balancing: :func:`plan` (scan, features, a plan in feature
space), :func:`render` (the plan at full resolution, with provenance) and
:func:`balance` (both). The stages themselves live in :mod:`imgbalance.dataset`,
:mod:`imgbalance.planning`, :mod:`imgbalance.methods` and :mod:`imgbalance.rendering`
(the output layout is described in :mod:`imgbalance.rendering.outputs`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._fs import (
    atomic_write_text,
    file_sha256,
    is_within,
    link_or_copy,
    output_faults,
    output_lock,
    same_content,
)
from ._options import option
from ._random import RandomState, as_generator, int_seed, resolve_seed_alias, seed_of
from ._version import __version__
from .dataset.catalog import Catalog, ImageRecord
from .dataset.scanner import scan
from .errors import ConfigError, DatasetError
from .methods import Method, create_pipeline
from .planner import BalancePlan, plan_arrays
from .planning.features import compute_features, parse_feature_spec
from .planning.targets import Target
from .rendering import outputs
from .rendering.kernel import RenderJob, RenderOptions
from .rendering.outfolder import JOURNAL, LEDGER, check_balance_out, check_class_names, prepare_out
from .rendering.outputs import BalanceResult
from .rendering.pool import render_jobs
from .reports.balance import plot_balance, summary_text

__all__ = ["BalancePlan", "BalanceResult", "balance", "plan", "render"]

Progress = Callable[[str, int, int], None]


def plan(
    src: str | os.PathLike[str] | Catalog,
    method: str | list[str] | Method = "smote",
    target: Target | None = None,
    random_state: RandomState = 0,
    *,
    features: str = "thumbnail",
    workers: int | None = None,
    cache: bool = True,
    progress: Progress | None = None,
    seed: int | None = None,
    **params: Any,
) -> BalancePlan:
    """Scan ``src`` (or use a Catalog), compute features and plan ``method``.

    Nothing is written except the feature cache. Pass the result to :func:`render`.
    ``random_state`` is an int seed (same seed, same plan), a ``numpy.random.Generator``
    or None (fresh entropy); ``seed`` is its deprecated old name.

    Examples
    --------
    >>> p = imgbalance.plan("train", method="smote,enn", random_state=0)  # doctest: +SKIP
    >>> p.counts_after()                                                  # doctest: +SKIP
    """
    random_state = resolve_seed_alias(random_state, seed, "plan")
    if seed_of(random_state) is None:  # one Generator for the features and the plan
        random_state = as_generator(random_state)
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
    root = catalog.root.resolve()  # in-place manifest rows must not depend on the cwd
    X, failed = compute_features(
        [str(root / r.path) for r in records],
        [r.sha256 or r.path for r in records],
        spec,
        workers=workers,
        cache=cache,
        progress=(lambda d, t: progress("features", d, t)) if progress else None,
        random_state=int_seed(random_state),
    )
    left_out = catalog.left_out()
    if failed:
        left_out += [
            {"path": records[i].path, "reason": f"pixels cannot be decoded ({msg})"}
            for i, msg in sorted(failed.items())
        ]
        ok = [i for i in range(len(records)) if i not in failed]
        records = [records[i] for i in ok]
        X = X[ok]
    left_out.sort(key=lambda d: d["path"])
    notes = []
    if left_out:
        notes.append(
            f"{len(left_out)} file(s) of the input are left out (first: "
            f'"{left_out[0]["path"]}": {left_out[0]["reason"]}); summary.json and '
            "balance_summary.txt list each with its reason, and `imgbalance analyze` explains "
            "the problems."
        )
    if conflicts := [r for r in records if any(p.code == "label-conflict" for p in r.problems)]:
        notes.append(
            f"{len(conflicts)} file(s) are byte-identical to a file of another class (first: "
            f'"{conflicts[0].path}"); they are balanced with the class of their folder, so one '
            "image teaches two classes. Decide which class is right (`imgbalance analyze` "
            "lists them)."
        )
    the_plan = plan_arrays(
        X,
        [r.label for r in records],
        catalog.classes,
        m,
        target,
        random_state,
        originals=[r.path for r in records],
        feature_shape=spec.shape if spec.is_image else None,
    )
    the_plan.notes[:0] = notes
    the_plan.left_out = left_out
    digest = hashlib.sha256()  # the input's content: a resume of a changed input is refused
    for r in records:
        digest.update(f"{r.path}\0{r.sha256}\n".encode("utf-8", "surrogateescape"))
    the_plan.config.update(
        {
            "features": str(spec),
            "source": str(root),
            "input_sha256": digest.hexdigest()[:16],
            "imgbalance_version": __version__,
        }
    )
    return BalancePlan(plan=the_plan, records=records, root=root)


def render(
    planned: BalancePlan,
    out: str | os.PathLike[str],
    *,
    workers: int | None = None,
    format: str = "keep",
    png_compress_level: int | str = "fast",
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
        rest becomes PNG), ``png``, ``jpg`` or ``webp`` (lossless WebP: files 15-25%
        smaller than PNG's, written up to ~3x slower than the fast PNG writer).
    png_compress_level
        How synthetic PNGs are compressed: ``"fast"`` (imgbalance's writer: one filter,
        Huffman-only deflate; about 3x faster than Pillow at level 1 for files of about
        the same size) or a zlib level 0-9 for Pillow's encoder (its default 6 is about
        4x slower than level 1 for files about 10% smaller). Lossless either way.
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
    if format not in ("keep", "png", "jpg", "webp"):
        raise ConfigError(f'format must be "keep", "png", "jpg" or "webp", got {format!r}')
    if format == "webp":
        from PIL import features

        if not features.check("webp"):
            raise ConfigError(
                "This Pillow was built without WebP support, so format webp cannot be "
                "written. Use format png (lossless) or install a Pillow wheel from PyPI."
            )
    if png_compress_level != "fast" and not (
        type(png_compress_level) is int and 0 <= png_compress_level <= 9
    ):
        raise ConfigError(
            f'png_compress_level must be "fast" or a zlib level 0..9, got {png_compress_level!r}'
        )
    out = Path(out)
    the_plan, records, root = planned.plan, planned.records, planned.root
    check_balance_out(out, root, overwrite=overwrite or resume)
    check_class_names(the_plan.classes)  # before anything is written, the lock too
    opts = RenderOptions(
        format=format, png_compress_level=png_compress_level, image_size=image_size
    )
    the_plan.config.update(
        {
            "format": format,
            "png_compress_level": png_compress_level,
            "image_size": list(image_size) if image_size else None,
            "manifest_only": manifest_only,
        }
    )
    timings = dict(the_plan.config.pop("timings", {}))
    result = BalanceResult(plan=the_plan, out=out, timings=timings)
    jobs, links = outputs.render_jobs_for(the_plan, records, root, opts, manifest_only)
    outputs.check_collisions(jobs, links)
    then = (
        f"run it again with {option('resume', True)}: the files already written are verified "
        "and kept"
    )
    with _input_changes(root), output_faults(out, then), output_lock(out):  # one writer
        _write_into(
            out, result, records, root, jobs, links, opts,
            overwrite=overwrite, resume=resume, manifest_only=manifest_only, plots=plots,
            save_stages=save_stages, workers=workers, backend=backend, address=address,
            progress=progress,
        )  # fmt: skip
    return result


def _write_into(
    out: Path,
    result: BalanceResult,
    records: list[ImageRecord],
    root: Path,
    jobs: list[RenderJob],
    links: list[tuple[int, str]],
    opts: RenderOptions,
    *,
    overwrite: bool,
    resume: bool,
    manifest_only: bool,
    plots: bool,
    save_stages: bool,
    workers: int | None,
    backend: str,
    address: str | None,
    progress: Progress | None,
) -> None:
    """Prepare ``out``, link the kept originals, render the recipes, write provenance
    (under :func:`render`'s lock on ``out``)."""
    the_plan, timings = result.plan, result.timings
    planned_paths = [rel for _, rel in links] + [j.out for j in jobs]
    journal = prepare_out(
        out,
        root,
        the_plan.classes,
        the_plan.to_json(),
        overwrite=overwrite,
        resume=resume,
        planned=planned_paths,
    )
    t1 = time.perf_counter()
    for cls in the_plan.classes:
        (out / cls).mkdir(parents=True, exist_ok=True)
    for i, rel in links:
        dst, src = out / rel, root / rel
        if dst.exists() or dst.is_symlink():  # only on resume: prepare_out refused others
            if same_content(dst, src, records[i].sha256):
                continue  # a finished link, or a copy verified by size and hash
            dst.unlink()  # a half-written copy of an older version, or a changed file
        link_or_copy(src, dst, "link")
    done: dict[int, tuple[str, int]] = {}
    todo = []
    for job in jobs:
        prior = journal.get(job.out)
        if prior is not None and file_sha256(out / job.out) == prior:
            done[job.index] = (prior, (out / job.out).stat().st_size)
        else:
            todo.append(job)
    by_index = {j.index: j for j in todo}

    # opened once, flushed after each chunk: a kill leaves every finished line
    with (out / JOURNAL).open("a", encoding="utf-8") as fh:

        def write_journal(chunk: list[tuple[int, str, int]]) -> None:
            for index, sha, _ in chunk:
                fh.write(json.dumps({"path": by_index[index].out, "sha256": sha}) + "\n")
            fh.flush()

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
    result.manifest = outputs.manifest_rows(
        the_plan, records, jobs, links, done, root, manifest_only
    )
    outputs.write_manifest(out, result.manifest)
    result.summary = outputs.summary(the_plan, timings)
    atomic_write_text(
        out / "summary.json", json.dumps(result.summary, indent=2, ensure_ascii=False) + "\n"
    )
    atomic_write_text(out / "balance_summary.txt", summary_text(result))
    if plots:
        plot_balance(result, out, seed=the_plan.config.get("seed") or 0)
    if save_stages:
        outputs.write_stages(result, records, jobs, links, root, out)
    (out / JOURNAL).unlink(missing_ok=True)
    (out / LEDGER).unlink(missing_ok=True)  # the manifest lists every output from now on


def balance(
    src: str | os.PathLike[str] | Catalog,
    out: str | os.PathLike[str] | None,
    method: str | list[str] | Method = "smote",
    target: Target | None = None,
    random_state: RandomState = 0,
    *,
    features: str = "thumbnail",
    workers: int | None = None,
    format: str = "keep",
    png_compress_level: int | str = "fast",
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
    seed: int | None = None,
    **params: Any,
) -> BalanceResult:
    """Balance the class folders in ``src`` into ``out``: :func:`plan`, then :func:`render`.

    Parameters
    ----------
    src
        Training images, ``src/<class>/...`` (split first: only ever balance train).
    out
        Output folder; refused inside ``src``. None only with ``dry_run``.
    method, target, params
        See :func:`imgbalance.planner.plan_arrays`.
    random_state
        An int seed (same seed, same bytes), a ``numpy.random.Generator`` or None
        (fresh entropy). ``seed`` is its deprecated old name.
    dry_run
        Plan only; write nothing.
    features, cache
        Planning feature space and whether to cache features on disk.
    format, png_compress_level, image_size, manifest_only, overwrite, resume, plots, save_stages
        See :func:`render`.

    Examples
    --------
    >>> result = imgbalance.balance("train", "out", method="stem", random_state=0)  # doctest: +SKIP
    >>> result.counts_after                                         # doctest: +SKIP
    """
    random_state = resolve_seed_alias(random_state, seed, "balance")
    if backend == "ray":  # a missing Ray fails before any work
        from ._cluster import require_ray

        require_ray()
    m = create_pipeline(method, **params)
    if image_size is None and m.params.get("image_size") is not None:
        image_size = _size_param(m.params["image_size"])
    if out is None and not dry_run:
        raise ConfigError("out is required unless dry_run=True")
    if out is not None and not dry_run:  # refuse a bad output before any work
        root = Path(src.root if isinstance(src, Catalog) else src)
        check_balance_out(Path(out), root, overwrite=overwrite or resume)
    t0 = time.perf_counter()
    planned = plan(
        src,
        m,
        target,
        random_state,
        features=features,
        workers=workers,
        cache=cache,
        progress=progress,
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


@contextlib.contextmanager
def _input_changes(root: Path) -> Iterator[None]:
    """An input file that vanished between planning and rendering: a clear error."""
    try:
        yield
    except FileNotFoundError as exc:
        if not (exc.filename and is_within(Path(exc.filename), root)):
            raise
        raise DatasetError(
            f'"{exc.filename}" was in the input when the plan was made and is gone now. '
            f"Plan again (run it again; with {option('overwrite', True)} if the output exists)."
        ) from exc


def _size_param(value: Any) -> tuple[int, int]:
    """STEM's ``image_size`` as (width, height), from ``[w, h]``, ``(w, h)`` or ``256``."""
    if isinstance(value, int):
        return value, value
    w, h = value
    return int(w), int(h)
