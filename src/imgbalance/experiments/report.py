"""``imgbalance report RUNS_DIR``: results.csv, report.md, a self-contained report.html,
and ``verdict.json``.

A row per run in ``results.csv``. Per technique (arm x model): the mean and standard
deviation over its runs and, against the baseline arm of the same model, the mean
paired difference with its 95% interval, a p-value, and Holm's correction
over the techniques compared (see :mod:`imgbalance.experiments.stats`). The verdict
states in words which techniques are better, which worse and which cannot be told
apart from the baseline, with the protocol the numbers rest on and a warning for
every class with too few test images.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._fs import atomic_write_text, output_faults
from .._tables import nan_to_none
from .report_plots import FIGURES, label_of, report_plots
from .results import (
    LABELS,
    LOWER_IS_BETTER,
    METRICS,
    MIN_EVAL_IMAGES,
    aggregate,
    collect_runs,
    failed_techniques,
    only_whole_splits,
    protocol,
    small_class_warnings,
    unpaired_warnings,
)
from .stats import BETTER, FEW, SAME, SINGLE, WORSE

__all__ = ["verdict_lines", "write_report"]

_COLUMNS = (*METRICS, "nll", "brier")
BEST = " class='best'"


def _fmt_p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.3f}" if p >= 0.001 else "< 0.001"


def _primary(a: dict[str, Any]) -> str:
    """The metric a technique's verdict is read on."""
    return "balanced_accuracy" if a["arm"] == "baseline + post-hoc LA" else "macro_f1"


def _ci(a: dict[str, Any], key: str, scale: float = 1.0, digits: int = 3) -> str:
    """The interval of ``key``'s change, or why there is none."""
    lo, hi = a.get(f"{key}_ci_low", math.nan), a.get(f"{key}_ci_high", math.nan)
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return "no spread" if a.get(f"{key}_units", 0) > 1 else "one unit"
    return f"{scale * lo:+.{digits}f}, {scale * hi:+.{digits}f}"


def _change(a: dict[str, Any], key: str) -> str:
    d = 100 * a[f"{key}_delta"]
    ci = _ci(a, key, 100, 1).replace(", ", " to ")
    return f"{d:+.1f} points of {LABELS[key]} [95% CI {ci}]"


def _runs(n: int) -> str:
    return "its run" if n == 1 else f"all {n} of its runs"


def _short(text: str, most: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= most else text[: most - 1].rstrip() + "…"


def verdict_lines(
    aggs: list[dict[str, Any]], proto: dict[str, Any], failed: Sequence[dict[str, Any]] = ()
) -> list[str]:
    """The verdict in plain words, one paragraph per model. ``failed``: the techniques
    none of whose runs completed (:func:`.results.failed_techniques`), said, since they
    are not among those compared."""
    lines = []
    for model in dict.fromkeys([*(a["model"] for a in aggs), *(f["model"] for f in failed)]):
        lost = [
            f"{f['arm']} failed in {_runs(f['runs'])} and is not compared (first error: "
            f"{_short(f['error']) or 'not recorded'}; see Failed runs)."
            for f in failed
            if f["model"] == model
        ]
        others = [a for a in aggs if a["model"] == model and f"{_primary(a)}_delta" in a]
        if not others:
            if lost:
                lines.append(" ".join([f"{model}:", *lost]))
            continue
        units = {a[f"{_primary(a)}_unit"] for a in others}
        n = max(a[f"{_primary(a)}_units"] for a in others)
        if "split" in units:
            over = f"over {n} repeated splits"
        else:
            over = "on one split" if n == 1 else f"over {n} seeds of one split"
        by: dict[str, list[dict[str, Any]]] = {
            BETTER: [], WORSE: [], SAME: [], SINGLE: [], FEW: []
        }  # fmt: skip
        for a in others:
            by[a[f"{_primary(a)}_status"]].append(a)
        parts = [f"{model}, {over}:"]
        for a in by[BETTER]:
            k = _primary(a)
            parts.append(
                f"{a['arm']} beats no balancing by {_change(a, k)} "
                f"(Holm-corrected p = {_fmt_p(a[f'{k}_p_holm'])})."
            )
        if not by[BETTER]:
            parts.append(
                f"no technique beats the baseline after Holm's correction over the "
                f"{len(others)} compared."
            )
        for a in by[WORSE]:
            k = _primary(a)
            parts.append(
                f"{a['arm']} is significantly worse: {_change(a, k)} "
                f"(Holm-corrected p = {_fmt_p(a[f'{k}_p_holm'])})."
            )
        for a in by[FEW]:
            k = _primary(a)
            parts.append(
                f"{a['arm']}: {_change(a, k)} (Holm-corrected p = {_fmt_p(a[f'{k}_p_holm'])}) "
                f"is no verdict: {a[f'{k}_few']}, so the difference can be one or two images. "
                "Collect more test images of it (or merge it with a related class) before "
                "trusting it."
            )
        if by[SAME]:
            names = ", ".join(a["arm"] for a in by[SAME])
            verb = "is" if len(by[SAME]) == 1 else "are"
            parts.append(f"{names} {verb} indistinguishable from the baseline on this data.")
        for a in by[SINGLE]:
            k = _primary(a)
            parts.append(
                f"{a['arm']}: {100 * a[f'{k}_delta']:+.1f} points of {LABELS[k]} from a single "
                "measurement (one pair of runs with the baseline, or seeds that all gave the "
                "same result): no uncertainty can be given; use more splits or seeds."
            )
        lines.append(" ".join([*parts, *lost]))
    if not lines and not any(a["arm"] == "baseline" for a in aggs):
        lines.append(
            f"No arm is named baseline, so there is nothing to compare with: every technique "
            f"is compared with the grid's arm called baseline (arms here: "
            f"{', '.join(dict.fromkeys(a['arm'] for a in aggs))}). Rename the reference arm "
            f"baseline in the grid; finished runs are kept when the folders are renamed alike."
        )
    elif not lines:
        lines.append(
            "Nothing to compare yet: no technique has a run paired with the baseline's (a "
            "comparison stopped before its first whole split resumes with the same command)."
        )
    elif proto["splits"] == 1:
        lines.append(
            "All runs share one split: the intervals measure training randomness only, not "
            "which images landed in the test split. Repeated splits (`splits:` in the grid, "
            "or `imgbalance compare`) measure both."
        )
    return lines


def _protocol_text(proto: dict[str, Any], aggs: list[dict[str, Any]]) -> str:
    tests = sorted({a[f"{k}_test"] for a in aggs for k in ("macro_f1",) if f"{k}_test" in a} - {""})
    seeds = proto["seeds"]
    steps = (
        f"; optimiser steps per run {proto['steps_min']} to {proto['steps_max']}"
        if proto["steps_min"] is not None
        else ""
    )
    return (
        f"Protocol: {proto['runs']} runs over {proto['splits']} split(s) and "
        f"{len(seeds)} seed(s) {seeds}; model selection: "
        f"{', '.join(proto['selection']) or 'not recorded'}{steps}. Test-split metrics, "
        "mean ± std over runs. Δ is the mean paired difference to the baseline of the same "
        "model (runs paired by split and seed, seeds averaged within a split) with its 95% "
        "interval (a t-interval on the variance the test uses; the percentile bootstrap "
        f"interval is in verdict.json); p from {', '.join(tests) or 'no test'}; Holm's "
        "correction over "
        "the techniques of each model, per metric; ↑ / ↓ mark a difference that is "
        "significant after it (alpha = 0.05), and none is marked while a class has fewer "
        f"than {MIN_EVAL_IMAGES} test images (every compared metric averages over the "
        "classes, so it rests on them); intervals are cut to the possible range, "
        "[-1, +1]. The verdict reads each technique on one metric, macro-F1 (balanced "
        "accuracy for post-hoc LA), while the table marks every metric, each corrected on "
        "its own: a mark on another metric is not the verdict, and the two can differ. "
        "'baseline + post-hoc LA' and 'baseline + "
        "thresholds' are the baseline's models with post-hoc logit adjustment (read on "
        "balanced accuracy, the error it targets) and validation-tuned class thresholds."
    )


def _plan_text(runs_dir: Path) -> str:
    """What ``imgbalance compare`` decided (its ``compare.json`` beside the runs), in
    words, or empty for runs of another origin or a plan that cannot be read."""
    try:
        plan = json.loads((runs_dir / "compare.json").read_text(encoding="utf-8"))
        steps = (plan.get("defaults") or {}).get("max_steps")
        budget = plan.get("budget_s")
        text = (
            f"Planned by imgbalance compare (compare.json): {int(plan['repeats'])} repeated "
            f"splits (validation {float(plan['val']):.0%}, test {float(plan['test']):.0%}, "
            f"seed {plan['seed']}), model {plan['model']} at {plan['image_size']} px"
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""
    text += f", every arm trained for {steps} optimiser steps" if steps else ""
    text += f"; time budget {float(budget) / 60:.0f} min" if budget else "; no time budget"
    notes = [str(n) for n in plan.get("notes") or []]  # the classes left out among them
    return text + (f"; decisions: {'; '.join(notes)}." if notes else ".")


def _mark(a: dict[str, Any], key: str) -> str:
    return {BETTER: "↑", WORSE: "↓"}.get(a.get(f"{key}_status", ""), "")


def _spread(a: dict[str, Any], key: str) -> str:
    """`` ± std``, or nothing for a single run (one value has no spread to show)."""
    std = a.get(f"{key}_std")
    return "" if std is None or math.isnan(std) else f" ± {std:.3f}"


def _cell(a: dict[str, Any], key: str) -> str:
    mean = a.get(key)
    if mean is None or math.isnan(mean):
        return "n/a"
    text = f"{mean:.3f}{_spread(a, key)}"
    if f"{key}_delta" in a:
        text += f" (Δ {a[f'{key}_delta']:+.3f} [{_ci(a, key)}]{_mark(a, key)})"
    return text


def _html_cell(a: dict[str, Any], key: str) -> str:
    mean = a.get(key)
    if mean is None or math.isnan(mean):
        return "n/a"
    spread = _spread(a, key)
    text = f"{mean:.3f}" + (f" <small>{spread.strip()}</small>" if spread else "")
    if f"{key}_delta" in a:
        status = a.get(f"{key}_status", "")
        cls = {BETTER: " class='up'", WORSE: " class='down'"}.get(status, "")
        text += f"<br><small{cls}>Δ {a[f'{key}_delta']:+.3f} [{_ci(a, key)}]{_mark(a, key)}</small>"
    return text


def _best(aggs: list[dict[str, Any]], key: str) -> set[int]:
    vals = [(i, float(a[key])) for i, a in enumerate(aggs) if a.get(key) is not None]
    vals = [(i, v) for i, v in vals if not math.isnan(v)]
    if len(vals) < 2 or max(v for _, v in vals) - min(v for _, v in vals) < 1e-12:
        return set()  # a tie everywhere singles out nothing
    target = (min if key in LOWER_IS_BETTER else max)(v for _, v in vals)
    return {i for i, v in vals if abs(v - target) < 1e-12}


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


def _dataset_name(grid: dict[str, Any]) -> str | None:
    """The name of the image folder the grid's split was made from."""
    data = grid.get("dataset") or grid.get("data")
    if not data:
        return None
    summary = Path(str(data)) / "split_summary.json"
    try:
        root = json.loads(summary.read_text(encoding="utf-8"))["root"]
        return Path(str(root)).name
    except (OSError, ValueError, KeyError, TypeError):
        return Path(str(data)).name


def write_report(
    runs_dir: str | os.PathLike[str], title: str | None = None, *, whole_splits: bool = False
) -> dict[str, Path]:
    """Collect the runs in ``runs_dir`` and write results.csv, report.md, report.html and
    verdict.json. ``whole_splits`` leaves out of the statistics the splits on which not
    every technique finished (a comparison its budget cut short), so every technique is
    compared on the same splits; results.csv still lists every run."""
    runs_dir = Path(runs_dir)
    # a full disk, a read-only folder or a folder named like one of its files: one line
    with output_faults(runs_dir, "run the same command again: finished runs are kept"):
        return _write_report(runs_dir, title, whole_splits=whole_splits)


def _write_report(runs_dir: Path, title: str | None, *, whole_splits: bool) -> dict[str, Path]:
    rows, classes = collect_runs(runs_dir)
    _write_results_csv(rows, runs_dir / "results.csv")
    cut = ""
    if whole_splits:
        kept = only_whole_splits(rows)
        if len(kept) < len(rows):
            whole = len({r.get("split", "") for r in kept if r["status"] == "completed"})
            cut = (
                f" {len(rows) - len(kept)} run(s) on splits where not every technique finished "
                f"(the time ran out) are left out of the statistics, so every technique is "
                f"compared on the same {whole} split(s); results.csv lists them."
            )
        rows = kept
    grid_file = runs_dir / "grid.json"
    try:
        grid = json.loads(grid_file.read_text(encoding="utf-8")) if grid_file.is_file() else {}
    except (OSError, ValueError):
        grid = {}
    grid = grid if isinstance(grid, dict) else {}
    runs = grid.get("runs")
    aggs = aggregate(rows, [str(r) for r in runs] if isinstance(runs, list) else None)
    proto = protocol(rows)
    dataset = _dataset_name(grid)
    name = grid.get("name", runs_dir.name)
    if title is None:
        title = f"imgbalance report: {dataset} ({name})" if dataset else f"report: {name}"
        title = title if dataset else f"imgbalance {title}"
    images = report_plots(aggs, rows, classes, runs_dir) if aggs else {}
    failed = [r for r in rows if r["status"] == "failed"]
    best = {k: _best(aggs, k) for k in _COLUMNS}
    cols = [k for k in _COLUMNS if any(not math.isnan(a.get(k, math.nan)) for a in aggs)]
    models = {a["model"] for a in aggs}
    verdict = verdict_lines(aggs, proto, failed_techniques(rows))
    warn = small_class_warnings(rows, classes) + unpaired_warnings(aggs)
    note = " ".join(t for t in (_plan_text(runs_dir), _protocol_text(proto, aggs) + cut) if t)
    header = ["technique", "runs", *[LABELS[k] for k in cols], "train s"]

    def train_s(a: dict[str, Any]) -> str:
        t = a.get("training_time_s", math.nan)
        return "" if a.get("posthoc") or math.isnan(t) else f"{t:.0f}"

    md = [f"# {title}", "", "## Verdict", "", *verdict, ""]
    if warn:
        md += ["**Warnings**", "", *[f"- {w}" for w in warn], ""]
    md += ["## Results", "", note, ""]
    md.append("| " + " | ".join(header) + " |")
    md.append("|" + "---|" * len(header))
    for i, a in enumerate(aggs):
        cells = [label_of(a, models), str(a["runs"])]
        cells += [f"**{_cell(a, k)}**" if i in best[k] else _cell(a, k) for k in cols]
        md.append("| " + " | ".join([*cells, train_s(a)]) + " |")
    if failed:
        md += ["", "## Failed runs", ""]
        md += [f"- `{r['run']}`: {r['error']}" for r in failed]
    md += ["", "## Plots", "", *[f"![{k}]({FIGURES[k]})" for k in images]]
    md += ["", "Every number comes from `results.csv` (a row per run) in this folder.", ""]
    atomic_write_text(runs_dir / "report.md", "\n".join(md))
    atomic_write_text(
        runs_dir / "verdict.json",
        json.dumps(
            nan_to_none({"title": title, "verdict": verdict, "warnings": warn,
                        "protocol": proto, "techniques": aggs}),
            indent=2,
            ensure_ascii=False,
        )
        + "\n",
    )  # fmt: skip
    esc = html.escape
    trs = []
    for i, a in enumerate(aggs):
        tds = [f"<td class='name'>{esc(label_of(a, models))}</td><td>{a['runs']}</td>"]
        tds += [f"<td{BEST if i in best[k] else ''}>{_html_cell(a, k)}</td>" for k in cols]
        tds.append(f"<td>{train_s(a)}</td>")
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
    warn_html = "".join(f"<p class='warn'>{esc(w)}</p>" for w in warn)
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
p.verdict {{ font-size: 1rem; max-width: 60rem; }}
p.warn {{ color: #8a4b00; background: #fff4e0; padding: 0.4rem; max-width: 60rem; }}
</style></head><body>
<h1>{esc(title)}</h1>
<h2>Verdict</h2>
{"".join(f"<p class='verdict'>{esc(line.replace('`', ''))}</p>" for line in verdict)}
{warn_html}
<h2>Results</h2>
<p class="note">{esc(note)}</p>
<table><thead><tr>{"".join(f"<th>{esc(h)}</th>" for h in header)}</tr></thead>
<tbody>{"".join(trs)}</tbody></table>
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
        "verdict": runs_dir / "verdict.json",
    }
