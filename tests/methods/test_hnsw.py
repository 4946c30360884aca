"""Approximate neighbours for cleaning at scale (``neighbor_search="approximate"``)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from test_knn import brute  # the exact answer, by float64 brute force

from imgbalance.errors import ImgBalanceError
from imgbalance.methods import _hnsw
from imgbalance.methods._hnsw import ApproximateIndex
from imgbalance.planner import plan_arrays
from imgbalance.planning.recipes import PlanState

from imgtools import run_cli

pytest.importorskip("faiss")


def clustered(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows around 12 centres, as image thumbnails cluster; two labels."""
    rng = np.random.default_rng(seed)
    centres = rng.random((12, d), dtype=np.float32)
    which = rng.integers(0, 12, n)
    X = (centres[which] + 0.15 * rng.standard_normal((n, d))).astype(np.float32)
    return X, (which % 2).astype(np.int64)


def same_rows(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean(np.all(got == want, axis=1)))


def test_lists_are_nearly_the_exact_ones_and_ordered_exactly() -> None:
    X, y = clustered(1500, 48, 0)
    st = PlanState(X, y, ["a", "b"])
    rows = np.arange(len(X))
    got = ApproximateIndex(8).neighbours(st, rows, 3)
    want = brute(X, st.alive, rows, 3)
    assert same_rows(got, want) >= 0.95
    assert not (got == rows[:, None]).any()  # never itself
    # where a list has the exact neighbours, it has them in the exact order
    X64 = X.astype(np.float64)
    d = ((X64[got] - X64[rows, None]) ** 2).sum(axis=2)
    assert (np.diff(d, axis=1) >= 0).all()


def test_kept_lists_follow_additions_and_removals() -> None:
    """STEM's edits: rows added and removed between passes; dead rows never listed, and
    the kept lists stay close to the exact ones."""
    rng = np.random.default_rng(1)
    X, y = clustered(1200, 32, 1)
    st = PlanState(X, y, ["a", "b"])
    index = ApproximateIndex(8)
    index.neighbours(st, np.flatnonzero(st.alive), 3)
    for _ in range(5):
        alive = np.flatnonzero(st.alive)
        a = rng.choice(alive[st.y[alive] == 0], 150)
        b = rng.choice(alive[st.y[alive] == 0], 150)
        st.add_blends(0, a, b, rng.random(150), op="smote", method="t", params={})
        st.remove(rng.choice(np.flatnonzero(st.alive), 100, replace=False))
        rows = np.flatnonzero(st.alive)
        got = index.neighbours(st, rows, 3)
        assert st.alive[got].all()
        assert same_rows(got, brute(st.X, st.alive, rows, 3)) >= 0.95
    # only new rows, and rows that lost too many neighbours, were searched again
    assert index.searches < 1200 + 5 * 150 + 5 * 100


def plan_of(X: np.ndarray, y: np.ndarray, method: str, **kw: object) -> str:
    return plan_arrays(X, y, ["a", "b"], method, random_state=0, **kw).to_json()


def test_below_the_size_the_exact_search_answers(monkeypatch) -> None:
    X, y = clustered(400, 16, 2)
    y[:300] = 0
    exact = plan_arrays(X, y, ["a", "b"], "smote-enn", random_state=0).to_dict()
    approximate = plan_arrays(
        X, y, ["a", "b"], "smote-enn", random_state=0, neighbor_search="approximate"
    ).to_dict()
    assert approximate.pop("config")["params"]["neighbor_search"] == "approximate"
    assert "neighbor_search" not in exact.pop("config")["params"]  # the plans of before
    assert approximate == exact
    assert not approximate["notes"]


def test_approximate_plans_repeat_and_say_so(monkeypatch) -> None:
    monkeypatch.setattr(_hnsw, "MIN_ROWS", 0)
    X, y = clustered(700, 24, 3)
    y[:560] = 0
    one = plan_arrays(
        X, y, ["a", "b"], "stem", random_state=0, max_iterations=4, neighbor_search="approximate"
    )
    two = plan_arrays(
        X, y, ["a", "b"], "stem", random_state=0, max_iterations=4, neighbor_search="approximate"
    )
    assert one.to_json() == two.to_json()
    assert sum("approximately" in n for n in one.notes) == 1
    # on these well-separated rows, the same removals as the exact search
    exact = plan_arrays(X, y, ["a", "b"], "stem", random_state=0, max_iterations=4)
    removed = [e.get("removed") for e in one.log if e["step"] == "enn"]
    assert removed == [e.get("removed") for e in exact.log if e["step"] == "enn"]


def test_a_wrong_value_and_a_missing_faiss_are_clear(monkeypatch) -> None:
    X, y = clustered(100, 8, 4)
    with pytest.raises(ImgBalanceError, match="neighbor_search must be one of exact"):
        plan_of(X, y, "smote-enn", neighbor_search="fast")
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now fails
    with pytest.raises(ImgBalanceError, match=r"pip install 'imgbalance\[ann\]'"):
        plan_of(X, y, "enn", neighbor_search="approximate")


def test_wide_rows_go_into_the_graph_projected(monkeypatch) -> None:
    """Rows wider than the projection, with a spectrum that falls as images' do: the
    graph holds their principal axes (fitted on a stride of the first rows), the lists
    come from exact distances in the full space. Evenly spread rows go in as they are."""
    monkeypatch.setattr(_hnsw, "_FIT_ROWS", 400)
    X, y = clustered(1600, 96, 5)
    X = (X - X.mean(axis=0)) * (0.93 ** np.arange(96, dtype=np.float32))
    st = PlanState(X, y, ["a", "b"])
    rows = np.arange(len(X))
    index = ApproximateIndex(8)
    got = index.neighbours(st, rows, 3)
    assert index._axes is not None and 32 <= index._axes.shape[1] < 72
    assert same_rows(got, brute(X, st.alive, rows, 3)) >= 0.95
    flat = np.random.default_rng(6).standard_normal((1600, 96)).astype(np.float32)
    flat_index = ApproximateIndex(8)
    flat_state = PlanState(flat, y, ["a", "b"])
    got = flat_index.neighbours(flat_state, rows, 3)
    assert flat_index._axes is None
    assert same_rows(got, brute(flat, flat_state.alive, rows, 3)) >= 0.95


def test_the_balance_command_takes_the_search(tmp_path, balanced_tree) -> None:
    out = tmp_path / "out"
    args = ("balance", balanced_tree, out, "--method", "smote-enn", "--no-plots")
    r = run_cli(*args, "--neighbor-search", "approximate")
    assert r.returncode == 0, r.stderr
    plan = (out / "plan.json").read_text()
    assert '"neighbor_search": "approximate"' in plan
    r = run_cli(*args[:2], tmp_path / "o2", "--method", "stem", "--neighbor-search", "fast")
    assert r.returncode == 1 and "--neighbor-search must be one of exact" in r.stderr
    assert "Traceback" not in r.stderr
