"""One table across the effectiveness studies: the change in test macro-F1 per technique.

Reads each study folder's ``results.csv`` (a row per run, as ``imgbalance
report`` writes it), aggregates it the way the report does (mean over seeds,
the paired difference to the same model's baseline, a paired t-test), and
writes ``summary.md`` and ``summary.png`` (a heatmap of the change, in
macro-F1 points) next to this script. It also checks each change against the
gains the tomato-leaf reference's documentation expected.

Usage::

    python benchmarks/effectiveness/summarize.py --model small-cnn \\
        benchmarks/effectiveness/digits_ir10 benchmarks/effectiveness/digits_ir100 \\
        benchmarks/effectiveness/mnist5k_ir10 benchmarks/effectiveness/mnist5k_ir100 \\
        benchmarks/effectiveness/banana_leaf_cpu benchmarks/effectiveness/bccd_wbc_cpu
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from imgbalance.experiments.results import aggregate
from imgbalance.experiments.stats import corrected_ttest, sign_test

HERE = Path(__file__).resolve().parent

#: macro-F1 gains, in points, that the tomato-leaf reference's documentation expected
EXPECTED = {
    "smote": (2, 5),
    "adasyn": (2, 5),
    "focal": (1, 3),
    "augment": (1, 4),
    "random-over+focal": (3, 7),
    "smote+focal": (3, 7),
    "adasyn+focal": (3, 7),
    "augment+focal": (3, 7),
}


def read_rows(study: Path) -> list[dict[str, Any]]:
    """``results.csv`` back into the report's row dictionaries."""
    rows = []
    if not (study / "results.csv").is_file():
        raise SystemExit(
            f'"{study}" has no results.csv: pass a study folder, or run '
            f"`imgbalance report RUNS` and copy its results.csv there."
        )
    with (study / "results.csv").open(encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = dict(raw)
            for key, value in raw.items():
                if key in ("run", "arm", "model", "status", "technique", "loss", "sampler"):
                    continue
                with contextlib.suppress(ValueError):
                    row[key] = float(value) if value not in ("", None) else None
            row["seed"] = int(row["seed"]) if row.get("seed") is not None else None
            rows.append(row)
    info = study / "study.json"
    s = json.loads(info.read_text()) if info.is_file() else {}
    if "imbalance_ratio" in s and not any(r.get("split") for r in rows):
        # a long_tailed.py study made before results.csv had a split column: each seed
        # drew its own training split (the balanced test split is the same)
        n_test = int(s["test_per_class"]) * len(next(iter(s["counts"].values()))["test"])
        for r in rows:
            r["split"], r["test_n"] = f"seed{r['seed']}", n_test
    return rows


def study_name(study: Path, rows: list[dict[str, Any]]) -> str:
    info = study / "study.json"
    s = json.loads(info.read_text()) if info.is_file() else {}
    seeds = {r["seed"] for r in rows if r["status"] == "completed"}
    if "imbalance_ratio" in s:  # a long_tailed.py study
        return f"{s['dataset']} IR {s['imbalance_ratio']:g} ({len(seeds)} seeds)"
    if s.get("protocol") == "imgbalance compare":
        return f"{s['dataset']} ({s['plan']['repeats']} splits)"
    return f"{s.get('dataset', study.name)} ({len(seeds)} seeds)"


def _stars(p: float | None) -> str:
    if p is None or math.isnan(p):
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


def _paired(pairs: list[tuple[Any, Any]]) -> str:
    """``+1.2* (3/3)``: the mean of ``a - b`` in points, a paired t-test, the wins of ``a``."""
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if not pairs:
        return "n/a"
    d = [float(a) - float(b) for a, b in pairs]
    p = corrected_ttest(d, None) if len(d) > 1 and np.ptp(d) > 1e-12 else sign_test(d)
    wins = f"{sum(x > 0 for x in d)}/{len(d)}"
    return f"{100 * float(np.mean(d)):+.1f}{_stars(p)} ({wins})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("studies", type=Path, nargs="+")
    ap.add_argument("--model", default="small-cnn")
    ap.add_argument("--out", type=Path, default=HERE / "summary")
    ap.add_argument(
        "--order", type=Path, default=HERE / "long_tailed_cnn.yaml", help="row order: its arms"
    )
    args = ap.parse_args()

    study_rows = [read_rows(s) for s in args.studies]
    names = [study_name(s, rows) for s, rows in zip(args.studies, study_rows, strict=True)]
    arms: list[str] = list(yaml.safe_load(args.order.read_text())["arms"])
    tables: dict[str, dict[str, dict[str, Any]]] = {}  # study -> arm -> aggregate
    # study -> arm -> (split, seed) -> run
    by_seed: dict[str, dict[str, dict[tuple[str, int], dict[str, Any]]]] = {}
    for rows, name in zip(study_rows, names, strict=True):
        by_seed[name] = {}
        for r in rows:
            if r["status"] == "completed" and r["model"] == args.model:
                by_seed[name].setdefault(r["arm"], {})[(str(r.get("split") or ""), r["seed"])] = r
        aggs = [a for a in aggregate(rows) if a["model"] == args.model]
        tables[name] = {a["arm"]: a for a in aggs}
        arms += [a["arm"] for a in aggs if a["arm"] not in arms]
    arms = [a for a in arms if any(a in t for t in tables.values())]

    def delta(name: str, arm: str, key: str = "macro_f1") -> tuple[float, str] | None:
        a = tables[name].get(arm)
        if a is None or f"{key}_delta" not in a:
            return None
        return 100 * a[f"{key}_delta"], _stars(a.get(f"{key}_p_holm"))

    def wins(name: str, arm: str, key: str = "macro_f1") -> str:
        return str(tables[name][arm].get(f"{key}_wins", ""))

    lines = [
        f"# Change in test macro-F1 against the baseline ({args.model}), in points",
        "",
        "Mean paired difference to the baseline (runs paired by split and seed, seeds",
        "averaged within a split); `*` p < 0.05, `**` p < 0.01 after Holm's correction",
        "over the techniques of the study (see `imgbalance report`); in brackets, the",
        "units (splits, or seeds of one split) on which the technique beat the baseline.",
        "Written by `summarize.py` from each study's `results.csv`. Studies named with",
        "splits follow `imgbalance compare` (repeated splits); those named with seeds",
        "draw a new long-tailed training split per seed against one fixed balanced test",
        "split. Every arm of every study trains the baseline's optimiser steps and keeps",
        "the checkpoint of the lowest class-balanced validation loss.",
        "",
        "| technique | " + " | ".join(names) + " | expected |",
        "|---|" + "---:|" * len(names) + "---|",
    ]
    base_cells = []
    for name in names:
        b = tables[name].get("baseline")
        base_cells.append(f"{b['macro_f1']:.3f} ± {b['macro_f1_std']:.3f}" if b else "n/a")
    lines.append("| baseline (macro-F1) | " + " | ".join(base_cells) + " | |")
    grid = np.full((len(arms) - 1, len(names)), np.nan)
    labels = [a for a in arms if a != "baseline"]
    verdicts: dict[str, list[str]] = {}
    for i, arm in enumerate(labels):
        cells = []
        for j, name in enumerate(names):
            d = delta(name, arm)
            if d is None:
                cells.append("n/a")
                continue
            grid[i, j] = d[0]
            cells.append(f"{d[0]:+.1f}{d[1]} ({wins(name, arm)})")
            if arm in EXPECTED:
                lo, hi = EXPECTED[arm]
                verdicts.setdefault(arm, []).append(
                    "below" if d[0] < lo else "above" if d[0] > hi else "within"
                )
        exp = f"+{EXPECTED[arm][0]} to +{EXPECTED[arm][1]}" if arm in EXPECTED else ""
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {exp} |")

    lines += [
        "",
        "The last two rows retrain nothing: they are the baseline's own models with",
        "post-hoc logit adjustment (subtracting the log training prior) or with",
        "per-class thresholds tuned on the validation split.",
        "",
        "## Synthetic images against plain duplication",
        "",
        "Each technique that makes new images, against `random-over` (which duplicates",
        "originals) on the same split and seed: the change in test macro-F1, in points",
        "(paired t-test over those pairs, not corrected for the six comparisons).",
        "",
        "| technique | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for arm in ("smote", "adasyn", "smote-enn", "mixup", "augment", "stem"):
        cells = []
        for name in names:
            runs, ref = by_seed[name].get(arm, {}), by_seed[name].get("random-over", {})
            pairs = [
                (r.get("macro_f1"), ref[s].get("macro_f1")) for s, r in runs.items() if s in ref
            ]
            cells.append(_paired(pairs))
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")

    significant_up = sorted(
        {arm for name in names for arm in labels if (d := delta(name, arm)) and d[1] and d[0] > 0}
    )
    lines += [
        "",
        "## Against the tomato-leaf expectations",
        "",
        "| technique | expected gain | studies below / within / above |",
        "|---|---|---|",
    ]
    for arm, (lo, hi) in EXPECTED.items():
        v = verdicts.get(arm, [])
        counts = " / ".join(str(v.count(k)) for k in ("below", "within", "above"))
        lines.append(f"| {arm} | +{lo} to +{hi} | {counts} |")
    lines += [
        "",
        "Techniques with a significant gain (p < 0.05) in at least one study: "
        + (", ".join(significant_up) if significant_up else "none")
        + ".",
        "",
        "Per study, the techniques whose macro-F1 beats the baseline with p < 0.05:",
        "",
    ]
    for name in names:
        up = [arm for arm in labels if (d := delta(name, arm)) and d[1] and d[0] > 0]
        base = by_seed[name].get("baseline", {})
        ahead = [
            arm
            for arm in labels
            if (runs := by_seed[name].get(arm))
            and all(s in base and r["macro_f1"] > base[s]["macro_f1"] for s, r in runs.items())
        ]
        if up:
            lines.append(f"- {name}: " + ", ".join(up))
        else:
            lines.append(
                f"- {name}: **none reaches p < 0.05**; ahead of the baseline on every seed: "
                + (", ".join(ahead) if ahead else "none")
            )
    for key, title in (
        ("balanced_accuracy", "Balanced accuracy"),
        ("minority_recall", "Minority-class recall"),
    ):
        lines += [
            "",
            f"## {title}, change in points",
            "",
            "| technique | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        base = []
        for name in names:
            b = tables[name].get("baseline")
            base.append(f"{b[key]:.3f} ± {b[key + '_std']:.3f}" if b else "n/a")
        lines.append("| baseline (value) | " + " | ".join(base) + " |")
        for arm in labels:
            cells = []
            for name in names:
                d = delta(name, arm, key)
                cells.append("n/a" if d is None else f"{d[0]:+.1f}{d[1]}")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    # Across studies: the Friedman test over the techniques every study ran, and the
    # critical-difference diagram (Nemenyi) beside the summary
    scores = {
        name: {arm: a["macro_f1"] for arm, a in tables[name].items() if not a.get("posthoc")}
        for name in names
    }
    try:
        from imgbalance.experiments.across import plot_critical_difference

        cd = plot_critical_difference(scores, args.out.with_name(args.out.name + "_cd.png"))
        ranked = sorted(cd["mean_ranks"].items(), key=lambda kv: kv[1])
        lines += [
            "",
            "## Ranks across studies",
            "",
            f"Friedman test over the {len(cd['techniques'])} techniques every study ran "
            f"({len(cd['studies'])} studies): chi2 = {cd['statistic']:.2f}, p = {cd['p']:.3g}. "
            "Mean rank of test macro-F1 (1 = best): "
            + ", ".join(f"{t} {r:.1f}" for t, r in ranked)
            + f". Diagram (Nemenyi post-hoc): `{args.out.name}_cd.png`.",
        ]
    except Exception as exc:  # fewer than 2 studies or 3 shared techniques, or no extra
        lines += ["", f"(No ranking across studies: {exc})"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    md = args.out.with_suffix(".md")
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lim = 10.0  # points; larger changes saturate the colour (the text still says)
    fig, ax = plt.subplots(figsize=(3.0 + 1.5 * len(names), 0.38 * len(labels) + 1.8))
    im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for i, arm in enumerate(labels):
        for j, name in enumerate(names):
            d = delta(name, arm)
            if d is not None:
                ax.text(j, i, f"{d[0]:+.1f}{d[1]}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_title(
        f"Test macro-F1 minus baseline, points\n({args.model}; Holm-corrected * p<0.05, ** p<0.01)"
    )
    fig.colorbar(im, ax=ax, shrink=0.6)
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=120)
    print(md.read_text())


if __name__ == "__main__":
    main()
