"""Ranking techniques across studies: the Friedman test by hand, and the diagram."""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy import stats

from imgbalance.errors import ConfigError
from imgbalance.experiments.across import friedman_ranks, plot_critical_difference

SCORES = {
    "digits": {"baseline": 0.60, "smote": 0.65, "focal": 0.70},
    "mnist": {"baseline": 0.50, "smote": 0.52, "focal": 0.58},
    "bccd": {"baseline": 0.70, "smote": 0.71, "focal": 0.80, "only-here": 0.9},
}


def test_friedman_by_hand() -> None:
    out = friedman_ranks(SCORES)
    # every study orders them focal > smote > baseline: ranks 1, 2, 3 (1 = best)
    assert out["mean_ranks"] == {"baseline": 3.0, "smote": 2.0, "focal": 1.0}
    assert out["techniques"] == ["baseline", "smote", "focal"]  # only-here is not in all
    # chi2_F = 12 / (n k (k+1)) * sum R_j^2 - 3 n (k+1), n = 3 studies, k = 3, R = 9, 6, 3
    chi2 = 12 / (3 * 3 * 4) * (9**2 + 6**2 + 3**2) - 3 * 3 * 4
    assert chi2 == pytest.approx(6.0)
    assert out["statistic"] == pytest.approx(chi2)
    assert out["p"] == pytest.approx(float(stats.chi2.sf(6.0, 2)))
    ece = {s: {t: 1 - v for t, v in d.items()} for s, d in SCORES.items()}
    assert friedman_ranks(ece, "ece")["mean_ranks"]["focal"] == 1.0  # lower ECE is better


def test_friedman_needs_studies_and_shared_techniques() -> None:
    with pytest.raises(ConfigError, match="at least two studies"):
        friedman_ranks({"a": SCORES["digits"]})
    with pytest.raises(ConfigError, match="at least three techniques"):
        friedman_ranks({"a": {"x": 1.0, "y": 2.0}, "b": {"x": 1.0, "y": 3.0, "z": 1.0}})


def test_critical_difference_diagram(tmp_path: Path) -> None:
    pytest.importorskip("scikit_posthocs", reason="the stats extra")
    out = plot_critical_difference(SCORES, tmp_path / "cd.png")
    assert (tmp_path / "cd.png").stat().st_size > 2000
    assert set(out["nemenyi"]) == {"baseline", "smote", "focal"}
    assert out["nemenyi"]["focal"]["baseline"] < out["nemenyi"]["focal"]["smote"]
