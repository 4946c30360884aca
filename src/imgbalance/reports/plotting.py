"""Plotting helpers shared by every figure (:func:`pyplot`, :func:`save_figure`), and the
figures of ``imgbalance analyze``: class distribution and sample thumbnails (a contact
sheet, :mod:`.sheet`).

matplotlib is imported inside the functions, with the non-interactive Agg
backend, so that importing imgbalance stays fast and works without a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._fs import atomic_path
from ..dataset.images import load_image
from .sheet import Panel, contact_sheet, save_sheet

if TYPE_CHECKING:
    from ..dataset.catalog import Catalog

__all__ = ["plot_class_distribution", "plot_samples", "pyplot", "save_figure"]

_MAJOR = "#4C72B0"
_MINOR = "#DD8452"


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import warnings

    import matplotlib

    # a class name with a control character has no glyph; the warning would print that
    # character raw to the terminal (the figure shows a box for it either way)
    warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG atomically, with fixed metadata, and close it."""
    with atomic_path(path) as tmp:
        # Fixed metadata keeps the bytes identical from run to run.
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    pyplot().close(fig)


def plot_class_distribution(catalog: Catalog, path: Path, threshold: float = 0.5) -> None:
    """Bar chart of readable images per class, sorted by count, minority classes highlighted."""
    plt = pyplot()
    counts = catalog.counts()
    order = sorted(counts, key=lambda c: (-counts[c], c))
    minority = set(catalog.minority_classes(threshold))
    height = max(2.8, 0.38 * len(order) + 1.4)
    fig, ax = plt.subplots(figsize=(8, height))
    values = [counts[c] for c in order]
    colors = [_MINOR if c in minority else _MAJOR for c in order]
    bars = ax.barh(range(len(order)), values, color=colors)
    ax.set_yticks(range(len(order)), labels=order)
    ax.invert_yaxis()
    top = max(values, default=0)
    for bar, v in zip(bars, values, strict=True):
        ax.text(
            bar.get_width() + top * 0.01,
            bar.get_y() + bar.get_height() / 2,
            str(v),
            va="center",
            fontsize=9,
        )
    ax.set_xlim(0, top * 1.12 + 1)
    ax.set_xlabel("readable images")
    br, ir = catalog.balance_ratio, catalog.imbalance_ratio
    ratios = (
        f"balance ratio min/max = {br:.3f}   imbalance ratio max/min = {ir:.1f}"
        if br is not None and ir is not None
        else ""
    )
    ax.set_title(
        f"{catalog.root.name}: {sum(values)} images in {len(order)} classes\n{ratios}", fontsize=10
    )
    from matplotlib.patches import Patch

    ax.legend(
        handles=[
            Patch(color=_MAJOR, label="other classes"),
            Patch(color=_MINOR, label=f"minority (< {threshold:.0%} of largest)"),
        ],
        loc="lower right",
        fontsize=8,
    )
    fig.tight_layout()
    save_figure(fig, path)


def plot_samples(
    catalog: Catalog,
    path: Path,
    per_class: int = 6,
    seed: int = 0,
    max_classes: int = 30,
    thumb: int = 96,
) -> None:
    """A contact sheet of a few thumbnails per class (seeded choice), one row per class."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[str]] = {c: [] for c in catalog.classes}
    for r in catalog.usable():
        by_class[r.class_name].append(r.path)
    rows: list[tuple[str, list[Panel | None]]] = []
    for c in catalog.classes[:max_classes]:
        paths = by_class[c]
        pick = (
            sorted(rng.choice(len(paths), size=min(per_class, len(paths)), replace=False))
            if paths
            else []
        )
        panels: list[Panel | None] = []
        for i in pick:
            try:
                im = load_image(catalog.root / paths[i], draft=(thumb, thumb))
                im.thumbnail((thumb, thumb))
                panels.append(Panel(im))
            except Exception:
                panels.append(Panel(None, "unreadable"))
        label = c if len(c) <= 18 else c[:17] + "…"
        rows.append((f"{label}\n({len(paths)})", panels))
    save_sheet(contact_sheet(rows, "samples per class (count)", thumb=thumb), path)
