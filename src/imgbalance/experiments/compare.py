"""``imgbalance compare DATA``: which balancing helps a classifier on this data, as a
measurement.

One command: scan the image folder, choose a protocol from its statistics, train
every technique on the same sequence of repeated splits with one selection rule and
one budget in optimiser steps, report, and say the verdict in words with its
uncertainty (see :mod:`imgbalance.experiments.stats`).

Decisions it takes, each written into ``compare.json`` and said on the console:

- **Classes too small to evaluate are left out.** A class with fewer than
  ``MIN_CLASS_IMAGES`` images cannot have even a handful of test images in any
  split; its recall would move in steps of a third. Such a class is left out of the
  comparison (``keep_small_classes=True`` keeps it, and the verdict warns).
- **The techniques** come from the data: the imbalance ratio, the smallest class, the
  size of the set (see :func:`default_techniques`); ``techniques`` overrides.
- **The budget** (``budget_s``): the baseline's first runs are timed (as many at once
  as ``jobs``, so the time is the real throughput here), and the number of
  repeated splits (5 down to 3) and then of techniques (in order of priority) is
  chosen up front so the whole grid fits; what was cut is said.
- **One fair budget**: every arm of a CNN trains the same number of optimiser steps
  (the baseline's epochs x batches), whatever oversampling does to the training set.

Runs go split by split, and a run is not started once the budget is spent (a slower
machine than the timing showed), so a comparison cut short still compares every arm on
the same whole splits, and says how many runs it left. A second run with the same
``out`` resumes: the plan is read back from ``compare.json`` and finished runs are kept
(the budget then counts from the resume).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._fs import atomic_write_text, output_faults
from ..errors import ConfigError, DatasetError
from .config import NATIVE_SIZE
from .data import check_split_unchanged, load_split
from .grid import plan_grid, run_grid
from .repeats import SPLITS_DIR, make_splits
from .results import MIN_EVAL_IMAGES

__all__ = [
    "ALL_TECHNIQUES",
    "ComparePlan",
    "compare",
    "default_techniques",
    "step_budget",
]

#: a class with fewer images than this is left out of a comparison by default
MIN_CLASS_IMAGES = MIN_EVAL_IMAGES
#: every technique compare knows, by priority (the first ones survive a tight budget)
TECHNIQUES: dict[str, dict[str, Any]] = {
    "weighted-ce": {"loss": "weighted-ce", "class_weights": "inverse"},
    "balanced-softmax": {"loss": "balanced-softmax"},
    "random-over": {"technique": "random-over"},
    "smote": {"technique": "smote", "technique_params": {"small_class_fallback": "augment"}},
    "weighted-sampler": {"sampler": "class-balanced"},
    "focal": {"loss": "focal", "class_weights": "inverse"},
    "augment": {"technique": "augment"},
    "random-under": {"technique": "random-under"},
    "stem": {"technique": "stem", "technique_params": {"small_class_fallback": "augment"}},
}
#: more techniques, compared when asked for (``techniques=["all"]`` or by name)
EXTRA: dict[str, dict[str, Any]] = {
    "adasyn": {"technique": "adasyn", "technique_params": {"small_class_fallback": "augment"}},
    "smote-enn": {
        "technique": "smote-enn",
        "technique_params": {"small_class_fallback": "augment"},
    },
    "mixup": {"technique": "mixup"},
    "drw": {"loss": "weighted-ce", "class_weights": "none", "drw_epoch": 10},
    "mixup-cutmix": {"mixing": "mixup-cutmix"},
    "easy-ensemble": {"ensemble": 3},
    "random-over+focal": {"technique": "random-over", "loss": "focal", "class_weights": "inverse"},
    "smote+focal": {
        "technique": "smote",
        "technique_params": {"small_class_fallback": "augment"},
        "loss": "focal",
        "class_weights": "inverse",
    },
}
ALL_TECHNIQUES = {**TECHNIQUES, **EXTRA}
_LINEAR_OK = {"weighted-ce", "random-over", "smote", "random-under", "augment", "stem",
              "adasyn", "smote-enn", "mixup"}  # fmt: skip
PLAN_FILE = "compare.json"
MIN_REPEATS, DEFAULT_REPEATS, MAX_REPEATS = 3, 5, 10


def default_techniques(counts: dict[str, int], model: str) -> tuple[list[str], list[str]]:
    """The techniques worth comparing on data with these class counts, by priority, and
    the reasons for what was left out."""
    sizes = sorted(counts.values())
    ratio = sizes[-1] / max(sizes[0], 1)
    notes = []
    names = list(TECHNIQUES)
    if sizes[0] < 30:
        names.remove("random-under")
        notes.append(
            f"random-under left out: the smallest class has {sizes[0]} images, undersampling "
            "to it would throw most of the data away"
        )
    if ratio < 1.5:
        notes.append(
            f"the classes are nearly balanced (imbalance ratio {ratio:.1f}): balancing is "
            "unlikely to matter, and the comparison is short"
        )
        names = names[:3]
    if model == "linear":
        dropped = [n for n in names if n not in _LINEAR_OK]
        names = [n for n in names if n in _LINEAR_OK]
        if dropped:
            notes.append(f"{', '.join(dropped)} need a CNN (model linear has no such loss)")
    return names, notes


@dataclass
class ComparePlan:
    """What a comparison runs, and why (``compare.json``)."""

    data: str
    model: str
    image_size: int
    techniques: list[str]
    repeats: int
    val: float
    test: float
    seed: int
    defaults: dict[str, Any]
    excluded_classes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    budget_s: float | None = None
    estimate_s: float | None = None
    #: repeats not given: 5, or up to MAX_REPEATS when the budget has room
    auto_repeats: bool = False

    def grid(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"repeats": self.repeats, "val": self.val, "test": self.test,
                                "seed": self.seed}  # fmt: skip
        if self.excluded_classes:
            spec["exclude_classes"] = sorted(self.excluded_classes)
        arms = {"baseline": {}, **{t: dict(ALL_TECHNIQUES[t]) for t in self.techniques}}
        return {
            "name": f"compare {Path(self.data).name}",
            "data": self.data,
            "dataset": self.data,
            "splits": spec,
            "seeds": [0],
            "models": [self.model],
            "defaults": self.defaults,
            "arms": arms,
        }


def _counts(data: Path) -> tuple[dict[str, int], list[str]]:
    """Usable images per class, and a note on the files left out (they were said only
    deep in a split's summary)."""
    from ..dataset.scanner import scan

    catalog = scan(data)
    counts = {c: 0 for c in catalog.classes}
    for r in catalog.usable():
        counts[r.class_name] += 1
    if len(counts) < 2:
        raise DatasetError(f'"{data}" has {len(counts)} class folder(s); a comparison needs two.')
    bad = sorted(r.path for r in catalog.records if not r.readable)
    notes = []
    if bad or catalog.skipped:
        left = [*bad, *(k.path for k in catalog.skipped)]
        named = ", ".join(f'"{p}"' for p in left[:3]) + (", ..." if len(left) > 3 else "")
        notes.append(
            f"{len(bad)} unreadable image file(s) and {len(catalog.skipped)} other file(s) "
            f"are left out of every split ({named}); `imgbalance analyze {data}` lists "
            "each with its reason."
        )
    return counts, notes


def _first_plan(
    data: Path,
    model: str,
    techniques: list[str] | None,
    keep_small_classes: bool,
    budget_s: float | None,
    repeats: int,
    seed: int,
) -> ComparePlan:
    counts, notes = _counts(data)
    small = {c: n for c, n in counts.items() if n < MIN_CLASS_IMAGES}
    if small and not keep_small_classes:
        notes.append(
            "left out, too small to evaluate (fewer than "
            f"{MIN_CLASS_IMAGES} images; keep_small_classes / --keep-small-classes keeps "
            f"them with a warning): " + ", ".join(f"{c} ({n})" for c, n in small.items())
        )
        counts = {c: n for c, n in counts.items() if c not in small}
        if len(counts) < 2:
            raise DatasetError(
                f'"{data}": only {len(counts)} class has {MIN_CLASS_IMAGES} or more images; '
                "nothing can be compared. Collect more images, or pass --keep-small-classes."
            )
    if techniques == ["all"]:
        names = [t for t in ALL_TECHNIQUES if model != "linear" or t in _LINEAR_OK]
    elif techniques:
        unknown = [t for t in techniques if t not in ALL_TECHNIQUES]
        if unknown:
            raise ConfigError(
                f"Unknown technique(s) {unknown} for compare; choose from "
                f"{', '.join(ALL_TECHNIQUES)} or all (or write a grid for `imgbalance "
                "experiment`)."
            )
        names = list(techniques)
    else:
        names, why = default_techniques(counts, model)
        notes += why
    size = 64 if model == "linear" else NATIVE_SIZE.get(model, 224)
    defaults: dict[str, Any] = {"image_size": size, "epochs": 20, "batch_size": 32}
    if model == "linear":
        defaults = {"image_size": size, "features": "thumbnail"}
    # val and test: at least 10 images of the smallest class in each where the data allows
    smallest = min(counts.values())
    frac = min(0.25, max(0.15, MIN_EVAL_IMAGES / smallest)) if smallest else 0.15
    return ComparePlan(
        data=str(data),
        model=model,
        image_size=size,
        techniques=names,
        repeats=repeats,
        val=round(frac, 3),
        test=round(frac, 3),
        seed=seed,
        defaults=defaults,
        excluded_classes=small if not keep_small_classes else {},
        notes=notes,
        budget_s=budget_s,
    )


def _fit_budget(
    plan: ComparePlan, per_run: float, done: int, spent: float, log: Callable[[str], None]
) -> None:
    """Cut repeats (down to 3), then techniques, so the grid fits ``plan.budget_s``.

    ``per_run`` is the measured wall time per run at the comparison's parallelism (the
    ``done`` timed runs), ``spent`` the time already used (scan, splits, those runs).
    """
    # the timed baseline is the cheapest arm: offline techniques also render (with their
    # own workers) and decode a larger training set; measured on bccd_wbc and banana_leaf,
    # a grid's runs cost 1.3x the baseline's
    cost = 1.35 * per_run
    if plan.budget_s is None:
        plan.estimate_s = spent + cost * (plan.repeats * (len(plan.techniques) + 1) - done)
        return
    fits = int(max(plan.budget_s - spent, 0.0) // cost) + done  # the timed runs included
    want_t, want_r = len(plan.techniques), plan.repeats
    if plan.auto_repeats:  # a roomy budget buys more splits: more power, up to 10
        more = min(MAX_REPEATS, fits // (want_t + 1))
        if more > want_r:
            plan.notes.append(
                f"budget: {more} repeated splits (it has room for more than {want_r})"
            )
            want_r = plan.repeats = more
    reps = want_r
    while reps > MIN_REPEATS and reps * (want_t + 1) > fits:
        reps -= 1
    techs = max(1, min(want_t, fits // reps - 1))
    if reps * (techs + 1) > fits:
        plan.notes.append(
            f"the budget fits about {fits} runs of {per_run:.0f} s; even {reps} splits x "
            "(baseline + 1 technique) do not: running that anyway"
        )
    if reps < want_r:
        plan.notes.append(f"budget: {reps} repeated splits instead of {want_r}")
    if techs < want_t:
        plan.notes.append(
            f"budget: the first {techs} technique(s) by priority; left out: "
            + ", ".join(plan.techniques[techs:])
        )
    plan.repeats, plan.techniques = reps, plan.techniques[:techs]
    plan.estimate_s = spent + cost * (reps * (techs + 1) - done)
    log(f"a run takes {per_run:.0f} s here: planning {reps} splits x {techs + 1} arms")


def compare(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    budget_s: float | None = None,
    techniques: list[str] | None = None,
    model: str = "small-cnn",
    repeats: int | None = None,
    seed: int = 0,
    keep_small_classes: bool = False,
    jobs: int = 1,
    backend: str = "local",
    address: str | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Compare balancing techniques on the image folder ``data``; returns the verdict
    (``verdict.json``'s content) with the plan under ``"plan"``.

    Examples
    --------
    >>> v = imgbalance.compare("data", "cmp", budget_s=1200)   # doctest: +SKIP
    >>> print("\\n".join(v["verdict"]))                        # doctest: +SKIP
    """
    from .report import write_report

    data, out = Path(data).expanduser().resolve(), Path(out).expanduser().resolve()
    with output_faults(out, "run the same command again: it resumes"):
        if not data.is_dir():
            raise DatasetError(f'"{data}" is not a folder of class folders.')
        t0 = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        plan = _read_plan(out, data)
        if plan is None:
            plan = _first_plan(
                data, model, techniques, keep_small_classes, budget_s, repeats or DEFAULT_REPEATS,
                seed,
            )  # fmt: skip
            plan.auto_repeats = repeats is None
            for note in plan.notes:
                log(f"note: {note}")
            grid = plan.grid()
            # every run's settings checked before anything is split or trained: a technique
            # the model cannot take (focal with linear) failed after the baseline's runs
            plan_grid(grid, out / SPLITS_DIR)
            make_splits(data, grid["splits"], out / SPLITS_DIR, log)
            if plan.model != "linear":  # one budget in optimiser steps for every arm
                plan.defaults["max_steps"] = _steps_of(out / SPLITS_DIR / "split0", grid)
                grid = plan.grid()
            # time the baseline on the first split(s), as many at once as the grid will run
            # never more splits than the fewest the plan can keep (3): every timed run stays
            timed = max(1, min(jobs, plan.repeats, MIN_REPEATS))
            calib = {
                **grid,
                "arms": {"baseline": {}},
                "splits": {**grid["splits"], "repeats": timed},
            }
            t1 = time.perf_counter()
            first = run_grid(calib, out, jobs=jobs, backend=backend, address=address)
            if first["failed"]:
                raise DatasetError(
                    f"The baseline's first run of the comparison failed: see {out}/"
                    f"baseline__{plan.model}__split0__seed0/error.json."
                )
            now = time.perf_counter()
            _fit_budget(plan, _per_run(out, plan, timed, now - t1), timed, now - t0, log)
            atomic_write_text(out / PLAN_FILE, json.dumps(asdict(plan), indent=2) + "\n")
        else:
            _refuse_other_options(plan, out, model, techniques, repeats, seed)
            check_split_unchanged(out / SPLITS_DIR / "split0", "its finished runs measured the "
                                  "files as they were. Put them back to resume it, or compare "
                                  "anew with another --out.")  # fmt: skip
            log(f"resuming the comparison planned in {out / PLAN_FILE}")
            plan.budget_s = budget_s  # this call's time (a stored one ran out already)
        grid = plan.grid()
        log(
            f"{plan.repeats} repeated splits (val {plan.val:.0%}, test {plan.test:.0%}) x "
            f"{len(plan.techniques) + 1} arms ({', '.join(['baseline', *plan.techniques])}), "
            f"model {plan.model}"
            + (f", about {plan.estimate_s / 60:.0f} min" if plan.estimate_s else "")
        )
        deadline = None
        if plan.budget_s is not None and backend == "local":  # a safety net under the plan
            deadline = time.monotonic() + max(plan.budget_s - (time.perf_counter() - t0), 0.0)
        status = run_grid(
            grid, out, jobs=jobs, log=log, backend=backend, address=address, deadline=deadline
        )
        write_report(out, whole_splits=bool(status.get("not_started")))
        verdict: dict[str, Any] = json.loads((out / "verdict.json").read_text(encoding="utf-8"))
        verdict["plan"] = asdict(plan)
        verdict["status"] = status
        verdict["minutes"] = round((time.perf_counter() - t0) / 60, 1)
        return verdict


def _per_run(out: Path, plan: ComparePlan, timed: int, wall: float) -> float:
    """Seconds per run at the grid's parallelism: the timed runs' own time (they ran side
    by side, so it includes their contention) over how many ran at once. The wall time of
    that first batch also holds the worker processes' start (imports), paid once per
    grid, and would double the estimate on small data."""
    own = []
    for rep in range(timed):
        summary = out / f"baseline__{plan.model}__split{rep}__seed0" / "experiment_summary.json"
        try:
            own.append(float(json.loads(summary.read_text(encoding="utf-8"))["total_time_s"]))
        except (OSError, ValueError, KeyError, TypeError):
            return wall / timed
    return max(own) / timed  # also right when the timed runs were done by an earlier call


def step_budget(n_train: int, defaults: dict[str, Any]) -> int:
    """The baseline's budget in optimiser steps: ``epochs`` x batches of ``batch_size`` over
    its ``n_train`` training images (every arm then trains exactly that many, as
    ``max_steps``)."""
    bs = int(defaults.get("batch_size", 32))
    return int(defaults.get("epochs", 20)) * math.ceil(n_train / bs)


def _steps_of(split_dir: Path, grid: dict[str, Any]) -> int:
    """:func:`step_budget` of split 0's training split."""
    return step_budget(len(load_split(split_dir).rows["train"]), grid["defaults"])


def _refuse_other_options(
    plan: ComparePlan,
    out: Path,
    model: str,
    techniques: list[str] | None,
    repeats: int | None,
    seed: int,
) -> None:
    """A resumed comparison runs its stored plan: options that ask for another one were
    ignored without a word. Refused, naming each (the budget may change: it is the time
    this call has)."""
    asked = []
    if model != plan.model:
        asked.append(f"model {model} (planned: {plan.model})")
    if seed != plan.seed:
        asked.append(f"seed {seed} (planned: {plan.seed})")
    if repeats is not None and repeats != plan.repeats:
        asked.append(f"{repeats} repeats (planned: {plan.repeats})")
    if techniques is not None and not set(plan.techniques) <= set(techniques):
        asked.append(f"techniques {','.join(techniques)} (planned: {','.join(plan.techniques)})")
    if asked:
        raise ConfigError(
            f'"{out}" holds a comparison planned otherwise; this call asks for '
            f"{'; '.join(asked)}. Run it with the options it was planned with to resume it, "
            "or choose another --out to compare anew."
        )


def _read_plan(out: Path, data: Path) -> ComparePlan | None:
    if not (out / PLAN_FILE).is_file():
        return None
    try:
        raw = json.loads((out / PLAN_FILE).read_text(encoding="utf-8"))
        plan = ComparePlan(**raw)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f'"{out / PLAN_FILE}" cannot be read back ({exc}): the comparison in "{out}" '
            "cannot resume. Delete that folder to start again, or choose another --out."
        ) from exc
    if Path(plan.data) != data:
        raise ConfigError(
            f'"{out}" holds a comparison of "{plan.data}", not of "{data}". Choose another '
            "--out, or delete that folder."
        )
    return plan
