"""A grid of training runs from a YAML file: arms x models x seeds, resumable.

Example ``grid.yaml``::

    name: bccd-small-cnn
    data: splits/                # a split folder (imgbalance split --out) or tree
    seeds: [0, 1, 2]
    models: [small-cnn, linear]  # optional; default: defaults.model
    defaults:                    # settings shared by every run (see RunConfig)
      epochs: 30
      image_size: 64
    arms:                        # name: the settings that make this technique
      baseline: {}
      smote: {technique: smote, technique_params: {small_class_fallback: random-over}}
      focal: {loss: focal}
    groups:                      # optional, for the report
      resampling: [smote]

Each run is ``run_training`` of one resolved config, in ``OUT/<arm>__<model>__seed<N>``.

With ``splits``, ``data`` is the image folder itself (``DATA/<class>/*``) and every
technique is compared on the same sequence of splits, each made once into
``OUT/_splits/split<R>`` (near-duplicate-safe, like ``imgbalance split``) and each run
in ``OUT/<arm>__<model>__split<R>__seed<N>``::

    data: ../images
    splits: {repeats: 5, val: 0.15, test: 0.15, seed: 0}   # or just: splits: 5
    seeds: [0]                   # default with splits: one seed per split
A run whose ``experiment_summary.json`` says completed, with the same config
fingerprint, is skipped; a run that raises gets ``error.json`` and the grid goes on.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .._fs import atomic_write_text, output_faults
from .._procs import process_pool, threads_per_job
from .._yaml import safe_load
from ..errors import ImgBalanceError
from .config import RunConfig
from .data import read_split_summary, split_fingerprint
from .repeats import SPLITS_DIR, check_data, make_splits, split_spec

__all__ = [
    "GridRun",
    "check_data",
    "load_grid",
    "make_splits",
    "plan_grid",
    "run_grid",
    "split_spec",
]

_GRID_KEYS = {
    "name", "data", "seeds", "models", "defaults", "arms", "groups", "out", "resources", "splits",
}  # fmt: skip
_ARM_ONLY = ("model", "seed", "data")


@dataclass(frozen=True)
class GridRun:
    """One cell of the grid: its name, folder and full settings."""

    run_id: str
    arm: str
    model: str
    seed: int
    settings: dict[str, Any]
    #: the repeat of the grid's ``splits`` this run trains on (None: the grid's one split)
    split: int | None = None


def load_grid(
    path: str | os.PathLike[str], data: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Read and check a grid file; relative ``data`` is relative to the file.

    ``data`` replaces the file's own (so one grid serves several splits).
    """
    path = Path(path)
    try:
        grid = safe_load(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ImgBalanceError(
            f'Cannot read the grid "{path}": {exc}. A grid is a UTF-8 YAML file with "data" '
            f'and "arms" (see configs/full.yaml).'
        ) from exc
    if not isinstance(grid, dict):
        raise ImgBalanceError(f'"{path}" must be a YAML mapping with "data" and "arms".')
    unknown = sorted(set(grid) - _GRID_KEYS)
    if unknown:
        raise ImgBalanceError(
            f'"{path}": unknown key(s) {unknown}; a grid has {", ".join(sorted(_GRID_KEYS))}.'
        )
    if not grid.get("arms") or not isinstance(grid["arms"], dict):
        raise ImgBalanceError(f'"{path}" needs "arms": a mapping of name to settings.')
    _check_types(grid, path)
    if data is not None:
        grid["data"] = str(Path(data).expanduser().resolve())
    if not grid.get("data"):
        raise ImgBalanceError(
            f'"{path}" needs "data": the split folder to train on (or pass --data).'
        )
    where = Path(str(grid["data"])).expanduser()
    grid["data"] = str(where if where.is_absolute() else (path.parent / where).resolve())
    grid.setdefault("name", path.stem)
    if (Path(grid["data"]) / "split_summary.json").is_file():
        read_split_summary(grid["data"])  # a hand-edited summary: one clear error up front
    if grid.get("splits") is not None:
        grid["splits"] = split_spec(grid["splits"], path)
    return grid


def _check_types(grid: dict[str, Any], path: Path) -> None:
    """Every field of a grid has the type it must have (a clear error, not a crash later)."""

    def bad(key: str, want: str) -> ImgBalanceError:
        got = grid[key]
        shown = repr(got) if len(repr(got)) < 80 else f"a {type(got).__name__}"
        return ImgBalanceError(f'"{path}": {key} must be {want}; got {shown}.')

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    for key in ("name", "data", "out"):
        if grid.get(key) is not None and not isinstance(grid[key], str):
            raise bad(key, "a string")
    seeds = grid.get("seeds")
    if seeds is not None and not (
        (is_int(seeds) and seeds >= 1)
        or (isinstance(seeds, list) and seeds and all(is_int(x) for x in seeds))
    ):
        raise bad("seeds", "a list of integers, or a number of seeds >= 1")
    for key in ("seeds", "models"):  # "Rename the arms" was the fix given for [0, 0]
        listed = grid.get(key)
        if isinstance(listed, list) and len(set(map(str, listed))) < len(listed):
            twice = sorted({str(x) for x in listed if listed.count(x) > 1})
            raise ImgBalanceError(f'"{path}": {key} lists {", ".join(twice)} twice: once each.')
    models = grid.get("models")
    if models is not None and not (
        isinstance(models, list) and models and all(isinstance(m, str) for m in models)
    ):
        raise bad("models", "a list of model names")
    for key in ("defaults", "resources"):
        if grid.get(key) is not None and not isinstance(grid[key], dict):
            raise bad(key, "a mapping")
    for arm, settings in grid["arms"].items():
        if not isinstance(arm, str) or not (settings is None or isinstance(settings, dict)):
            raise bad("arms", f"a mapping of names to settings (arm {arm!r} is not)")
        # a run folder is ARM__MODEL__CELL and the report reads the arm back from it: "__"
        # in a name merged two arms into one, and a hidden or empty name vanished
        if not arm.strip() or "__" in arm or arm.startswith((".", "_")):
            raise ImgBalanceError(
                f'"{path}": the arm name {arm!r} cannot name run folders (ARM__MODEL__...): '
                "a name must not be empty, contain '__' or start with '.' or '_'. Rename it "
                "(for example smote_k3)."
            )
    groups = grid.get("groups")
    if groups is not None and not (
        isinstance(groups, dict)
        and all(isinstance(v, list) and all(isinstance(a, str) for a in v) for v in groups.values())
    ):
        raise bad("groups", "a mapping of group names to lists of arm names")


def plan_grid(grid: dict[str, Any], splits_dir: Path | None = None) -> list[GridRun]:
    """Every run of the grid, each config validated before anything trains.

    With ``splits`` in the grid, each run trains on ``splits_dir/split<R>`` (``run_grid``
    makes those folders first).
    """
    defaults = dict(grid.get("defaults") or {})
    spec = split_spec(grid["splits"]) if grid.get("splits") is not None else None
    repeats: list[int | None] = list(range(spec["repeats"])) if spec else [None]
    where = splits_dir if splits_dir is not None else Path(SPLITS_DIR)
    seeds = grid.get("seeds", [0] if spec else [0, 1, 2])
    if isinstance(seeds, int):
        seeds = list(range(seeds))
    models = grid.get("models") or [defaults.get("model", "small-cnn")]
    runs = []
    for arm, settings in grid["arms"].items():
        settings = dict(settings or {})
        clash = [k for k in _ARM_ONLY if k in settings and k != "model"]
        if clash:
            raise ImgBalanceError(f'arm "{arm}": {clash} belong to the grid, not to an arm.')
        arm_models = [settings.pop("model")] if "model" in settings else models
        for model in arm_models:
            for rep in repeats:
                for seed in seeds:
                    full = {**defaults, **settings, "model": model, "seed": int(seed)}
                    full["data"] = grid["data"] if rep is None else str(where / f"split{rep}")
                    try:
                        RunConfig.from_dict(full)
                    except ImgBalanceError as exc:
                        raise ImgBalanceError(f'arm "{arm}" (model {model}): {exc}') from exc
                    cell = f"seed{seed}" if rep is None else f"split{rep}__seed{seed}"
                    run_id = f"{arm}__{model}__{cell}".replace("/", "-").replace(" ", "_")
                    runs.append(GridRun(run_id, arm, model, int(seed), full, rep))
    ids = [r.run_id for r in runs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ImgBalanceError(f"Two runs would share a folder: {dupes}. Rename the arms.")
    return runs


def is_complete(run: GridRun, folder: Path) -> bool:
    summary = folder / "experiment_summary.json"
    if not summary.is_file():
        return False
    try:
        done = json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(
        done.get("status") == "completed"
        and done.get("fingerprint") == RunConfig.from_dict(run.settings).fingerprint()
        # the same split, not only the same folder: a split rewritten since (the images
        # changed) makes its runs stale, or old and new splits would be paired
        and done.get("split_sha256") == split_fingerprint(run.settings["data"])
    )


def run_one(
    run: GridRun,
    out: str,
    balanced_cache: str | None,
    threads: int | None,
    tracker: str = "none",
    tracker_uri: str | None = None,
    experiment: str = "imgbalance",
    ray_train: tuple[dict[str, Any], str | None] | None = None,
) -> dict[str, Any]:
    """Train one grid cell (the unit of work: a function of its arguments only).
    ``ray_train``: ``(resources, address)`` to train it across Ray Train workers."""
    folder = Path(out) / run.run_id
    if threads:
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            pass
    t0 = time.perf_counter()
    try:
        from .run import run_training

        folder.mkdir(parents=True, exist_ok=True)
        (folder / "error.json").unlink(missing_ok=True)
        extra: dict[str, Any] = (
            {"backend": "ray", "resources": ray_train[0], "address": ray_train[1]}
            if ray_train
            else {}
        )
        summary = run_training(
            run.settings,
            folder,
            balanced_cache=Path(balanced_cache) if balanced_cache else None,
            tracker=tracker,
            tracker_uri=tracker_uri,
            experiment=experiment,
            **extra,
        )
        return {"run": run.run_id, "status": "completed", "summary": summary}
    except Exception as exc:  # recorded; the grid goes on
        error = {
            "status": "failed",
            "run": run.run_id,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "error.json", json.dumps(error, indent=2) + "\n")
        return {"run": run.run_id, "status": "failed", "error": error["error"]}


def run_grid(
    grid: dict[str, Any],
    out: str | os.PathLike[str],
    *,
    jobs: int = 1,
    balanced_cache: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = lambda _m: None,
    tracker: str = "none",
    tracker_uri: str | None = None,
    backend: str = "local",
    address: str | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Run every incomplete run of ``grid`` into ``out``; returns counts by status.

    With repeated splits, runs go split by split (every arm on split 0, then split 1...).
    ``deadline`` (a ``time.monotonic()`` value; local backend) stops starting runs once
    it has passed, so a grid cut short still has every arm on the same complete splits;
    the runs not started are counted as ``"not_started"``.

    ``backend="ray"`` makes each run a Ray task asking for the grid's
    ``resources`` (``cpus``, default 1; ``gpus``, a fraction allowed, default 0;
    ``retries`` after a worker dies, default 1) on the cluster at ``address`` or a
    local instance; ``resources`` of ``workers`` (``gpus_per_worker``, ``cpus_per_worker``)
    instead train each run in turn across that many Ray Train workers. Run folders are
    written by the workers: on a cluster, ``out`` must be on storage every node sees.
    """
    if backend == "ray":  # a missing Ray fails before any work
        from .._cluster import require_ray

        require_ray()
    out = Path(out).expanduser().resolve()  # runs record their split by absolute path
    with output_faults(out, "run the same command again: finished runs are kept"):
        out.mkdir(parents=True, exist_ok=True)
        runs = plan_grid(grid, out / SPLITS_DIR)  # every setting checked before any split or run
        if grid.get("splits") is not None:
            make_splits(grid["data"], split_spec(grid["splits"]), out / SPLITS_DIR, log)
        check_data({r.settings["data"] for r in runs})
        atomic_write_text(
            out / "grid.json",
            json.dumps(_folder_record(out / "grid.json", grid, runs), indent=2) + "\n",
        )
        todo = [r for r in runs if not is_complete(r, out / r.run_id)]
        if grid.get("splits") is not None:  # split-major: a cut-short grid has whole splits
            todo.sort(key=lambda r: r.split or 0)
        log(f"{len(runs)} runs, {len(runs) - len(todo)} already complete, {len(todo)} to do")
        cache = str(balanced_cache) if balanced_cache else str(out / "_balanced")
        status = {"completed": len(runs) - len(todo), "failed": 0, "skipped": len(runs) - len(todo),
                  "not_started": 0}  # fmt: skip
        threads = threads_per_job(jobs, log) if backend == "local" else None
        track = (tracker, tracker_uri, str(grid.get("name", "imgbalance")))

        counter = iter(range(1, len(todo) + 1))

        started = time.perf_counter()

        def done(res: dict[str, Any], k: int | None = None) -> None:
            k = k if k is not None else next(counter)
            status[res["status"]] += 1
            left = (time.perf_counter() - started) / k * (len(todo) - k)
            eta = f" (about {_duration(left)} left)" if k < len(todo) else ""
            if res["status"] == "completed":
                m = res["summary"]["final_metrics"]
                log(f"[{k}/{len(todo)}] {res['run']}: test macro-F1 {m['macro_f1']:.3f}{eta}")
            else:
                log(f"[{k}/{len(todo)}] {res['run']}: FAILED {res['error']}{eta}")

        if backend == "ray":
            _run_on_ray(todo, out, cache, track, grid.get("resources") or {}, address, done)
        elif jobs <= 1:
            for k, run in enumerate(todo, 1):
                if _past(deadline):
                    status["not_started"] = len(todo) - k + 1
                    break
                done(run_one(run, str(out), cache, None, *track), k)
        else:
            # spawn, not fork: a forked copy of a process that already ran torch can deadlock
            with process_pool(jobs, spawn=True) as pool:
                queue = iter(todo)
                running: set[Future[dict[str, Any]]] = set()
                for _ in range(jobs):  # at most `jobs` in flight
                    first = None if _past(deadline) else next(queue, None)
                    if first is not None:
                        running.add(pool.submit(run_one, first, str(out), cache, threads, *track))
                k = 0
                while running:
                    finished, running = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        k += 1
                        done(fut.result(), k)
                        nxt = None if _past(deadline) else next(queue, None)
                        if nxt is not None:
                            running.add(pool.submit(run_one, nxt, str(out), cache, threads, *track))
                status["not_started"] = sum(1 for _ in queue)
        if status["not_started"]:
            log(f"time is up: {status['not_started']} run(s) not started (they run on a resume)")
        return status


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _folder_record(grid_json: Path, grid: dict[str, Any], runs: list[GridRun]) -> dict[str, Any]:
    """What ``grid.json`` records: this grid, the name of the folder's first grid, and the
    run ids earlier grids listed, then this grid's new ones.

    Several grids (another model, another seed's data) can share one runs folder; the
    report keeps the order in which their runs were planned, and the title of the first.
    """
    try:
        earlier = json.loads(grid_json.read_text(encoding="utf-8"))
        before = [str(r) for r in earlier["runs"]]
    except (OSError, ValueError, KeyError, TypeError):
        earlier, before = {}, []
    seen = set(before)
    record = {**grid, "runs": before + [r.run_id for r in runs if r.run_id not in seen]}
    if isinstance(earlier, dict) and earlier.get("name"):
        record["name"] = earlier["name"]
    return record


def _run_on_ray(
    todo: list[GridRun],
    out: Path,
    cache: str,
    track: tuple[str, str | None, str],
    resources: dict[str, Any],
    address: str | None,
    done: Callable[[dict[str, Any]], None],
) -> None:
    from .._cluster import ensure_ray

    spread = {"workers", "gpus_per_worker", "cpus_per_worker"}
    if spread & set(resources):  # each run across Ray Train workers, one run at a time
        if set(resources) - spread:
            raise ImgBalanceError(
                f"resources: {sorted(set(resources) - spread)} are for a Ray task per run; "
                f"with workers (a run across Ray Train workers) use {', '.join(sorted(spread))}."
            )
        ensure_ray(address)
        for run in todo:
            done(run_one(run, str(out), cache, None, *track, ray_train=(resources, address)))
        return
    unknown = sorted(set(resources) - {"cpus", "gpus", "retries"})
    if unknown:
        raise ImgBalanceError(
            f"resources: unknown key(s) {unknown}; use cpus, gpus, retries (a Ray task per "
            "run) or workers, gpus_per_worker, cpus_per_worker (a run across Ray Train workers)."
        )
    cpus = int(resources.get("cpus", 1))
    gpus = float(resources.get("gpus", 0))
    retries = int(resources.get("retries", 1))
    ray = ensure_ray(address)
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=retries)(run_one)
    refs = {task.remote(run, str(out), cache, cpus, *track): run for run in todo}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        run = refs[ready[0]]
        try:
            res = ray.get(ready[0])
        except Exception as exc:  # the worker died, even after its retries
            error = {
                "status": "failed",
                "run": run.run_id,
                "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                "traceback": str(exc),
            }
            (out / run.run_id).mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / run.run_id / "error.json", json.dumps(error, indent=2) + "\n")
            res = {"run": run.run_id, "status": "failed", "error": error["error"]}
        done(res)
