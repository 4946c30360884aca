"""Techniques ranked across studies: the Friedman test and a critical-difference diagram.

Within one study, :mod:`imgbalance.experiments.stats` compares each technique with the
baseline. Across studies (datasets, imbalance ratios), the question is which
techniques rank better overall: each study ranks the techniques by their mean score
(rank 1 the best, ties averaged), the Friedman test asks whether the mean ranks differ
at all, and the Nemenyi post-hoc test says which pairs do. The diagram is drawn by
scikit-posthocs (the ``stats`` extra: ``pip install 'imgbalance[stats]'``), a maintained
implementation of Demšar's (2006) critical-difference diagram.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .results import LOWER_IS_BETTER

__all__ = ["friedman_ranks", "plot_critical_difference"]


def _complete(scores: dict[str, dict[str, float]]) -> tuple[list[str], list[str], np.ndarray]:
    """The techniques every study has, and the studies x techniques score matrix."""
    studies = list(scores)
    techniques = [t for t in scores[studies[0]] if all(t in scores[s] for s in studies)]
    matrix = np.array([[scores[s][t] for t in techniques] for s in studies], dtype=float)
    keep = ~np.isnan(matrix).any(axis=0)
    return studies, [t for t, k in zip(techniques, keep, strict=True) if k], matrix[:, keep]


def friedman_ranks(scores: dict[str, dict[str, float]], metric: str = "macro_f1") -> dict[str, Any]:
    """Mean ranks and the Friedman test over ``scores[study][technique]`` (mean scores).

    Only techniques present in every study are ranked. Returns ``techniques``,
    ``mean_ranks`` (1 = best), ``statistic``, ``p``, ``studies``.
    """
    from scipy import stats

    if len(scores) < 2:
        raise ConfigError("Ranking across studies needs at least two studies.")
    studies, techniques, matrix = _complete(scores)
    if len(techniques) < 3:
        raise ConfigError(
            f"The Friedman test needs at least three techniques that every study ran; the "
            f"studies share {techniques}."
        )
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    ranks = np.vstack([stats.rankdata(sign * row) for row in matrix])
    res = stats.friedmanchisquare(*matrix.T)
    return {
        "studies": studies,
        "techniques": techniques,
        "mean_ranks": dict(zip(techniques, ranks.mean(axis=0).tolist(), strict=True)),
        "statistic": float(res.statistic),
        "p": float(res.pvalue),
        "metric": metric,
    }


def plot_critical_difference(
    scores: dict[str, dict[str, float]], path: Path, metric: str = "macro_f1"
) -> dict[str, Any]:
    """Draw the critical-difference diagram of ``scores`` into ``path`` (PNG); returns
    :func:`friedman_ranks` with the Nemenyi p-values under ``"nemenyi"``."""
    try:
        import pandas as pd
        import scikit_posthocs as sp
    except ImportError as exc:
        from ..errors import MissingDependencyError

        raise MissingDependencyError(
            "The critical-difference diagram needs scikit-posthocs: "
            "pip install 'imgbalance[stats]'."
        ) from exc
    from ..reports.plotting import pyplot, save_figure

    out = friedman_ranks(scores, metric)
    _, techniques, matrix = _complete(scores)
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    # Nemenyi's test on the ranks: blocks are studies, groups are techniques
    nemenyi = sp.posthoc_nemenyi_friedman(pd.DataFrame(sign * matrix, columns=techniques))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.25 * len(techniques) + 1)))
    sp.critical_difference_diagram(pd.Series(out["mean_ranks"]), nemenyi, ax=ax)
    ax.set_title(
        f"mean rank of test {metric} over {len(out['studies'])} studies (1 = best); bars join "
        f"techniques Nemenyi cannot tell apart; Friedman p = {out['p']:.3g}",
        fontsize=8,
    )
    fig.tight_layout()
    save_figure(fig, path)
    out["nemenyi"] = {a: {b: float(nemenyi.loc[a, b]) for b in techniques} for a in techniques}
    return out
