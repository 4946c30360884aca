"""The statistics behind a verdict: paired differences against the baseline, their
uncertainty, and a correction for the number of comparisons.

The unit of evidence is a **split**. Runs of a technique and of the baseline are
paired when they share a split (the same ``data`` folder) and a seed; seeds within
one split are averaged first, so a deterministic model counts once per split and
several seeds never pass for several independent measurements. With a single
split the seeds are the units (they measure training randomness only; the report
says so).

For each technique, against the baseline of the same model:

- ``delta``: the mean paired difference (technique - baseline);
- ``ci``: its 95% confidence interval, ``delta ± t(J-1) * sqrt(scale * var)`` with the
  same variance term as the test below, so interval and test agree (an interval that
  excludes 0 is a test with p < 0.05, before Holm);
- ``boot``: a 95% percentile bootstrap interval of the same mean (9,999 resamples of
  the units, seeded), kept beside it as a check. It is not the headline: with 3-10
  units a percentile bootstrap covers less than it claims, and resampling splits
  cannot see that their training sets overlap;
- ``p``: two-sided. Over a grid's repeated random splits of one dataset (rows marked
  ``resplit``), the corrected resampled t-test of Nadeau & Bengio (2003), whose
  variance term ``(1/J + n_test/n_train)`` accounts for the overlap of training sets
  between splits; over other units (seeds of one split, or splits drawn some other
  way, such as new training draws against one fixed test set), the paired t-test.
  When every unit shows the same difference (zero variance: a t-test is undefined),
  the exact two-sided sign test, ``2 * 0.5**J``;
- ``p_holm``: Holm's step-down correction over the techniques compared with one
  baseline on one metric (the family of one study and model).

A difference is **better** or **worse** when ``p_holm < alpha``; otherwise the
technique is **indistinguishable** from the baseline (not "equal": the data cannot
tell them apart). With one unit there is no uncertainty to give: the status is
**single measurement**.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Comparison",
    "bootstrap_ci",
    "compare_to_baseline",
    "corrected_ttest",
    "holm",
    "paired_units",
    "sign_test",
    "t_interval",
]

#: metrics where a smaller value is the better one
LOWER_IS_BETTER = frozenset({"ece", "nll", "brier"})
#: statuses of a comparison
BETTER, WORSE, SAME, SINGLE = "better", "worse", "indistinguishable", "single measurement"
#: a difference that would be significant, on a metric that rests on a class with a
#: handful of test images: a warning, never a mark
FEW = "rests on few test images"


@dataclass
class Comparison:
    """One technique against its baseline on one metric (see the module docstring)."""

    arm: str
    model: str
    metric: str
    units: int
    unit: str  # "split" or "seed"
    delta: float
    ci_low: float
    ci_high: float
    p: float
    boot_low: float = float("nan")
    boot_high: float = float("nan")
    p_holm: float = float("nan")
    wins: str = ""
    test: str = ""  # which test gave p
    status: str = SINGLE
    zero_variance: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order; NaN stays NaN and is not
    counted in the family.

    >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03])]
    [0.03, 0.06, 0.06]
    """
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    m = len(idx)
    out = [float("nan")] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def sign_test(diffs: Sequence[float]) -> float:
    """Exact two-sided sign test over the non-zero differences (ties dropped)."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    pos, neg = int((d > 0).sum()), int((d < 0).sum())
    if pos + neg == 0:
        return 1.0
    return float(stats.binomtest(pos, pos + neg, 0.5).pvalue)


def corrected_ttest(diffs: Sequence[float], test_train_ratio: float | None) -> float:
    """Two-sided p of the mean difference: Nadeau & Bengio's corrected resampled t-test
    when ``test_train_ratio`` (``n_test / n_train``) is given, else the paired t-test.
    NaN under two units or without spread (see :func:`sign_test` for that case)."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    j = len(d)
    if j < 2 or np.ptp(d) <= 1e-12:
        return float("nan")
    var = float(np.var(d, ddof=1))
    scale = 1.0 / j + (test_train_ratio or 0.0)
    t = float(np.mean(d)) / math.sqrt(scale * var)
    return float(2 * stats.t.sf(abs(t), df=j - 1))


def t_interval(
    diffs: Sequence[float], test_train_ratio: float | None, confidence: float = 0.95
) -> tuple[float, float]:
    """The interval of :func:`corrected_ttest`: ``mean ± t * sqrt((1/J + ratio) * var)``;
    ``(d, d)`` for one unit or no spread, NaN for none."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    if len(d) == 0:
        return float("nan"), float("nan")
    mean = float(d.mean())
    if len(d) == 1 or np.ptp(d) <= 1e-12:
        return mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, df=len(d) - 1)) * math.sqrt(
        (1.0 / len(d) + (test_train_ratio or 0.0)) * float(np.var(d, ddof=1))
    )
    return mean - half, mean + half


def bootstrap_ci(
    diffs: Sequence[float], *, confidence: float = 0.95, seed: int = 0, resamples: int = 9999
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs`` (seeded); ``(d, d)`` for one
    unit or no spread, NaN for none."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    if len(d) == 0:
        return float("nan"), float("nan")
    if len(d) == 1 or np.ptp(d) <= 1e-12:
        return float(d.mean()), float(d.mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            (d,),
            np.mean,
            confidence_level=confidence,
            n_resamples=resamples,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _truthy(x: Any) -> bool:
    """True, or a CSV's "True"."""
    return x is True or (isinstance(x, str) and x.strip().lower() == "true")


def _present(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def paired_units(
    runs: Iterable[dict[str, Any]], base: Iterable[dict[str, Any]], metric: str
) -> tuple[list[float], str, list[tuple[float, float]]]:
    """The paired differences a comparison rests on: ``(differences per unit, unit name,
    (technique, baseline) value pairs per unit)``.

    Runs pair on ``(split, seed)``; within a split, pairs are averaged over seeds. With
    one split, the seeds are the units, and seeds that repeat the same pair (a
    deterministic model) count once.
    """
    by_key = {(r.get("split", ""), r["seed"]): r for r in base if _present(r.get(metric))}
    per_split: dict[Any, list[tuple[float, float]]] = defaultdict(list)
    for r in runs:
        b = by_key.get((r.get("split", ""), r["seed"]))
        if b is not None and _present(r.get(metric)):
            per_split[r.get("split", "")].append((float(r[metric]), float(b[metric])))
    if len(per_split) > 1:
        pairs = [tuple(np.mean(v, axis=0)) for v in per_split.values()]
        means = [(float(a), float(b)) for a, b in pairs]
        return [a - b for a, b in means], "split", means
    only = next(iter(per_split.values()), [])
    if len(set(only)) == 1:  # every seed gave the same two numbers: one measurement
        only = only[:1]
    return [a - b for a, b in only], "seed", only


def compare_to_baseline(
    rows: list[dict[str, Any]],
    metric: str,
    *,
    baseline: str = "baseline",
    alpha: float = 0.05,
    seed: int = 0,
) -> list[Comparison]:
    """Every technique against the baseline of its model on ``metric``, Holm-corrected
    per model (the techniques of one model are one family)."""
    done = [r for r in rows if r.get("status") == "completed"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in done:
        groups[(r["arm"], r["model"])].append(r)
    out: list[Comparison] = []
    for model in dict.fromkeys(r["model"] for r in done):
        base = groups.get((baseline, model))
        if not base:
            continue
        family: list[Comparison] = []
        for (arm, m), runs in groups.items():
            if m != model or arm == baseline:
                continue
            diffs, unit, pairs = paired_units(runs, base, metric)
            if not diffs:
                continue
            family.append(_compare(arm, model, metric, diffs, unit, pairs, runs, seed))
        for c, ph in zip(family, holm([c.p for c in family]), strict=True):
            c.p_holm = ph
            c.status = _status(c, alpha)
        out += family
    return out


def _compare(
    arm: str,
    model: str,
    metric: str,
    diffs: list[float],
    unit: str,
    pairs: list[tuple[float, float]],
    runs: list[dict[str, Any]],
    seed: int,
) -> Comparison:
    d = np.asarray(diffs)
    boot = bootstrap_ci(diffs, seed=seed)
    zero_var = len(d) >= 2 and bool(np.ptp(d) <= 1e-12)
    ratio = None
    # the correction is for random re-splits of one dataset (overlapping training sets);
    # splits drawn otherwise (a fixed test set, new training draws) take the plain test
    unknown = any(str(r.get("resplit")) == "unknown" for r in runs)
    if unit == "split" and all(_truthy(r.get("resplit")) or unknown for r in runs):
        ratios = [
            float(r["test_n"]) / float(r["train_size_before"])
            for r in runs
            if _present(r.get("test_n")) and r.get("train_size_before")
        ]
        ratio = float(np.mean(ratios)) if ratios else None
    lo, hi = t_interval(diffs, ratio)
    if zero_var:  # no spread: no interval to give (the sign test says what can be said)
        lo = hi = float("nan")
    if len(d) < 2:
        p, test = float("nan"), "none (one unit)"
    elif zero_var:
        p, test = sign_test(diffs), "sign test (every unit the same difference)"
    else:
        p = corrected_ttest(diffs, ratio)
        test = "corrected resampled t-test" if ratio is not None else "paired t-test"
        if ratio is not None and unknown:
            test += " (the splits' records were not found: taken as re-splits, the cautious test)"
    a, b = np.asarray(pairs).T
    better = (a < b) if metric in LOWER_IS_BETTER else (a > b)
    c = Comparison(
        arm=arm,
        model=model,
        metric=metric,
        units=len(d),
        unit=unit,
        delta=float(d.mean()),
        ci_low=lo,
        ci_high=hi,
        p=p,
        boot_low=boot[0],
        boot_high=boot[1],
        wins=f"{int(better.sum())}/{len(d)}",
        test=test,
        zero_variance=zero_var,
    )
    if zero_var:
        c.notes.append(f"the same difference on every {unit}: no spread to estimate")
    return c


def _status(c: Comparison, alpha: float) -> str:
    if c.units < 2 or math.isnan(c.p_holm):
        return SINGLE
    if c.p_holm >= alpha or abs(c.delta) <= 1e-12:
        return SAME
    improves = c.delta < 0 if c.metric in LOWER_IS_BETTER else c.delta > 0
    return BETTER if improves else WORSE
