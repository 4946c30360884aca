"""Human-readable outputs of ``balance``: summary text, preview and before/after chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..dataset.catalog import ratios
from ..dataset.images import load_image
from ..rendering.outputs import parse_list
from .plotting import pyplot, save_figure
from .sheet import Panel, contact_sheet, save_sheet

if TYPE_CHECKING:
    from ..planning.recipes import Plan
    from ..rendering.outputs import BalanceResult

__all__ = ["class_breakdown", "plot_balance", "summary_text"]


#: how a pipeline's target reads when the user gave none (each step uses its own)
STEP_DEFAULTS = "each step's default"


def _dist(title: str, counts: dict[str, int]) -> list[str]:
    total = sum(counts.values())
    r = ratios(counts)
    lines = [title]
    for c, n in counts.items():
        lines.append(f"  {c:30s} {n:7d}  ({n / total:6.1%})" if total else f"  {c:30s} {n:7d}")
    if r["balance_ratio"] is not None:
        lines.append(
            f"  total {total}; balance_ratio min/max = {r['balance_ratio']:.4f}; "
            f"imbalance_ratio max/min = {r['imbalance_ratio']:.2f}"
        )
    return lines


def summary_text(result: BalanceResult) -> str:
    """The text of ``balance_summary.txt``: distributions before, per stage and after."""
    p = result.plan
    cfg = p.config
    lines = [
        "imgbalance balance summary",
        "=" * 26,
        f"source:   {cfg.get('source')}",
        f"method:   {cfg.get('method')}",
        f"target:   {STEP_DEFAULTS if cfg.get('target') is None else cfg.get('target')}",
        f"seed:     {cfg.get('seed')}",
        f"features: {cfg.get('features')}",
        "",
    ]
    lines += _dist("Initial distribution:", p.counts_before())
    for step in p.log:
        if step.get("stage") == "after_smote_enn":
            lines += [
                "",
                f"After SMOTE-ENN ({step.get('iterations')} iteration(s); "
                f"stopped: {step.get('stop')}):",
            ]
            lines += _dist("", step["after"])[1:]
    lines += ["", *_dist("Final distribution:", p.counts_after())]
    lines += ["", "Steps:"]
    for step in p.log:
        extra = {k: v for k, v in step.items() if k not in ("step", "before", "after")}
        delta = {
            c: step["after"][c] - step["before"][c]
            for c in step["after"]
            if step["after"][c] != step["before"][c]
        }
        lines.append(f"  {step['step']}: {delta or 'no change'}" + (f"  {extra}" if extra else ""))
    synth = sum(1 for row in result.manifest if row["origin"] == "synthetic")
    lines += [
        "",
        f"synthetic images: {synth}; originals removed: "
        f"{p.n_originals - len(p.kept)} of {p.n_originals}",
    ]
    if p.notes:
        lines += ["", "Notes:"] + [f"  - {n}" for n in p.notes]
    if p.left_out:
        lines += ["", f"Left out ({len(p.left_out)} file(s) of the input):"]
        lines += [f"  - {d['path']}: {d['reason']}" for d in p.left_out]
    if result.timings:
        lines += ["", "timings: " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items())]
    return "\n".join(lines) + "\n"


def class_breakdown(plan: Plan) -> dict[str, dict[str, int]]:
    """Per class: ``before`` (originals), ``kept`` (originals in the output), ``new``
    (synthetic images) and ``sources`` (the distinct originals the new images were made
    from): a class of 6 images balanced to 170 shows 6 sources, however many new images."""
    out = {c: {"before": 0, "kept": 0, "new": 0, "sources": 0} for c in plan.classes}
    for label in plan.original_labels:
        out[plan.classes[label]]["before"] += 1
    for i in plan.kept:
        out[plan.classes[plan.original_labels[i]]]["kept"] += 1
    sources: dict[str, set[int]] = {c: set() for c in plan.classes}
    for r in plan.recipes:
        out[plan.classes[r.label]]["new"] += 1
        sources[plan.classes[r.label]].update(r.parents)
    for c, parents in sources.items():
        out[c]["sources"] = len(parents)
    return out


def plot_balance(result: BalanceResult, out: Path, per_class: int = 2, seed: int = 0) -> None:
    """Write ``class_distribution.png`` and ``preview.png``. The distribution has a bar
    before and a bar after for each class. The after bar stacks the originals kept and the
    new images, labelled with how many distinct originals the new images came from."""
    plt = pyplot()
    p = result.plan
    parts = class_breakdown(p)
    order = sorted(p.classes, key=lambda c: (-parts[c]["before"], c))
    fig, ax = plt.subplots(figsize=(9, max(2.8, 0.46 * len(order) + 1.6)))
    y = np.arange(len(order))
    before = [parts[c]["before"] for c in order]
    kept = [parts[c]["kept"] for c in order]
    new = [parts[c]["new"] for c in order]
    ax.barh(y - 0.2, before, height=0.4, label="before", color="#4C72B0")
    ax.barh(y + 0.2, kept, height=0.4, label="after: originals kept", color="#55A868")
    ax.barh(y + 0.2, new, left=kept, height=0.4, label="after: new images", color="#B7E1C1",
            edgecolor="#55A868", hatch="//", linewidth=0.5)  # fmt: skip
    top = max([*before, *(k + n for k, n in zip(kept, new, strict=True)), 1])
    for yi, c in zip(y, order, strict=True):
        b = parts[c]
        ax.text(b["before"] + top * 0.01, yi - 0.2, str(b["before"]), va="center", fontsize=8)
        label = f"{b['kept'] + b['new']}"
        if b["new"]:
            label += f" ({b['kept']} + {b['new']} new, from {b['sources']} originals)"
        ax.text(b["kept"] + b["new"] + top * 0.01, yi + 0.2, label, va="center", fontsize=8)
    ax.set_yticks(y, labels=order)
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.6)
    ax.set_xlabel("images")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{p.config.get('method')}: before vs after", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "class_distribution.png")
    _plot_preview(result, out, per_class, seed)


def _caption(row: dict[str, str]) -> str:
    """Short title of a synthetic image: the op, and for augment what was done."""
    if row["op"] != "augment":
        return row["op"]
    p = json.loads(row["params"])
    bits = [n for n in ("hflip", "vflip") if p.get(n)]
    if p.get("quarter_turns"):
        bits.append(f"{90 * p['quarter_turns']}°")
    if p.get("angle"):
        bits.append(f"{p['angle']:+.0f}°")
    for key, short in (("brightness", "b"), ("contrast", "c"), ("saturation", "s")):
        if p.get(key, 1.0) != 1.0:
            bits.append(f"{short}{p[key]:.2f}")
    return " ".join(bits) or "augment"


def _plot_preview(
    result: BalanceResult, out: Path, per_class: int, seed: int, max_classes: int = 16
) -> None:
    """One row per class: ``per_class`` synthetic images (framed), each between its two
    main parents (by weight); a contact sheet (:mod:`.sheet`), not a chart."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[dict[str, str]]] = {}
    for row in result.manifest:
        if row["origin"] == "synthetic" and row["op"] != "copy":
            by_class.setdefault(row["class"], []).append(row)
    classes = [c for c in result.plan.classes if by_class.get(c)][:max_classes]
    if not classes:
        return
    root = Path(result.plan.config["source"])
    rows: list[tuple[str, list[Panel | None]]] = []
    for c in classes:
        items = by_class[c]
        picks = sorted(rng.choice(len(items), size=min(per_class, len(items)), replace=False))
        panels: list[Panel | None] = []
        for pick in picks:
            row = items[int(pick)]
            weights = [float(w) for w in parse_list(row["weights"])]
            main = sorted(zip(weights, parse_list(row["parents"]), strict=True), reverse=True)[:2]
            first = "parent" if len(main) == 1 else f"w={main[0][0]:.2f}"
            second = _thumb(root / main[1][1], f"w={main[1][0]:.2f}") if len(main) > 1 else None
            panels += [
                _thumb(root / main[0][1], first),
                _thumb(out / row["path"], _caption(row), framed=True),
                second,
            ]
        rows.append((c if len(c) <= 16 else c[:15] + "…", panels))
    title = (
        "synthetic images (framed) beside their parents (two main parents of a blend, by weight)"
    )
    save_sheet(contact_sheet(rows, title), out / "preview.png")


def _thumb(path: Path, caption: str, framed: bool = False) -> Panel:
    im = load_image(path, draft=(256, 256))
    im.thumbnail((128, 128))
    return Panel(im, caption, framed)
