"""The cleaners' neighbour index: exact, ties by row, kept up to date across edits."""

from __future__ import annotations

import numpy as np
import pytest

from imgbalance.methods import _knn
from imgbalance.methods._knn import NeighbourIndex, alive_neighbours
from imgbalance.planner import plan_arrays
from imgbalance.planning.recipes import PlanState


def brute(X: np.ndarray, alive: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The k nearest other alive rows, by exact float64 distance, then by row index."""
    X64 = X.astype(np.float64)
    others = np.flatnonzero(alive)
    out = []
    for r in rows:
        cand = others[others != r]
        d = ((X64[cand] - X64[r]) ** 2).sum(axis=1)
        out.append(cand[np.lexsort((cand, d))[:k]])
    return np.array(out)


def state_of(X: np.ndarray) -> PlanState:
    return PlanState(X, np.zeros(len(X), dtype=np.int64), ["a"])


def test_exact_on_random_rows() -> None:
    X = np.random.default_rng(0).random((400, 24), dtype=np.float32)
    st = state_of(X)
    rows = np.arange(400)
    np.testing.assert_array_equal(alive_neighbours(st, rows, 3), brute(X, st.alive, rows, 3))


def test_rounding_of_the_float32_product_never_changes_a_neighbour() -> None:
    """Rows far from the origin and close to each other: float32's |a|^2 + |b|^2 - 2ab
    rounds away the differences (a plain float32 search gets many neighbours wrong); the
    exact re-measure must not."""
    rng = np.random.default_rng(1)
    X = (300.0 + rng.random((300, 16)) * 0.05).astype(np.float32)
    st = state_of(X)
    rows = np.arange(300)
    want = brute(X, st.alive, rows, 4)
    np.testing.assert_array_equal(alive_neighbours(st, rows, 4), want)
    # the premise: the float32 product alone orders them differently
    sq = np.einsum("ij,ij->i", X, X)
    D = sq[:, None] + sq[None, :] - 2 * (X @ X.T)
    np.fill_diagonal(D, np.inf)
    assert (np.argsort(D, axis=1, kind="stable")[:, :4] != want).any()


def test_ties_go_to_the_earlier_row_and_a_row_is_never_its_own_neighbour() -> None:
    base = np.random.default_rng(2).random((50, 8), dtype=np.float32)
    X = np.concatenate([base, base, base])  # each row has two exact duplicates
    st = state_of(X)
    rows = np.arange(len(X))
    got = alive_neighbours(st, rows, 3)
    np.testing.assert_array_equal(got, brute(X, st.alive, rows, 3))
    assert not (got == rows[:, None]).any()
    # row 0's duplicates (50 and 100) come first, at distance 0
    assert got[0, :2].tolist() == [50, 100] and got[100, :2].tolist() == [0, 50]


def test_identical_rows_go_through_the_full_scan_in_groups(monkeypatch) -> None:
    monkeypatch.setattr(_knn, "_MAX_PAIRS", 500)  # every query has ~199 candidates
    X = np.ones((200, 5), dtype=np.float32)
    st = state_of(X)
    rows = np.arange(200)
    got = alive_neighbours(st, rows, 3)
    np.testing.assert_array_equal(got, brute(X, st.alive, rows, 3))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_updated_lists_equal_a_search_from_scratch(seed: int) -> None:
    """Rows added and removed as STEM's iterations do: after each edit, the kept index
    answers as a new one does, and searches far fewer rows."""
    rng = np.random.default_rng(seed)
    X = rng.random((300, 10), dtype=np.float32)
    y = (X[:, 0] > 0.5).astype(np.int64)
    st = PlanState(X, y, ["a", "b"])
    kept = NeighbourIndex(8)
    kept.neighbours(st, np.flatnonzero(st.alive), 3)
    for _ in range(6):
        alive = np.flatnonzero(st.alive)
        a, b = rng.choice(alive, 60), rng.choice(alive, 60)
        st.add_blends(0, a, b, rng.random(60), op="smote", method="t", params={})
        alive = np.flatnonzero(st.alive)
        st.remove(rng.choice(alive, 40, replace=False))
        rows = np.flatnonzero(st.alive)
        fresh = NeighbourIndex(8)
        want = fresh.neighbours(st, rows, 3)
        np.testing.assert_array_equal(kept.neighbours(st, rows, 3), want)
        np.testing.assert_array_equal(want, brute(st.X, st.alive, rows, 3))
    assert kept.searches < 300 + 6 * 60 + 6 * 40  # new rows, plus rows that lost too many


def test_stem_reuses_the_index_across_iterations(monkeypatch) -> None:
    rng = np.random.default_rng(3)
    X = rng.random((400, 12), dtype=np.float32)
    y = np.array([0] * 300 + [1] * 70 + [2] * 30)
    X[y == 1] += 0.3
    plan = plan_arrays(X, y, ["a", "b", "c"], "stem", random_state=0, max_iterations=5)
    assert sum(e["step"] == "enn" for e in plan.log) >= 2  # the premise: several passes

    def fresh(state: PlanState, rows: np.ndarray, k: int, search: str = "exact") -> np.ndarray:
        state.cache.pop("neighbours", None)  # a new index for every pass
        return alive_neighbours(state, rows, k)

    monkeypatch.setattr("imgbalance.methods.cleaning.alive_neighbours", fresh)
    again = plan_arrays(X, y, ["a", "b", "c"], "stem", random_state=0, max_iterations=5)
    assert again.to_json() == plan.to_json()


def test_nearest_for_separate_queries_and_the_smote_rule() -> None:
    from imgbalance.methods._neighbors import neighbours

    rng = np.random.default_rng(4)
    XF = rng.random((150, 12), dtype=np.float32)
    XQ = rng.random((40, 12), dtype=np.float32)
    XF64, XQ64 = XF.astype(np.float64), XQ.astype(np.float64)
    d = ((XQ64[:, None, :] - XF64[None, :, :]) ** 2).sum(axis=2)
    want = np.argsort(d, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(_knn.nearest(XF, 5, XQ), want)
    # SMOTE's rule: k + 1 nearest of the fitted rows themselves, the first dropped
    self_d = ((XF64[:, None, :] - XF64[None, :, :]) ** 2).sum(axis=2)
    want_self = np.argsort(self_d, axis=1, kind="stable")[:, 1:4]
    np.testing.assert_array_equal(neighbours(XF, 3), want_self)
