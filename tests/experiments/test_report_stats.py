"""Per-technique aggregation of ``imgbalance report`` over run rows (one split, seeds)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from imgbalance.experiments.results import METRICS, aggregate

# -- aggregate ---------------------------------------------------------------------------

_KEYS = (*METRICS, "training_time_s")


def _row(arm: str, model: str, seed: int, macro_f1: float, **kw: Any) -> dict[str, Any]:
    """A completed-run row as ``collect_runs`` makes it (the keys aggregate reads)."""
    row: dict[str, Any] = {
        "run": f"{arm}__{model}__s{seed}",
        "arm": arm,
        "model": model,
        "seed": seed,
        "status": "completed",
        "macro_f1": macro_f1,
        "balanced_accuracy": macro_f1 + 0.05,
        "minority_recall": macro_f1 - 0.1,
        "accuracy": macro_f1 + 0.1,
        "gmean": macro_f1 - 0.05,
        "ece": 0.1,
        "training_time_s": 10.0 + seed,
    }
    row.update(kw)
    return row


BASE_F1 = {0: 0.60, 1: 0.70, 2: 0.65}
SMOTE_F1 = {0: 0.66, 1: 0.71, 2: 0.72}


def _grid_rows() -> list[dict[str, Any]]:
    # the technique's rows come first and in another seed order than the baseline's:
    # pairing must go by seed, not by position
    rows = [_row("smote", "small-cnn", s, SMOTE_F1[s]) for s in (2, 0, 1)]
    rows += [_row("baseline", "small-cnn", s, BASE_F1[s]) for s in (0, 1, 2)]
    rows.append({"run": "smote__small-cnn__s3", "arm": "smote", "model": "small-cnn",
                 "seed": None, "status": "failed", "error": "boom"})  # fmt: skip
    return rows


def test_mean_std_over_seeds_and_baseline_first() -> None:
    aggs = aggregate(_grid_rows())
    assert [(a["arm"], a["model"]) for a in aggs] == [
        ("baseline", "small-cnn"),
        ("smote", "small-cnn"),
    ]
    base, smote = aggs
    assert base["seeds"] == 3 and smote["seeds"] == 3  # the failed run is not a seed
    assert base["macro_f1"] == pytest.approx(0.65)
    assert base["macro_f1_std"] == pytest.approx(0.05)  # sample std (ddof=1)
    assert smote["macro_f1"] == pytest.approx(np.mean(list(SMOTE_F1.values())))
    assert smote["macro_f1_std"] == pytest.approx(np.std(list(SMOTE_F1.values()), ddof=1))
    assert smote["training_time_s"] == pytest.approx(11.0)
    assert smote["training_time_s_std"] == pytest.approx(1.0)
    for key in _KEYS:  # every aggregated column has a mean and a std
        assert f"{key}_std" in base and f"{key}_std" in smote
    # the baseline is not compared with itself
    assert not any(k.endswith(("_delta", "_wins", "_p")) for k in base)


def test_delta_wins_and_p_against_the_same_seeds() -> None:
    smote = aggregate(_grid_rows())[1]
    diffs = [SMOTE_F1[s] - BASE_F1[s] for s in (0, 1, 2)]  # 0.06, 0.01, 0.07
    assert smote["macro_f1_delta"] == pytest.approx(np.mean(diffs))
    assert smote["macro_f1_wins"] == "3/3"
    expected_p = stats.ttest_rel(
        [SMOTE_F1[s] for s in (0, 1, 2)], [BASE_F1[s] for s in (0, 1, 2)]
    ).pvalue
    assert smote["macro_f1_p"] == pytest.approx(float(expected_p))
    assert smote["macro_f1_unit"] == "seed" and smote["macro_f1_units"] == 3
    assert smote["macro_f1_test"] == "paired t-test"  # one split: seeds, no split overlap
    # one technique in the family: Holm changes nothing
    assert smote["macro_f1_p_holm"] == pytest.approx(smote["macro_f1_p"])
    # ece is not a compared metric (mean and std only)
    assert "ece_delta" not in smote


def test_pairing_uses_only_seeds_both_arms_have() -> None:
    rows = _grid_rows()
    rows.append(_row("smote", "small-cnn", 7, 0.20))  # no baseline for seed 7
    smote = aggregate(rows)[1]
    assert smote["seeds"] == 4
    # the mean counts seed 7 ...
    assert smote["macro_f1"] == pytest.approx((sum(SMOTE_F1.values()) + 0.20) / 4)
    # ... the paired difference does not (with it, delta would be negative)
    assert smote["macro_f1_delta"] == pytest.approx(
        np.mean([SMOTE_F1[s] - BASE_F1[s] for s in (0, 1, 2)])
    )
    assert smote["macro_f1_wins"] == "3/3"
    # and the report says so: a run left out of the difference was left out silently
    from imgbalance.experiments.results import unpaired_warnings

    assert smote["unpaired"] == 1 and aggregate(rows)[0]["unpaired"] == 0
    (line,) = unpaired_warnings(aggregate(rows))
    assert line.startswith("1 of the 4 runs of smote (small-cnn) have no baseline run")


def test_a_technique_whose_every_run_failed_is_named_in_the_verdict() -> None:
    """It was missing from "over the N compared" without a word."""
    from imgbalance.experiments.report import verdict_lines
    from imgbalance.experiments.results import failed_techniques

    rows = _grid_rows()
    rows += [{"run": f"focal__small-cnn__s{s}", "arm": "focal", "model": "small-cnn",
              "seed": None, "status": "failed", "error": f"out of memory {s}"}
             for s in (0, 1)]  # fmt: skip
    failed = failed_techniques(rows)
    # smote has runs that completed: not listed
    assert failed == [{"arm": "focal", "model": "small-cnn", "runs": 2, "error": "out of memory 0"}]
    (text,) = verdict_lines(aggregate(rows), {"splits": 2}, failed)
    assert "focal failed in all 2 of its runs and is not compared" in text
    assert "(first error: out of memory 0; see Failed runs)" in text
    # a model whose baseline never completed gets its line too
    only = [{"run": "baseline__m__s0", "arm": "baseline", "model": "m", "seed": None,
             "status": "failed", "error": "boom"}]  # fmt: skip
    assert verdict_lines([], {"splits": 1}, failed_techniques(only))[0] == (
        "m: baseline failed in its run and is not compared (first error: boom; see Failed runs)."
    )


def test_missing_values_are_left_out_of_mean_and_pairs() -> None:
    rows = _grid_rows()
    for r in rows:
        if r["arm"] == "smote" and r["seed"] == 1:
            r["minority_recall"] = None  # no minority class in that run's test split
    smote = aggregate(rows)[1]
    vals = [SMOTE_F1[s] - 0.1 for s in (0, 2)]
    assert smote["minority_recall"] == pytest.approx(np.mean(vals))
    assert smote["minority_recall_std"] == pytest.approx(np.std(vals, ddof=1))
    assert smote["minority_recall_wins"] == "2/2"
    assert smote["minority_recall_delta"] == pytest.approx(
        np.mean([SMOTE_F1[s] - BASE_F1[s] for s in (0, 2)])
    )
    assert smote["minority_recall_units"] == 2  # two pairs only, and a t-test over them
    d = [SMOTE_F1[s] - BASE_F1[s] for s in (0, 2)]
    expected = stats.ttest_1samp(d, 0.0).pvalue
    assert smote["minority_recall_p"] == pytest.approx(float(expected))


def test_a_single_run_has_no_spread_shown_as_none_not_zero() -> None:
    """One run's standard deviation was shown as "± 0.000", as if measured and nil."""
    from imgbalance.experiments.report import _cell, _html_cell

    aggs = aggregate([_row("baseline", "m", 0, 0.5), _row("focal", "m", 0, 0.6)])
    assert math.isnan(aggs[0]["macro_f1_std"]) and math.isnan(aggs[1]["macro_f1_std"])
    assert _cell(aggs[0], "macro_f1") == "0.500"
    assert "±" not in _cell(aggs[1], "macro_f1") and "±" not in _html_cell(aggs[1], "macro_f1")
    two = aggregate([_row("baseline", "m", 0, 0.5), _row("baseline", "m", 1, 0.7)])[0]
    assert _cell(two, "macro_f1") == "0.600 ± 0.141"
    assert aggs[1]["macro_f1_delta"] == pytest.approx(0.1)
    assert aggs[1]["macro_f1_wins"] == "1/1"
    assert aggs[1]["macro_f1_status"] == "single measurement"
    assert math.isnan(aggs[1]["macro_f1_p"])


def test_each_model_is_compared_with_its_own_baseline() -> None:
    rows = _grid_rows()
    rows += [_row("baseline", "resnet18", s, 0.80) for s in (0, 1, 2)]
    rows += [_row("smote", "resnet18", s, 0.75 + 0.01 * s) for s in (0, 1, 2)]
    rows += [_row("focal", "vit", s, 0.5) for s in (0, 1, 2)]  # vit has no baseline
    by = {(a["arm"], a["model"]): a for a in aggregate(rows)}
    assert by[("smote", "small-cnn")]["macro_f1_delta"] == pytest.approx(
        np.mean([SMOTE_F1[s] - BASE_F1[s] for s in (0, 1, 2)])
    )
    assert by[("smote", "resnet18")]["macro_f1_delta"] == pytest.approx(-0.04)
    assert by[("smote", "resnet18")]["macro_f1_wins"] == "0/3"
    assert "macro_f1_delta" not in by[("focal", "vit")]
    assert by[("focal", "vit")]["macro_f1"] == pytest.approx(0.5)


def test_run_order_decides_the_order_after_the_baselines() -> None:
    rows = _grid_rows() + [_row("focal", "small-cnn", s, 0.6) for s in (0, 1, 2)]
    order = ["focal__small-cnn__s0", "smote__small-cnn__s0", "baseline__small-cnn__s0"]
    assert [a["arm"] for a in aggregate(rows, order)] == ["baseline", "focal", "smote"]
    order = ["smote__small-cnn__s0", "focal__small-cnn__s0"]
    assert [a["arm"] for a in aggregate(rows, order)] == ["baseline", "smote", "focal"]


def test_only_failed_runs_give_nothing() -> None:
    rows = [{"run": "x", "arm": "x", "model": "", "seed": None, "status": "failed", "error": "e"}]
    assert aggregate(rows) == []


def test_a_nan_metric_is_skipped_by_the_mean_and_the_pairs_alike() -> None:
    rows = [
        {"run": f"{arm}-{s}", "arm": arm, "model": "m", "seed": s, "status": "completed",
         "macro_f1": v}
        for arm, values in (("baseline", [0.5, 0.6, 0.7]), ("t", [float("nan"), 0.7, 0.8]))
        for s, v in enumerate(values)
    ]  # fmt: skip
    t = next(a for a in aggregate(rows) if a["arm"] == "t")
    assert t["macro_f1"] == pytest.approx(0.75)
    assert t["macro_f1_delta"] == pytest.approx(0.1)
    assert t["macro_f1_wins"] == "2/2"


def test_the_baselines_post_hoc_variants_are_techniques_read_on_their_metric() -> None:
    rows = _grid_rows()
    for r in rows:
        if r["arm"] == "baseline":
            r["posthoc_la_macro_f1"] = r["macro_f1"] - 0.02  # LA can lose macro-F1 ...
            r["posthoc_la_balanced_accuracy"] = r["balanced_accuracy"] + 0.03  # ... not bal. acc.
    by = {a["arm"]: a for a in aggregate(rows)}
    assert list(by) == ["baseline", "baseline + post-hoc LA", "smote"]
    la = by["baseline + post-hoc LA"]
    assert la["posthoc"] and la["runs"] == 3
    assert la["macro_f1_delta"] == pytest.approx(-0.02)
    assert la["balanced_accuracy_delta"] == pytest.approx(0.03)
    assert la["balanced_accuracy_status"] == "indistinguishable"  # the same gain on 3 seeds:
    assert la["balanced_accuracy_p"] == pytest.approx(0.25)  # the sign test, 2 * 0.5**3
    # the family of macro-F1 has two techniques now: Holm doubles the smaller p
    smote = by["smote"]
    assert smote["macro_f1_p_holm"] == pytest.approx(min(1.0, 2 * smote["macro_f1_p"]))


def test_only_whole_splits_keeps_the_splits_every_technique_finished() -> None:
    from imgbalance.experiments.results import only_whole_splits

    def run(arm: str, split: str, f1: float) -> dict[str, Any]:
        return _row(arm, "m", 0, f1, split=split, run=f"{arm}__m__{split}")

    rows = [run("baseline", sp, 0.6) for sp in "ABC"] + [run("t", sp, 0.7) for sp in "AB"]
    rows.append({"run": "t__m__C", "arm": "t", "model": "m", "seed": None, "status": "failed",
                 "error": "cut"})  # fmt: skip
    kept = only_whole_splits(rows)
    assert {r["split"] for r in kept if r["status"] == "completed"} == {"A", "B"}
    assert any(r["status"] == "failed" for r in kept)  # still listed
    agg = {a["arm"]: a for a in aggregate(kept)}
    assert agg["baseline"]["runs"] == 2 and agg["t"]["macro_f1_units"] == 2


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("[1, 2]", "is not an imgbalance run summary"),
        ('{"status": "completed"}', "is not an imgbalance run summary"),
        ("{not json", "cannot be read as JSON"),
    ],
)
def test_report_over_a_broken_summary_is_a_clear_error(
    tmp_path: Path, content: str, match: str
) -> None:
    from imgbalance.errors import ImgBalanceError
    from imgbalance.experiments.report import write_report

    run = tmp_path / "baseline__m__seed0"
    run.mkdir()
    (run / "experiment_summary.json").write_text(content)
    (tmp_path / "grid.json").write_text("[corrupt")  # a broken grid.json is only ignored
    with pytest.raises(ImgBalanceError, match=match):
        write_report(tmp_path)


def test_a_grid_without_a_baseline_arm_is_told_why_there_is_no_verdict() -> None:
    from imgbalance.experiments.report import verdict_lines

    aggs = [{"arm": "ce", "model": "small-cnn"}, {"arm": "ldam-drw", "model": "small-cnn"}]
    (line,) = verdict_lines(aggs, {"splits": 1})
    assert "No arm is named baseline" in line and "ce, ldam-drw" in line
    with_base = [{"arm": "baseline", "model": "small-cnn"}, *aggs[1:]]
    assert verdict_lines(with_base, {"splits": 1})[0].startswith("Nothing to compare yet")


def _clear_win_rows(test_n_b: int) -> list[dict[str, Any]]:
    """smote 0.10 above the baseline on five seeds, with class b's test count."""
    rows = []
    for s, noise in enumerate((0.00, 0.01, -0.01, 0.02, 0.0)):
        for arm, f1 in (("baseline", 0.60 + noise), ("smote", 0.70 + noise + 0.003 * s)):
            rows.append(_row(arm, "linear", s, f1, **{"test_n:a": 40, "test_n:b": test_n_b}))
    return rows


def test_a_class_with_a_handful_of_test_images_gets_a_warning_not_a_mark() -> None:
    """With 3 test images of a class, a 'significant' gain in macro-F1 was marked and
    headlined as a win: every compared metric averages over the classes, so it rests on
    those 3 images. It is reported, as no verdict, and marked nowhere."""
    from imgbalance.experiments.report import _mark, verdict_lines
    from imgbalance.experiments.stats import BETTER, FEW

    many = aggregate(_clear_win_rows(test_n_b=12))[1]
    assert many["macro_f1_status"] == BETTER and _mark(many, "macro_f1") == "↑"
    few = aggregate(_clear_win_rows(test_n_b=3))[1]
    assert few["macro_f1_status"] == FEW and _mark(few, "macro_f1") == ""
    assert few["macro_f1_delta"] == pytest.approx(many["macro_f1_delta"])
    proto = {"splits": 1}
    text = " ".join(verdict_lines(aggregate(_clear_win_rows(test_n_b=3)), proto))
    assert "no technique beats the baseline" in text and "smote: +" in text
    assert 'is no verdict: class "b" has 3 test images' in text
    assert "smote beats" in " ".join(verdict_lines(aggregate(_clear_win_rows(12)), proto))


def test_intervals_are_cut_to_the_possible_range() -> None:
    """A t-interval on a few noisy splits reached +1.35 on a recall."""
    rows = []
    for s, (base, tech) in enumerate(((0.0, 1.0), (0.5, 0.6), (0.0, 1.0))):
        rows.append(_row("baseline", "linear", s, 0.5, minority_recall=base))
        rows.append(_row("smote", "linear", s, 0.5, minority_recall=tech))
    smote = aggregate(rows)[1]
    assert smote["minority_recall_ci_high"] == 1.0 and smote["minority_recall_ci_low"] >= -1.0


def test_the_protocol_says_the_marks_are_per_metric_and_the_verdict_on_one() -> None:
    """Thresholds got an up-arrow on balanced accuracy while the verdict called it
    indistinguishable on macro-F1, and nothing said why the two differ."""
    from imgbalance.experiments.report import _protocol_text
    from imgbalance.experiments.results import protocol

    rows = [{**r, "min_test_class": 12} for r in _grid_rows()]
    text = _protocol_text(protocol(rows), aggregate(rows))
    assert "The verdict reads each technique on one metric, macro-F1" in text
    assert "a mark on another metric is not the verdict" in text
