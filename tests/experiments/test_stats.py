"""The statistics of a verdict against hand-computed values: Holm, the bootstrap interval,
the corrected resampled t-test, the sign test, and what counts as a unit."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps

from imgbalance.experiments.stats import (
    BETTER,
    SAME,
    SINGLE,
    WORSE,
    bootstrap_ci,
    compare_to_baseline,
    corrected_ttest,
    holm,
    paired_units,
    sign_test,
    t_interval,
)


def test_holm_by_hand() -> None:
    # sorted 0.01 < 0.02 < 0.04 < 0.30, m = 4: 4*0.01, 3*0.02, 2*0.04, 1*0.30
    assert holm([0.04, 0.01, 0.30, 0.02]) == pytest.approx([0.08, 0.04, 0.30, 0.06])
    # step-down keeps the adjusted values monotone: 3*0.01 = 0.03, 2*0.011 = 0.022 -> 0.03
    assert holm([0.01, 0.011, 0.5]) == pytest.approx([0.03, 0.03, 0.5])
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = holm([0.01, float("nan"), 0.04])  # NaN is not in the family: m = 2
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert holm([]) == []


def test_sign_test_by_hand() -> None:
    assert sign_test([0.1] * 5) == pytest.approx(2 * 0.5**5)
    assert sign_test([0.1, 0.1, -0.1]) == pytest.approx(1.0)  # 2 * P(X >= 2 | n=3) = 1
    assert sign_test([0.0, 0.0]) == 1.0  # ties only: no evidence either way
    assert sign_test([0.2, 0.0, 0.2, 0.2]) == pytest.approx(2 * 0.5**3)  # the tie is dropped


def test_corrected_resampled_t_test_by_hand() -> None:
    d = [0.02, 0.04, 0.06]
    # mean 0.04, sample variance 0.0004; Nadeau & Bengio: var * (1/J + n_test/n_train)
    t = 0.04 / math.sqrt((1 / 3 + 0.25) * 0.0004)
    assert t == pytest.approx(2.6186, abs=1e-4)
    assert corrected_ttest(d, 0.25) == pytest.approx(2 * sps.t.sf(t, df=2))
    # without the ratio it is the paired t-test
    assert corrected_ttest(d, None) == pytest.approx(float(sps.ttest_1samp(d, 0).pvalue))
    # the correction only ever widens: p grows with the test/train ratio
    assert corrected_ttest(d, 0.25) > corrected_ttest(d, None)
    assert math.isnan(corrected_ttest([0.1], None))
    assert math.isnan(corrected_ttest([0.1, 0.1, 0.1], None))  # no spread: see sign_test


def test_the_interval_agrees_with_the_test() -> None:
    d = [0.02, 0.04, 0.06]
    half = sps.t.ppf(0.975, df=2) * math.sqrt((1 / 3 + 0.25) * 0.0004)
    assert t_interval(d, 0.25) == pytest.approx((0.04 - half, 0.04 + half))
    # an interval that just excludes 0 is a test with p just under 0.05, and back
    for ratio in (None, 0.25, 0.5):
        lo, _ = t_interval(d, ratio)
        assert (lo > 0) == (corrected_ttest(d, ratio) < 0.05)
    assert t_interval([0.1], None) == (0.1, 0.1)
    assert t_interval([0.1, 0.1], 0.5) == pytest.approx((0.1, 0.1))
    assert all(math.isnan(v) for v in t_interval([], None))


def test_bootstrap_interval_by_hand() -> None:
    # two units a, b: a resampled mean is a, (a+b)/2 or b with probabilities 1/4, 1/2, 1/4,
    # so the 2.5% and 97.5% percentiles are a and b
    lo, hi = bootstrap_ci([0.01, 0.05], seed=3)
    assert (lo, hi) == pytest.approx((0.01, 0.05))
    d = [0.03, -0.01, 0.05, 0.02, 0.04]
    lo, hi = bootstrap_ci(d, seed=0)
    assert lo < np.mean(d) < hi and min(d) <= lo and hi <= max(d)
    assert bootstrap_ci(d, seed=0) == bootstrap_ci(d, seed=0)  # seeded: repeatable
    assert bootstrap_ci([0.1, 0.1]) == pytest.approx((0.1, 0.1))  # no spread
    assert bootstrap_ci([0.2]) == pytest.approx((0.2, 0.2))
    assert all(math.isnan(v) for v in bootstrap_ci([]))


def _run(arm: str, split: str, seed: int, f1: float, **kw: Any) -> dict[str, Any]:
    return {"run": f"{arm}__m__{split}s{seed}", "arm": arm, "model": "m", "split": split,
            "seed": seed, "status": "completed", "macro_f1": f1, "test_n": 30,
            "train_size_before": 120, "resplit": True, **kw}  # fmt: skip


def test_seeds_are_averaged_within_a_split_and_splits_are_the_units() -> None:
    base = [_run("baseline", sp, s, 0.5 + 0.1 * i) for i, sp in enumerate("AB") for s in (0, 1)]
    tech = [_run("t", "A", 0, 0.62), _run("t", "A", 1, 0.58), _run("t", "B", 0, 0.64),
            _run("t", "B", 1, 0.70)]  # fmt: skip
    diffs, unit, pairs = paired_units(tech, base, "macro_f1")
    assert unit == "split"
    assert diffs == pytest.approx([0.10, 0.07])  # A: (0.12 + 0.08) / 2; B: (0.04 + 0.10) / 2
    assert np.array(pairs) == pytest.approx(np.array([(0.60, 0.50), (0.67, 0.60)]))


def test_a_deterministic_model_counts_once_not_once_per_seed() -> None:
    base = [_run("baseline", "A", s, 0.60) for s in (0, 1, 2)]
    tech = [_run("t", "A", s, 0.718) for s in (0, 1, 2)]  # +11.8 on every seed
    diffs, unit, _ = paired_units(tech, base, "macro_f1")
    assert diffs == pytest.approx([0.118]) and unit == "seed"
    [c] = compare_to_baseline(base + tech, "macro_f1")
    assert c.units == 1 and c.status == SINGLE and math.isnan(c.p)  # not "no gain": unknown
    assert c.delta == pytest.approx(0.118)
    # over repeated splits the same model gives one unit per split, and a verdict
    base = [_run("baseline", sp, 0, 0.60 + 0.01 * i) for i, sp in enumerate("ABCDEF")]
    tech = [_run("t", sp, 0, 0.718 + 0.01 * i) for i, sp in enumerate("ABCDEF")]
    [c] = compare_to_baseline(base + tech, "macro_f1")
    assert c.units == 6 and c.zero_variance and c.test.startswith("sign test")
    assert c.p == pytest.approx(2 * 0.5**6) and c.status == BETTER  # 0.03125 < 0.05
    assert math.isnan(c.ci_low) and math.isnan(c.ci_high)  # no spread: no interval shown


def test_losses_are_stated_and_holm_applies_over_the_family() -> None:
    splits = "ABCDE"
    base = [_run("baseline", sp, 0, 0.60 + 0.02 * i) for i, sp in enumerate(splits)]
    good = [_run("good", sp, 0, 0.60 + 0.02 * i + d) for i, (sp, d) in
            enumerate(zip(splits, [0.05, 0.06, 0.04, 0.07, 0.05], strict=True))]  # fmt: skip
    bad = [_run("bad", sp, 0, 0.60 + 0.02 * i - d) for i, (sp, d) in
           enumerate(zip(splits, [0.15, 0.20, 0.18, 0.17, 0.22], strict=True))]  # fmt: skip
    meh = [_run("meh", sp, 0, 0.60 + 0.02 * i + d) for i, (sp, d) in
           enumerate(zip(splits, [0.03, -0.04, 0.01, -0.02, 0.02], strict=True))]  # fmt: skip
    by = {c.arm: c for c in compare_to_baseline(base + good + bad + meh, "macro_f1")}
    assert by["good"].status == BETTER and by["bad"].status == WORSE and by["meh"].status == SAME
    assert by["good"].test == "corrected resampled t-test"
    expected = holm([by[a].p for a in ("good", "bad", "meh")])
    assert [by[a].p_holm for a in ("good", "bad", "meh")] == pytest.approx(expected)
    assert by["bad"].delta == pytest.approx(-0.184)
    assert by["bad"].ci_high < 0 and by["good"].ci_low > 0 and by["meh"].ci_low < 0
    assert by["good"].boot_low <= by["good"].delta <= by["good"].boot_high
    # the corrected interval is wider than the bootstrap one: splits share training images
    assert by["good"].ci_high - by["good"].ci_low > by["good"].boot_high - by["good"].boot_low
    assert by["bad"].wins == "0/5"


def test_lower_is_better_metrics_count_wins_the_other_way() -> None:
    base = [_run("baseline", sp, 0, 0.5, ece=0.20 + 0.01 * i) for i, sp in enumerate("ABCDE")]
    tech = [_run("t", sp, 0, 0.5, ece=0.10 + 0.012 * i) for i, sp in enumerate("ABCDE")]
    [c] = compare_to_baseline(base + tech, "ece")
    assert c.delta < 0 and c.wins == "5/5" and c.status == BETTER


def test_the_overlap_correction_is_for_re_splits_of_one_dataset_only() -> None:
    """New training draws scored on one fixed test set (the long-tailed studies) are not
    random re-splits: their units take the plain paired t-test."""
    diffs = [0.05, 0.06, 0.04, 0.07, 0.05]
    base = [_run("baseline", sp, 0, 0.6, resplit=False) for sp in "ABCDE"]
    tech = [_run("t", sp, 0, 0.6 + d, resplit=False) for sp, d in zip("ABCDE", diffs, strict=True)]
    [c] = compare_to_baseline(base + tech, "macro_f1")
    assert c.unit == "split" and c.test == "paired t-test"
    assert c.p == pytest.approx(float(sps.ttest_1samp(diffs, 0).pvalue))
    for r in base + tech:
        r["resplit"] = "True"  # as results.csv gives it back
    [c] = compare_to_baseline(base + tech, "macro_f1")
    assert c.test == "corrected resampled t-test"
    assert c.p == pytest.approx(corrected_ttest(diffs, 30 / 120))
