"""``imgbalance report RUNS_DIR``: results.csv, report.md, a self-contained report.html.

A row per run in ``results.csv``; per technique (arm x model) the mean and
standard deviation over seeds, the difference to the baseline arm of the same
model, and a paired t-test over the seeds both have (``*`` p < 0.05, ``**``
p < 0.01; a simple indication, not a correction for many comparisons). Plots:
macro-F1 per technique with error bars, per-class recall (technique x class),
per-class recall change against the baseline, and minority-class recall.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .._fs import atomic_write_text
from ..errors import ImgBalanceError
from ..reports.plotting import pyplot, save_figure

__all__ = ["collect_runs", "write_report"]

METRICS = ("macro_f1", "balanced_accuracy", "minority_recall", "accuracy", "gmean", "ece")
LABELS = {
    "macro_f1": "macro-F1",
    "balanced_accuracy": "balanced acc.",
    "minority_recall": "minority recall",
    "accuracy": "accuracy",
    "gmean": "G-mean",
    "ece": "ECE",
    "posthoc_la_macro_f1": "+ post-hoc LA",
    "threshold_macro_f1": "+ thresholds",
}
LOWER_IS_BETTER = {"ece"}
_NOT_RUNS = {"mlflow-artifacts", "wandb"}  # tracker folders beside the runs


def _arm_of(run_id: str) -> tuple[str, str]:
    parts = run_id.split("__")
    return (parts[0], parts[1]) if len(parts) >= 3 else (run_id, "")


def collect_runs(runs_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """A flat row per run folder (completed or failed), and the class names."""
    rows: list[dict[str, Any]] = []
    classes: list[str] = []
    for folder in sorted(
        p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("_")
    ):
        summary_file, error_file = folder / "experiment_summary.json", folder / "error.json"
        arm, model = _arm_of(folder.name)
        if summary_file.is_file():
            s = json.loads(summary_file.read_text(encoding="utf-8"))
            cfg = s["config"]
            classes = classes or s["classes"]
            m = s["final_metrics"]
            stats_file = folder / "dataset_statistics.json"
            train_counts = (
                json.loads(stats_file.read_text())["train"]["counts"]
                if stats_file.is_file()
                else {}
            )
            top = max(train_counts.values(), default=0)
            minority = [c for c, n in train_counts.items() if 0 < n < 0.5 * top]
            recalls = {c: m["per_class"][c]["recall"] for c in s["classes"]}
            present = [c for c in minority if m["per_class"][c]["support"] > 0]
            row: dict[str, Any] = {
                "run": folder.name,
                "arm": arm,
                "model": cfg["model"] or model,
                "seed": cfg["seed"],
                "status": "completed",
                "technique": cfg["technique"],
                "loss": cfg["loss"],
                "sampler": cfg["sampler"],
                "mixing": cfg["mixing"],
                "ensemble": cfg["ensemble"],
                "macro_f1": m["macro_f1"],
                "balanced_accuracy": m["balanced_accuracy"],
                "minority_recall": (
                    float(np.mean([recalls[c] for c in present])) if present else None
                ),
                "accuracy": m["accuracy"],
                "gmean": m["gmean"],
                "weighted_f1": m["weighted_f1"],
                "ece": m["ece"],
                "posthoc_la_macro_f1": s["posthoc"]["logit_adjustment"]["macro_f1"],
                "threshold_macro_f1": s["posthoc"]["threshold_moving"]["macro_f1"],
                "val_macro_f1": s["val_metrics"]["macro_f1"],
                "val_test_gap_macro_f1": s["val_test_gap"]["macro_f1"],
                "best_epoch": json.dumps(s["best_epoch"]),
                "epochs_run": s["epochs_run"],
                "train_size_before": s["train_size_before"],
                "train_size_after": s["train_size_after"],
                "training_time_s": s["training_time_s"],
                "minority_classes": ";".join(minority),
                "error": "",
                **{f"recall:{c}": r for c, r in recalls.items()},
            }
            rows.append(row)
        elif error_file.is_file():
            e = json.loads(error_file.read_text(encoding="utf-8"))
            rows.append({"run": folder.name, "arm": arm, "model": model, "seed": None,
                         "status": "failed", "error": e.get("error", "")})  # fmt: skip
    if not rows:
        raise ImgBalanceError(
            f'"{runs_dir}" has no run folders with experiment_summary.json or error.json. '
            "Run `imgbalance experiment GRID.yaml --out DIR` first."
        )
    return rows, classes


def _present(x: Any) -> bool:
    """A metric that was measured: not None and not NaN."""
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _mean_std(values: list[Any]) -> tuple[float, float]:
    v = [x for x in values if _present(x)]
    if not v:
        return float("nan"), float("nan")
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def aggregate(
    rows: list[dict[str, Any]], run_order: list[str] | None = None
) -> list[dict[str, Any]]:
    """Mean, std, delta vs the model's baseline arm and a paired t-test, per arm x model.

    Techniques come in the grid's order (``run_order``: run ids), baselines first.
    """
    done = [r for r in rows if r["status"] == "completed"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in done:
        groups[(r["arm"], r["model"])].append(r)
    out = []
    rank = {run: i for i, run in enumerate(run_order or [])}
    ordered = sorted(done, key=lambda r: (r["arm"] != "baseline", rank.get(r["run"], len(rank))))
    order = list(dict.fromkeys((r["arm"], r["model"]) for r in ordered))
    for arm, model in order:
        runs = groups[(arm, model)]
        base = {r["seed"]: r for r in groups.get(("baseline", model), [])}
        agg: dict[str, Any] = {"arm": arm, "model": model, "seeds": len(runs)}
        for key in (*METRICS, "posthoc_la_macro_f1", "threshold_macro_f1", "training_time_s"):
            mean, std = _mean_std([r.get(key) for r in runs])
            agg[key], agg[f"{key}_std"] = mean, std
            if arm != "baseline" and base:
                pairs = [
                    (r[key], base[r["seed"]][key])
                    for r in runs
                    if r["seed"] in base
                    and _present(r.get(key))
                    and _present(base[r["seed"]].get(key))
                ]  # the mean and the pairs skip the same missing values
                if pairs:
                    delta, wins, p = paired_difference(pairs)
                    agg[f"{key}_delta"], agg[f"{key}_wins"], agg[f"{key}_p"] = delta, wins, p
        out.append(agg)
    return out


def paired_difference(pairs: list[tuple[float, float]]) -> tuple[float, str, float]:
    """``(mean of a - b, "wins/n" of a over b, paired t-test p)`` over ``(a, b)`` pairs
    (one per seed); p is NaN under 3 pairs or when every difference is the same."""
    from scipy import stats

    if not pairs:
        raise ValueError("paired_difference needs at least one (a, b) pair")
    a, b = np.array(pairs, dtype=float).T
    p = float("nan")
    if len(a) >= 3 and np.ptp(a - b) > 1e-12:  # a t-test needs spread
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_rel(a, b).pvalue)
    return float(np.mean(a - b)), f"{int((a > b).sum())}/{len(a)}", p


def _stars(p: float | None) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


def _stat(agg: dict[str, Any], key: str) -> tuple[float, float, float | None, str] | None:
    """``(mean, std, delta vs baseline or None, significance stars)``; None when missing."""
    mean = agg.get(key)
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return None
    return mean, agg[f"{key}_std"], agg.get(f"{key}_delta"), _stars(agg.get(f"{key}_p"))


def _cell(agg: dict[str, Any], key: str) -> str:
    stat = _stat(agg, key)
    if stat is None:
        return "n/a"
    mean, std, delta, stars = stat
    text = f"{mean:.3f} ± {std:.3f}"
    return text if delta is None else text + f" ({delta:+.3f}{stars})"


def _html_cell(agg: dict[str, Any], key: str) -> str:
    """Mean ± std, and the change against the baseline on a second, smaller line."""
    stat = _stat(agg, key)
    if stat is None:
        return "n/a"
    mean, std, delta, stars = stat
    text = f"{mean:.3f} <small>± {std:.3f}</small>"
    if delta is not None:
        better = delta < 0 if key in LOWER_IS_BETTER else delta > 0
        cls = "" if abs(delta) < 1e-12 else (" class='up'" if better else " class='down'")
        text += f"<br><small{cls}>Δ {delta:+.3f}{html.escape(stars)}</small>"
    return text


def _best(aggs: list[dict[str, Any]], key: str) -> set[int]:
    vals: list[tuple[int, float]] = [
        (i, float(a[key])) for i, a in enumerate(aggs) if a.get(key) is not None
    ]
    vals = [(i, v) for i, v in vals if not math.isnan(v)]
    if not vals:
        return set()
    if len(vals) < 2 or max(v for _, v in vals) - min(v for _, v in vals) < 1e-12:
        return set()  # a tie everywhere singles out nothing
    target = (min if key in LOWER_IS_BETTER else max)(v for _, v in vals)
    return {i for i, v in vals if abs(v - target) < 1e-12}


# -- plots ------------------------------------------------------------------------------


def _png(fig: Any, path: Path) -> str:
    save_figure(fig, path)
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _label(a: dict[str, Any], models: set[str]) -> str:
    return a["arm"] if len(models) == 1 else f"{a['arm']} ({a['model']})"


def _plots(
    aggs: list[dict[str, Any]], rows: list[dict[str, Any]], classes: list[str], out: Path
) -> dict[str, str]:
    plt = pyplot()
    models = {a["model"] for a in aggs}
    labels = [_label(a, models) for a in aggs]
    images: dict[str, str] = {}
    h = max(3.0, 0.32 * len(aggs) + 1.2)
    fig, axes = plt.subplots(1, 2, figsize=(11, h), sharey=True)
    for ax, key in zip(axes, ("macro_f1", "minority_recall"), strict=True):
        means = [a[key] for a in aggs]
        stds = [a[f"{key}_std"] for a in aggs]
        colours = ["#8C8C8C" if a["arm"] == "baseline" else "#4C72B0" for a in aggs]
        y = np.arange(len(aggs))
        ax.barh(y, np.nan_to_num(means), xerr=np.nan_to_num(stds), color=colours, capsize=3)
        for a in aggs:
            if a["arm"] == "baseline" and not math.isnan(a[key]):
                ax.axvline(a[key], color="#8C8C8C", ls="--", lw=1)
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_title(f"test {LABELS[key]} (mean ± std over seeds)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].invert_yaxis()  # shared: once for both, so the first technique is on top
    fig.tight_layout()
    images["macro_f1"] = _png(fig, out / "macro_f1_by_technique.png")
    done = [r for r in rows if r["status"] == "completed"]
    recall = np.array(
        [
            [
                np.mean(
                    [
                        r[f"recall:{c}"]
                        for r in done
                        if (r["arm"], r["model"]) == (a["arm"], a["model"])
                    ]
                )
                for c in classes
            ]
            for a in aggs
        ]
    )
    width = max(5.0, 0.7 * len(classes) + 3)
    fig, ax = plt.subplots(figsize=(width, h))
    im = ax.imshow(recall, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(aggs)), labels, fontsize=8)
    for i in range(recall.shape[0]):
        for j in range(recall.shape[1]):
            ax.text(j, i, f"{recall[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if recall[i, j] < 0.6 else "black")  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title("test recall per class (mean over seeds)", fontsize=9)
    fig.tight_layout()
    images["recall"] = _png(fig, out / "per_class_recall.png")
    base_idx = {a["model"]: i for i, a in enumerate(aggs) if a["arm"] == "baseline"}
    compared = [i for i, a in enumerate(aggs) if a["model"] in base_idx and a["arm"] != "baseline"]
    if compared:
        delta = np.array([recall[i] - recall[base_idx[aggs[i]["model"]]] for i in compared])
        delta_labels = [labels[i] for i in compared]
        h = max(3.0, 0.32 * len(compared) + 1.2)
        lim = max(0.05, float(np.nanmax(np.abs(delta))) if np.isfinite(delta).any() else 0.05)
        fig, ax = plt.subplots(figsize=(width, h))
        im = ax.imshow(delta, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(compared)), delta_labels, fontsize=8)
        for i in range(delta.shape[0]):
            for j in range(delta.shape[1]):
                if not math.isnan(delta[i, j]):
                    ax.text(j, i, f"{delta[i, j]:+.2f}", ha="center", va="center", fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.04)
        ax.set_title("recall change per class against the baseline (mean over seeds)", fontsize=9)
        fig.tight_layout()
        images["improvement"] = _png(fig, out / "per_class_improvement.png")
    return images


# -- writing ----------------------------------------------------------------------------


def _write_results_csv(rows: list[dict[str, Any]], path: Path) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r.get(k) for k in keys})
    atomic_write_text(path, buf.getvalue())


def write_report(runs_dir: str | os.PathLike[str], title: str | None = None) -> dict[str, Path]:
    """Collect the runs in ``runs_dir`` and write results.csv, report.md and report.html."""
    runs_dir = Path(runs_dir)
    rows, classes = collect_runs(runs_dir)
    _write_results_csv(rows, runs_dir / "results.csv")
    grid_file = runs_dir / "grid.json"
    grid = json.loads(grid_file.read_text()) if grid_file.is_file() else {}
    aggs = aggregate(rows, grid.get("runs"))
    title = title or f"imgbalance report: {grid.get('name', runs_dir.name)}"
    images = _plots(aggs, rows, classes, runs_dir) if aggs else {}
    failed = [r for r in rows if r["status"] == "failed"]
    cols = (*METRICS, "posthoc_la_macro_f1", "threshold_macro_f1")
    best = {k: _best(aggs, k) for k in cols}
    models = {a["model"] for a in aggs}
    baseline_best = _no_gain_lines(aggs)
    # markdown
    md = [f"# {title}", ""]
    md.append(
        f"{len(rows) - len(failed)} completed runs, {len(failed)} failed; test-split metrics, "
        "mean ± std over seeds; in brackets the difference to the baseline of the same model "
        "with a paired t-test over seeds (* p < 0.05, ** p < 0.01). Best value per column in "
        "bold. `+ post-hoc LA` and `+ thresholds` are the same models with post-hoc logit "
        "adjustment and validation-tuned class thresholds."
    )
    md.append("")
    header = ["technique", "seeds", *[LABELS[k] for k in cols], "train s"]
    md.append("| " + " | ".join(header) + " |")
    md.append("|" + "---|" * len(header))
    for i, a in enumerate(aggs):
        cells = [_label(a, models), str(a["seeds"])]
        for k in cols:
            c = _cell(a, k)
            cells.append(f"**{c}**" if i in best[k] else c)
        cells.append(f"{a['training_time_s']:.0f}")
        md.append("| " + " | ".join(cells) + " |")
    md.append("")
    md += baseline_best
    if failed:
        md += ["", "## Failed runs", ""]
        md += [f"- `{r['run']}`: {r['error']}" for r in failed]
    md += ["", "## Plots", ""]
    names = {
        "macro_f1": "macro_f1_by_technique.png",
        "recall": "per_class_recall.png",
        "improvement": "per_class_improvement.png",
    }
    md += [f"![{k}]({names[k]})" for k in images]
    md += ["", "Every number comes from `results.csv` (a row per run) in this folder.", ""]
    atomic_write_text(runs_dir / "report.md", "\n".join(md))
    # html (self-contained: images inlined)
    esc = html.escape
    trs = []
    for i, a in enumerate(aggs):
        tds = [f"<td class='name'>{esc(_label(a, models))}</td><td>{a['seeds']}</td>"]
        for k in cols:
            cls = " class='best'" if i in best[k] else ""
            tds.append(f"<td{cls}>{_html_cell(a, k)}</td>")
        tds.append(f"<td>{a['training_time_s']:.0f}</td>")
        row_cls = " class='baseline'" if a["arm"] == "baseline" else ""
        trs.append(f"<tr{row_cls}>{''.join(tds)}</tr>")
    failed_html = (
        "<h2>Failed runs</h2><ul>"
        + "".join(f"<li><code>{esc(r['run'])}</code>: {esc(r['error'])}</li>" for r in failed)
        + "</ul>"
        if failed
        else ""
    )
    imgs = "".join(
        f"<figure><img alt='{k}' src='data:image/png;base64,{b64}'></figure>"
        for k, b64 in images.items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #222;
  max-width: 1200px; }}
table {{ border-collapse: collapse; font-size: 0.8rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.3rem 0.5rem; text-align: right;
  white-space: nowrap; vertical-align: top; }}
td small {{ color: #666; }} td small.up {{ color: #1a7f37; }} td small.down {{ color: #b42318; }}
th {{ background: #f3f3f3; }}
td.name {{ text-align: left; font-weight: 600; }}
td.best {{ font-weight: 700; background: #e6f2e6; }}
tr.baseline td {{ background: #f7f7f7; }}
figure {{ margin: 1.5rem 0; }} img {{ max-width: 100%; }}
p.note {{ color: #555; font-size: 0.9rem; max-width: 60rem; }}
</style></head><body>
<h1>{esc(title)}</h1>
<p class="note">{esc(md[2].replace("`", "").replace("in brackets", "under each value (Δ)"))}</p>
<table><thead><tr>{"".join(f"<th>{esc(h)}</th>" for h in header)}</tr></thead>
<tbody>{"".join(trs)}</tbody></table>
{"".join(f"<p class='note'>{esc(line.lstrip('- '))}</p>" for line in baseline_best)}
{failed_html}
{imgs}
<p class="note">Every number comes from results.csv (a row per run) beside this file.</p>
</body></html>
"""
    atomic_write_text(runs_dir / "report.html", page)
    return {
        "results": runs_dir / "results.csv",
        "markdown": runs_dir / "report.md",
        "html": runs_dir / "report.html",
    }


def _no_gain_lines(aggs: list[dict[str, Any]]) -> list[str]:
    """Plain statements: for each model, which techniques beat the baseline significantly."""
    lines = []
    for model in dict.fromkeys(a["model"] for a in aggs):
        others = [a for a in aggs if a["model"] == model and a["arm"] != "baseline"]
        if not others or not any(a["arm"] == "baseline" and a["model"] == model for a in aggs):
            continue
        sig = [
            a["arm"]
            for a in others
            if a.get("macro_f1_delta", 0) > 0 and _stars(a.get("macro_f1_p")) != ""
        ]
        if sig:
            lines.append(
                f"- {model}: significantly above the baseline in macro-F1 (p < 0.05): "
                + ", ".join(sig)
                + "."
            )
        else:
            lines.append(
                f"- {model}: no technique beats the baseline in macro-F1 with p < 0.05 over "
                "these seeds."
            )
    return lines
