"""``balance_summary.txt``: the human-readable account of a balance plan."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

import imgbalance
from imgbalance.planning.recipes import Plan
from imgbalance.rendering.outputs import BalanceResult
from imgbalance.reports.balance import summary_text


def _xy(n_major: int, n_minor: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(seed).random((n_major + n_minor, 6), dtype=np.float32)
    return X, np.array([0] * n_major + [1] * n_minor)


def _manifest(plan: Plan) -> list[dict[str, Any]]:
    """Manifest rows as a render writes them (only the keys the summary reads matter)."""
    rows = [{"origin": "original", "class": plan.classes[plan.original_labels[i]]}
            for i in plan.kept]  # fmt: skip
    rows += [{"origin": "synthetic", "class": plan.classes[r.label]} for r in plan.recipes]
    return rows


def _block(text: str, title: str) -> list[str]:
    """The lines under ``title`` up to the next blank line."""
    lines = text.splitlines()
    start = lines.index(title) + 1
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start:end]


def _dist_line(name: str, n: int, total: int) -> str:
    return f"  {name:30s} {n:7d}  ({n / total:6.1%})"


@pytest.fixture
def smote_result() -> BalanceResult:
    X, y = _xy(30, 10)
    plan = imgbalance.plan_arrays(X, y, ["cats", "dogs"], "smote", random_state=0)
    plan.config["source"] = "/data/pets"
    plan.config["features"] = "thumbnail:8"
    return BalanceResult(
        plan=plan, out=None, manifest=_manifest(plan), timings={"plan": 1.234, "render": 0.5}
    )


def test_header_lines(smote_result: BalanceResult) -> None:
    lines = summary_text(smote_result).splitlines()
    assert lines[:8] == [
        "imgbalance balance summary",
        "=" * 26,
        "source:   /data/pets",
        "method:   smote",
        "target:   auto",
        "seed:     0",
        "features: thumbnail:8",
        "",
    ]


def test_initial_and_final_distributions(smote_result: BalanceResult) -> None:
    text = summary_text(smote_result)
    assert _block(text, "Initial distribution:") == [
        _dist_line("cats", 30, 40),
        _dist_line("dogs", 10, 40),
        "  total 40; balance_ratio min/max = 0.3333; imbalance_ratio max/min = 3.00",
    ]
    assert _dist_line("cats", 30, 40).endswith("30  ( 75.0%)")
    assert _block(text, "Final distribution:") == [
        _dist_line("cats", 30, 60),
        _dist_line("dogs", 30, 60),
        "  total 60; balance_ratio min/max = 1.0000; imbalance_ratio max/min = 1.00",
    ]
    assert text.index("Initial distribution:") < text.index("Final distribution:")
    assert "After SMOTE-ENN" not in text  # no such stage in a plain SMOTE plan


def test_steps_synthetic_count_and_timings(smote_result: BalanceResult) -> None:
    text = summary_text(smote_result)
    assert _block(text, "Steps:") == ["  smote: {'dogs': 20}"]
    assert "synthetic images: 20; originals removed: 0 of 40" in text.splitlines()
    assert text.endswith("\ntimings: plan 1.23, render 0.50\n")
    assert "Notes:" not in text


def test_synthetic_count_comes_from_the_manifest(smote_result: BalanceResult) -> None:
    """The count is what was rendered (manifest rows), not what was planned."""
    smote_result.manifest = [r for r in smote_result.manifest if r["origin"] == "original"]
    smote_result.manifest += [{"origin": "synthetic", "class": "dogs"}] * 7
    assert "synthetic images: 7; originals removed: 0 of 40" in summary_text(smote_result)
    smote_result.manifest = []
    smote_result.timings = {}
    text = summary_text(smote_result)
    assert "synthetic images: 0; originals removed: 0 of 40" in text
    assert "timings" not in text


def test_notes_removals_and_unchanged_steps() -> None:
    X, y = _xy(30, 3)
    plan = imgbalance.plan_arrays(X, y, ["cats", "dogs"], "random-under", random_state=0)
    plan.notes.append("a note from the planner")
    text = summary_text(BalanceResult(plan=plan, out=None, manifest=_manifest(plan)))
    assert _block(text, "Steps:") == ["  random-under: {'cats': -27}"]
    assert "synthetic images: 0; originals removed: 27 of 33" in text
    assert _block(text, "Notes:") == ["  - a note from the planner"]
    assert _block(text, "Final distribution:")[-1] == (
        "  total 6; balance_ratio min/max = 1.0000; imbalance_ratio max/min = 1.00"
    )

    plan = imgbalance.plan_arrays(X, y, ["cats", "dogs"], "smote,enn", random_state=0)
    text = summary_text(BalanceResult(plan=plan, out=None, manifest=_manifest(plan)))
    steps = _block(text, "Steps:")
    assert steps[0] == "  smote: {'dogs': 27}"
    enn = next(s for s in plan.log if s["step"] == "enn")
    if enn["after"] == enn["before"]:
        assert steps[1].startswith("  enn: no change  {")
    else:
        delta = {c: enn["after"][c] - enn["before"][c] for c in enn["after"]
                 if enn["after"][c] != enn["before"][c]}  # fmt: skip
        assert steps[1].startswith(f"  enn: {delta}  {{")
    assert "'removed': " in steps[1]  # the step's extra fields are shown
    # SMOTE with k lowered for a 3-image class says so
    notes = _block(text, "Notes:")
    assert notes == [f"  - {n}" for n in plan.notes] and len(notes) >= 1
    assert 'class "dogs" has 3 images' in notes[0]


def test_an_empty_class_is_listed_without_breaking_the_ratios() -> None:
    X, y = _xy(30, 3)
    plan = imgbalance.plan_arrays(X, y, ["cats", "dogs", "emu"], "smote", random_state=0)
    text = summary_text(BalanceResult(plan=plan, out=None, manifest=_manifest(plan)))
    initial = _block(text, "Initial distribution:")
    assert initial[2] == _dist_line("emu", 0, 33)
    # ratios are over the classes that have images
    assert (
        initial[3] == "  total 33; balance_ratio min/max = 0.1000; imbalance_ratio max/min = 10.00"
    )


def test_stem_shows_the_smote_enn_stage() -> None:
    X, y = _xy(30, 10)
    plan = imgbalance.plan_arrays(X, y, ["cats", "dogs"], "stem", random_state=0)
    (stage,) = [s for s in plan.log if s.get("stage") == "after_smote_enn"]
    text = summary_text(BalanceResult(plan=plan, out=None, manifest=_manifest(plan)))
    title = f"After SMOTE-ENN ({stage['iterations']} iteration(s); stopped: {stage['stop']}):"
    assert text.count("After SMOTE-ENN") == 1
    assert (
        text.index("Initial distribution:") < text.index(title) < text.index("Final distribution:")
    )
    counts = stage["after"]
    total = sum(counts.values())
    lo, hi = min(counts.values()), max(counts.values())
    assert _block(text, title) == [
        _dist_line("cats", counts["cats"], total),
        _dist_line("dogs", counts["dogs"], total),
        f"  total {total}; balance_ratio min/max = {lo / hi:.4f}; "
        f"imbalance_ratio max/min = {hi / lo:.2f}",
    ]
    # the stage block agrees with the plan's recorded stage (kept originals + its recipes)
    kept = plan.stages["after_smote_enn"]
    by_label = Counter(plan.original_labels[i] for i in kept["kept"])
    by_label.update(plan.recipes[r].label for r in kept["recipes"])
    assert counts == {"cats": by_label[0], "dogs": by_label[1]}
    # and the final block is the plan's final counts, different from the stage's
    after = plan.counts_after()
    assert after != counts
    assert _block(text, "Final distribution:")[:2] == [
        _dist_line(c, after[c], sum(after.values())) for c in ("cats", "dogs")
    ]
    assert f"synthetic images: {len(plan.recipes)}; " in text
    assert "method:   stem" in text and "target:   ratio:0.7" in text
    steps = _block(text, "Steps:")
    assert [s.split(":")[0].strip() for s in steps] == [s["step"].split(":")[0] for s in plan.log]


def test_class_breakdown_counts_kept_new_and_distinct_sources() -> None:
    from imgbalance.planning.recipes import Recipe
    from imgbalance.reports.balance import class_breakdown

    recipes = [
        Recipe("smote", 1, (3, 4), (0.5, 0.5), "smote"),
        Recipe("smote", 1, (4, 3), (0.7, 0.3), "smote"),
        Recipe("copy", 1, (4,), (1.0,), "random-over"),
    ]
    plan = Plan(classes=["cats", "dogs"], n_originals=5, original_labels=[0, 0, 0, 1, 1],
                originals=[f"{i}.png" for i in range(5)], kept=[0, 2, 3, 4], recipes=recipes,
                log=[], notes=[], config={})  # fmt: skip
    assert class_breakdown(plan) == {
        "cats": {"before": 3, "kept": 2, "new": 0, "sources": 0},
        # three new dogs, made from the two dog originals only
        "dogs": {"before": 2, "kept": 2, "new": 3, "sources": 2},
    }
