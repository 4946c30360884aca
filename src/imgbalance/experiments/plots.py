"""Plots of one run: confusion matrices and the confidence distribution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..reports.plotting import pyplot, save_figure


def plot_confusion(metrics: dict[str, Any], classes: list[str], path: Path, title: str) -> None:
    """Counts and row-normalised confusion matrices side by side."""
    plt = pyplot()
    cm = np.asarray(metrics["confusion_matrix"])
    cmn = np.asarray(metrics["confusion_matrix_normalized"])
    n = len(classes)
    size = max(4.0, 0.45 * n + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
    for ax, mat, fmt, name in (
        (axes[0], cm, "d", "counts"),
        (axes[1], cmn, ".2f", "row-normalised (recall on the diagonal)"),
    ):
        im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=mat.max() if mat.max() > 0 else 1)
        ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(n), classes, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name, fontsize=9)
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    v = mat[i, j]
                    ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7,
                            color="white" if v > 0.6 * (mat.max() or 1) else "black")  # fmt: skip
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(
        f"test confusion matrix: {title}\nmacro-F1 {metrics['macro_f1']:.3f}, "
        f"balanced accuracy {metrics['balanced_accuracy']:.3f}",
        fontsize=9,
    )
    fig.tight_layout()
    save_figure(fig, path)


def plot_confidence(y: np.ndarray, proba: np.ndarray, path: Path, title: str) -> None:
    """Histogram of the top-class confidence, correct vs incorrect test predictions."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if len(y):
        conf = proba.max(axis=1)
        right = proba.argmax(axis=1) == y
        bins = np.linspace(0, 1, 21)
        for mask, name, color in ((right, "correct", "#4C72B0"), (~right, "incorrect", "#C44E52")):
            ax.hist(conf[mask], bins=bins, alpha=0.7, label=f"{name} ({mask.sum()})", color=color)
        ax.legend(fontsize=8)
    ax.set_xlabel("confidence of the predicted class")
    ax.set_ylabel("test images")
    ax.set_title(f"confidence: {title}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
