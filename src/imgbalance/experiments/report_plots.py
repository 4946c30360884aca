"""The figures of ``imgbalance report``: the change against the baseline with its
interval per technique, per-class recall, and the per-class change in recall."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..reports.plotting import pyplot, save_figure
from .stats import BETTER, WORSE

__all__ = ["FIGURES", "report_plots"]

#: figure key -> file name in the runs folder
FIGURES = {
    "change": "change_vs_baseline.png",
    "recall": "per_class_recall.png",
    "improvement": "per_class_improvement.png",
}
_COLOURS = {BETTER: "#1a7f37", WORSE: "#b42318"}


def _png(fig: Any, path: Path) -> str:
    save_figure(fig, path)
    return base64.b64encode(path.read_bytes()).decode("ascii")


def label_of(a: dict[str, Any], models: set[str]) -> str:
    return a["arm"] if len(models) == 1 else f"{a['arm']} ({a['model']})"


def report_plots(
    aggs: list[dict[str, Any]], rows: list[dict[str, Any]], classes: list[str], out: Path
) -> dict[str, str]:
    """Write the report's figures into ``out``; returns them base64-encoded by key."""
    plt = pyplot()
    models = {a["model"] for a in aggs}
    images: dict[str, str] = {}
    compared = [a for a in aggs if "macro_f1_delta" in a]
    if compared:
        fig, axes = plt.subplots(
            1, 2, figsize=(11, max(3.0, 0.32 * len(compared) + 1.4)), sharey=True
        )
        for ax, key, title in (
            (axes[0], "macro_f1", "macro-F1"),
            (axes[1], "balanced_accuracy", "balanced accuracy"),
        ):
            y = np.arange(len(compared))
            for i, a in enumerate(compared):
                d = a.get(f"{key}_delta")
                if d is None or math.isnan(d):
                    continue
                lo, hi = a[f"{key}_ci_low"], a[f"{key}_ci_high"]
                if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
                    lo = hi = d  # no spread (or one unit): a point without an interval
                colour = _COLOURS.get(a.get(f"{key}_status", ""), "#4C72B0")
                ax.errorbar(
                    100 * d,
                    i,
                    xerr=[[100 * (d - lo)], [100 * (hi - d)]],
                    fmt="o",
                    color=colour,
                    capsize=3,
                )
            ax.axvline(0, color="#555", lw=1)
            ax.set_yticks(y, [label_of(a, models) for a in compared], fontsize=8)
            ax.set_xlabel(f"change in test {title} vs the baseline (points)", fontsize=8)
            ax.grid(axis="x", alpha=0.3)
        axes[0].invert_yaxis()
        fig.suptitle(
            "mean paired change with its 95% interval; green / red: better / worse "
            "after Holm's correction",
            fontsize=9,
        )
        fig.tight_layout()
        images["change"] = _png(fig, out / FIGURES["change"])
    trained = [a for a in aggs if not a.get("posthoc")]
    if not trained or not classes:
        return images
    labels = [label_of(a, models) for a in trained]
    done = [r for r in rows if r["status"] == "completed" and not r.get("posthoc")]
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
            for a in trained
        ]
    )
    support = [
        min((int(r[f"test_n:{c}"]) for r in done if f"test_n:{c}" in r), default=0) for c in classes
    ]
    ticks = [f"{c}\n(n={n})" for c, n in zip(classes, support, strict=True)]
    width = max(5.0, 0.8 * len(classes) + 3)
    h = max(3.0, 0.32 * len(trained) + 1.4)
    fig, ax = plt.subplots(figsize=(width, h))
    im = ax.imshow(recall, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(classes)), ticks, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(trained)), labels, fontsize=8)
    for i in range(recall.shape[0]):
        for j in range(recall.shape[1]):
            ax.text(j, i, f"{recall[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if recall[i, j] < 0.6 else "black")  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title("test recall per class (mean over runs; n: test images)", fontsize=9)
    fig.tight_layout()
    images["recall"] = _png(fig, out / FIGURES["recall"])
    base_idx = {a["model"]: i for i, a in enumerate(trained) if a["arm"] == "baseline"}
    vs = [i for i, a in enumerate(trained) if a["model"] in base_idx and a["arm"] != "baseline"]
    if vs:
        delta = np.array([recall[i] - recall[base_idx[trained[i]["model"]]] for i in vs])
        h = max(3.0, 0.32 * len(vs) + 1.4)
        lim = max(0.05, float(np.nanmax(np.abs(delta))) if np.isfinite(delta).any() else 0.05)
        fig, ax = plt.subplots(figsize=(width, h))
        im = ax.imshow(delta, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(len(classes)), ticks, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(vs)), [labels[i] for i in vs], fontsize=8)
        for i in range(delta.shape[0]):
            for j in range(delta.shape[1]):
                v = delta[i, j]
                if not math.isnan(v):  # white on the dark ends of the scale, black between
                    colour = "white" if abs(v) > 0.6 * lim else "black"
                    ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=7,
                            color=colour)  # fmt: skip
        fig.colorbar(im, ax=ax, fraction=0.04)
        ax.set_title(
            "recall change per class against the baseline (mean over runs; n: test images)",
            fontsize=9,
        )
        fig.tight_layout()
        images["improvement"] = _png(fig, out / FIGURES["improvement"])
    return images
