"""The runs of a folder as rows, and per technique their means and their comparison
with the baseline (the statistics are in :mod:`imgbalance.experiments.stats`).

A row per run folder (completed or failed). Each completed row records its split
(the ``data`` folder it trained on), so runs pair on the same split and seed, and
the per-class test counts, so a verdict that rests on a handful of test images says
so. Baseline rows also give two post-hoc techniques, *baseline + post-hoc LA* and
*baseline + thresholds*: the same models with their outputs adjusted, compared with
the baseline like any other technique (post-hoc logit adjustment targets balanced
error, so its verdict is read on balanced accuracy).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImgBalanceError
from .stats import BETTER, FEW, LOWER_IS_BETTER, WORSE, compare_to_baseline

__all__ = [
    "LABELS",
    "LOWER_IS_BETTER",
    "METRICS",
    "MIN_EVAL_IMAGES",
    "POSTHOC_ARMS",
    "aggregate",
    "collect_runs",
    "failed_techniques",
    "only_whole_splits",
    "posthoc_rows",
    "protocol",
    "small_class_warnings",
    "unpaired_warnings",
]

METRICS = ("macro_f1", "balanced_accuracy", "minority_recall", "accuracy", "gmean", "ece")
#: metrics compared with the baseline (each a Holm family of its own)
COMPARED = ("macro_f1", "balanced_accuracy", "minority_recall")
LABELS = {
    "macro_f1": "macro-F1",
    "balanced_accuracy": "balanced acc.",
    "minority_recall": "minority recall",
    "accuracy": "accuracy",
    "gmean": "G-mean",
    "ece": "ECE",
    "nll": "NLL",
    "brier": "Brier",
}
#: below this many images of a class in the validation or test split, a verdict warns
MIN_EVAL_IMAGES = 10
#: post-hoc variants of the baseline, and the summary keys they read
POSTHOC_ARMS = {
    "baseline + post-hoc LA": "logit_adjustment",
    "baseline + thresholds": "threshold_moving",
}
#: results.csv column prefix of each post-hoc variant, and the metrics it records
_POSTHOC_PREFIX = {"posthoc_la": "logit_adjustment", "threshold": "threshold_moving"}
_POSTHOC_KEYS = ("macro_f1", "balanced_accuracy", "accuracy", "gmean", "ece", "nll", "brier")
_NOT_RUNS = {"mlflow-artifacts", "wandb"}  # tracker folders beside the runs


def _arm_of(run_id: str) -> tuple[str, str]:
    parts = run_id.split("__")
    return (parts[0], parts[1]) if len(parts) >= 3 else (run_id, "")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ImgBalanceError(
            f'"{path}" cannot be read as JSON ({exc}). Delete that run folder and run the '
            "experiment again (it resumes; only that run is redone)."
        ) from exc


def collect_runs(runs_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """A flat row per run folder (completed or failed), and the class names."""
    rows: list[dict[str, Any]] = []
    classes: list[str] = []
    if not runs_dir.is_dir():
        raise ImgBalanceError(f'"{runs_dir}" is not a folder of runs.')
    for folder in sorted(
        p
        for p in runs_dir.iterdir()
        if p.is_dir() and not p.name.startswith("_") and p.name not in _NOT_RUNS
    ):
        summary_file, error_file = folder / "experiment_summary.json", folder / "error.json"
        arm, model = _arm_of(folder.name)
        if summary_file.is_file():
            s = _read_json(summary_file)
            if not isinstance(s, dict) or not {"config", "classes", "final_metrics"} <= set(s):
                raise ImgBalanceError(
                    f'"{summary_file}" is not an imgbalance run summary (it needs "config", '
                    '"classes" and "final_metrics"). Delete that run folder and run the '
                    "experiment again."
                )
            try:  # the right keys but not a run's: wrong types, no metrics, damaged files
                row = _completed_row(folder, arm, model, s)
            except (KeyError, TypeError, AttributeError) as exc:
                raise ImgBalanceError(
                    f'"{folder}" is not a complete imgbalance run folder ({summary_file.name} '
                    f"or dataset_statistics.json is damaged: {type(exc).__name__} {exc}). "
                    "Delete that run folder and run the experiment again."
                ) from exc
            if classes and list(s["classes"]) != classes:  # a report over one class list
                first = next(r["run"] for r in rows if r["status"] == "completed")
                raise ImgBalanceError(
                    f'"{folder.name}" was trained on the classes {list(s["classes"])}, and '
                    f'"{first}" on {classes}: runs of different data cannot be compared in '
                    f"one report. Put each dataset's runs in a folder of their own."
                )
            classes = classes or list(s["classes"])
            rows.append(row)
        elif error_file.is_file():
            e = _read_json(error_file)
            error = e.get("error", "") if isinstance(e, dict) else str(e)
            rows.append({"run": folder.name, "arm": arm, "model": model, "seed": None,
                         "status": "failed", "error": error})  # fmt: skip
    if not rows:
        raise ImgBalanceError(
            f'"{runs_dir}" has no run folders with experiment_summary.json or error.json. '
            "Run `imgbalance experiment GRID.yaml --out DIR` first."
        )
    return rows, classes


def _split_summary(folder: Path, data: str) -> Any:
    """The ``split_summary.json`` of the split a run trained on: where the run recorded
    it, or, when the runs' folder was moved or copied (a comparison folder holds its
    splits beside its runs), at the same place beside the run folder; None if neither."""
    recorded = Path(data)
    if not data:
        return None
    places = [recorded, *(up / recorded.parent.name / recorded.name for up in folder.parents[:3])]
    for place in places:
        if (place / "split_summary.json").is_file():
            return _read_json(place / "split_summary.json")
    return None


def _completed_row(folder: Path, arm: str, model: str, s: dict[str, Any]) -> dict[str, Any]:
    cfg, m = s["config"], s["final_metrics"]
    stats_file = folder / "dataset_statistics.json"
    train_counts = _read_json(stats_file)["train"]["counts"] if stats_file.is_file() else {}
    top = max(train_counts.values(), default=0)
    minority = [c for c, n in train_counts.items() if 0 < n < 0.5 * top]
    recalls = {c: m["per_class"][c]["recall"] for c in s["classes"]}
    test_support = {c: m["per_class"][c]["support"] for c in s["classes"]}
    val_support = {
        c: v["support"] for c, v in (s.get("val_metrics") or {}).get("per_class", {}).items()
    }
    present = [c for c in minority if test_support[c] > 0]
    posthoc = s.get("posthoc") or {}
    split_info = _split_summary(folder, str(cfg.get("data", "")))
    selection = s.get("selection") or {}
    return {
        "run": folder.name,
        "arm": arm,
        "model": cfg.get("model") or model,
        "seed": cfg.get("seed"),
        "split": str(cfg.get("data", "")),
        # one of a grid's random re-splits of one dataset (their training sets overlap);
        # "unknown" when the split's record cannot be found (the statistics then take the
        # cautious test, as for re-splits)
        "resplit": "unknown"
        if split_info is None
        else isinstance(split_info, dict) and isinstance(split_info.get("repeat"), dict),
        "status": "completed",
        "technique": cfg.get("technique"),
        "loss": cfg.get("loss"),
        "sampler": cfg.get("sampler"),
        "mixing": cfg.get("mixing"),
        "ensemble": cfg.get("ensemble"),
        "macro_f1": m["macro_f1"],
        "balanced_accuracy": m["balanced_accuracy"],
        "minority_recall": float(np.mean([recalls[c] for c in present])) if present else None,
        "accuracy": m["accuracy"],
        "gmean": m.get("gmean"),
        "weighted_f1": m.get("weighted_f1"),
        "ece": m.get("ece"),
        "nll": m.get("nll"),
        "brier": m.get("brier"),
        **{
            f"{prefix}_{k}": (posthoc.get(key) or {}).get(k)
            for prefix, key in _POSTHOC_PREFIX.items()
            for k in _POSTHOC_KEYS
        },
        "val_macro_f1": (s.get("val_metrics") or {}).get("macro_f1"),
        "val_test_gap_macro_f1": (s.get("val_test_gap") or {}).get("macro_f1"),
        "best_epoch": json.dumps(s.get("best_epoch")),
        "epochs_run": s.get("epochs_run"),
        "steps": selection.get("steps"),
        "selection": selection.get("rule", cfg.get("monitor")),
        "train_size_before": s.get("train_size_before"),
        "train_size_after": s.get("train_size_after"),
        "test_n": m.get("n"),
        "min_test_class": min(test_support.values(), default=0),
        "min_val_class": min(val_support.values(), default=0) if val_support else None,
        "training_time_s": s.get("training_time_s"),
        "minority_classes": json.dumps(minority),
        "error": "",
        **{f"recall:{c}": r for c, r in recalls.items()},
        **{f"test_n:{c}": n for c, n in test_support.items()},
    }


def posthoc_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """A baseline run's post-hoc variants, as rows of techniques of their own."""
    if row.get("status") != "completed" or row["arm"] != "baseline":
        return []
    out = []
    for arm, key in POSTHOC_ARMS.items():
        prefix = next(p for p, k in _POSTHOC_PREFIX.items() if k == key)
        if not _present(row.get(f"{prefix}_macro_f1")):
            continue
        variant = {k: v for k, v in row.items() if not k.startswith("recall:")}
        variant.update({k: row.get(f"{prefix}_{k}") for k in _POSTHOC_KEYS})
        variant.update(arm=arm, run=f"{row['run']}+{key}", minority_recall=None, posthoc=True)
        out.append(variant)
    return out


def _present(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _mean_std(values: list[Any]) -> tuple[float, float]:
    """The mean and the sample standard deviation; one value has no spread to measure
    (NaN, shown as none, not as a spread of 0)."""
    v = [float(x) for x in values if _present(x)]
    if not v:
        return float("nan"), float("nan")
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")


def aggregate(
    rows: list[dict[str, Any]], run_order: list[str] | None = None, *, alpha: float = 0.05
) -> list[dict[str, Any]]:
    """Per technique (arm x model): mean and std over its runs, and for the compared
    metrics the paired difference to the model's baseline (``{metric}_delta``, its
    95% interval ``_ci_low`` / ``_ci_high`` (and the bootstrap one, ``_boot_low`` /
    ``_boot_high``), ``_p``, Holm's ``_p_holm``,
    ``_status``, ``_units``, ``_unit``, ``_wins``, ``_test``).

    Techniques come in the grid's order (``run_order``: run ids), baselines first.
    """
    done = [r for r in rows if r["status"] == "completed" and not r.get("posthoc")]
    done += [v for r in done for v in posthoc_rows(r)]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in done:
        groups[(r["arm"], r["model"])].append(r)
    rank = {run: i for i, run in enumerate(run_order or [])}

    def order_key(r: dict[str, Any]) -> tuple[int, int]:
        first = 0 if r["arm"] == "baseline" else 1 if r["arm"] in POSTHOC_ARMS else 2
        run = str(r["run"]).rsplit("+", 1)[0] if r.get("posthoc") else str(r["run"])
        return first, rank.get(run, len(rank))

    order = list(dict.fromkeys((r["arm"], r["model"]) for r in sorted(done, key=order_key)))
    comparisons = {
        (c.arm, c.model, c.metric): c
        for metric in COMPARED
        for c in compare_to_baseline(done, metric, alpha=alpha)
    }
    few = _few_test_images(done)
    out = []
    for arm, model in order:
        runs = groups[(arm, model)]
        base = {(r.get("split", ""), r["seed"]) for r in groups.get(("baseline", model), [])}
        agg: dict[str, Any] = {
            "arm": arm,
            "model": model,
            "seeds": len(runs),
            "runs": len(runs),
            "splits": len({r.get("split", "") for r in runs}),
            "posthoc": bool(runs[0].get("posthoc")),
            # runs with no baseline run on their split and seed: in the mean, not in Δ
            "unpaired": 0
            if arm == "baseline" or not base
            else sum((r.get("split", ""), r["seed"]) not in base for r in runs),
        }
        for key in (*METRICS, "nll", "brier", "training_time_s", "steps"):
            agg[key], agg[f"{key}_std"] = _mean_std([r.get(key) for r in runs])
        for metric in COMPARED:
            c = comparisons.get((arm, model, metric))
            if c is None:
                continue
            agg[f"{metric}_delta"], agg[f"{metric}_wins"] = c.delta, c.wins
            agg[f"{metric}_p"], agg[f"{metric}_p_holm"] = c.p, c.p_holm
            # a difference of two scores in [0, 1] lies in [-1, 1]: a t-interval on a few
            # splits can reach past that (+1.35 on a recall), and is cut to it
            # (max and min keep a NaN bound, the first argument, as it is)
            agg[f"{metric}_ci_low"] = max(c.ci_low, -1.0)
            agg[f"{metric}_ci_high"] = min(c.ci_high, 1.0)
            agg[f"{metric}_boot_low"], agg[f"{metric}_boot_high"] = c.boot_low, c.boot_high
            status = c.status
            if few and status in (BETTER, WORSE):  # a warning, not a mark
                status, agg[f"{metric}_few"] = FEW, few
            agg[f"{metric}_status"], agg[f"{metric}_units"] = status, c.units
            agg[f"{metric}_unit"], agg[f"{metric}_test"] = c.unit, c.test
        out.append(agg)
    return out


def _few_test_images(done: list[dict[str, Any]], minimum: int = MIN_EVAL_IMAGES) -> str:
    """``'class "b" has 2-3 test images'`` for the classes with fewer than ``minimum`` test
    images in some run (every compared metric averages over classes, so each rests on
    them), or empty."""
    few = _test_counts_below(done, minimum)
    return ", ".join(f'class "{c}" has {_span(*few[c])} test images' for c in sorted(few))


def _test_counts_below(done: list[dict[str, Any]], minimum: int) -> dict[str, tuple[int, int]]:
    """Per class with fewer than ``minimum`` test images in some run: the fewest and the
    most it has over the runs."""
    out = {}
    for key in {k for r in done for k in r if k.startswith("test_n:")}:
        counts = [int(r[key]) for r in done if _present(r.get(key))]
        if counts and min(counts) < minimum:
            out[key.removeprefix("test_n:")] = (min(counts), max(counts))
    return out


def _span(lo: int, hi: int) -> str:
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def only_whole_splits(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The completed rows of the splits on which every technique (arm x model) of the rows
    completed a run; failed rows are kept, to be listed."""
    done = [r for r in rows if r["status"] == "completed"]
    techniques = {(r["arm"], r["model"]) for r in done}
    by_split: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for r in done:
        by_split[str(r.get("split", ""))].add((r["arm"], r["model"]))
    whole = {sp for sp, have in by_split.items() if have == techniques}
    return [r for r in rows if r["status"] != "completed" or str(r.get("split", "")) in whole]


def protocol(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the comparison rests on: splits, seeds, the selection rule, the budget."""
    done = [r for r in rows if r["status"] == "completed" and not r.get("posthoc")]
    steps = [r["steps"] for r in done if _present(r.get("steps"))]
    return {
        "runs": len(done),
        "splits": len({r.get("split", "") for r in done}),
        "seeds": sorted({r["seed"] for r in done if r.get("seed") is not None}),
        "selection": sorted({str(r.get("selection")) for r in done if r.get("selection")}),
        "steps_min": int(min(steps)) if steps else None,
        "steps_max": int(max(steps)) if steps else None,
        "min_test_class": min((r["min_test_class"] for r in done), default=None),
        "min_val_class": min(
            (r["min_val_class"] for r in done if r.get("min_val_class") is not None),
            default=None,
        ),
    }


def failed_techniques(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The techniques (arm x model) none of whose runs completed: ``{"arm", "model",
    "runs", "error"}`` (the first run's error), in the order of the rows."""
    done = {(r["arm"], r["model"]) for r in rows if r["status"] == "completed"}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["arm"], r["model"])
        if r["status"] == "failed" and key not in done:
            entry = out.setdefault(key, {"arm": key[0], "model": key[1], "runs": 0,
                                         "error": r.get("error", "")})  # fmt: skip
            entry["runs"] += 1
    return list(out.values())


def unpaired_warnings(aggs: list[dict[str, Any]]) -> list[str]:
    """A warning per technique with runs that have no baseline run to pair with."""
    return [
        f"{a['unpaired']} of the {a['runs']} runs of {a['arm']} ({a['model']}) have no "
        "baseline run on the same split and seed (the baseline's failed or was not run, or "
        "they are runs of other data): they count in its mean, not in its difference to "
        "the baseline."
        for a in aggs
        if a.get("unpaired")
    ]


def small_class_warnings(
    rows: list[dict[str, Any]], classes: list[str], minimum: int = MIN_EVAL_IMAGES
) -> list[str]:
    """A warning per class with fewer than ``minimum`` test (or validation) images in
    some split: its recall moves in steps of one image."""
    done = [r for r in rows if r["status"] == "completed" and not r.get("posthoc")]
    few = _test_counts_below(done, minimum)
    out = []
    for c in [c for c in classes if c in few]:
        lo, hi = few[c]
        out.append(
            f'Class "{c}" has {_span(lo, hi)} test image(s) (fewer than {minimum}): one image '
            f"moves its recall by {1 / max(lo, 1):.2f}, so a change in it, and in macro "
            "metrics, can be one or two images. Collect more images of it; until then "
            "read its numbers as anecdotes."
        )
    val = [r["min_val_class"] for r in done if _present(r.get("min_val_class"))]
    if val and min(val) < minimum:
        out.append(
            f"A class has {min(val)} validation image(s) (fewer than {minimum}): "
            "model selection on validation is noisy for it."
        )
    return out
