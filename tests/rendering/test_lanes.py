"""Rendering in lanes: each worker takes a contiguous share of the sorted recipes, and a
lane that runs dry takes chunks from the far end of the longest one."""

from __future__ import annotations

import os
import time
from pathlib import Path

import imgbalance
from imgbalance.rendering.pool import CHUNK, _render_lanes

from conftest import tree_digest


def _where(chunk: list[int]) -> list[tuple[int, int, int]]:
    if chunk[0] < 1000:  # the first lane's jobs are slow
        time.sleep(0.4)
    return [(job, os.getpid(), 0) for job in chunk]


def test_lanes_keep_shares_together_and_steal_from_the_far_end() -> None:
    jobs = [*range(8 * CHUNK), *range(1000, 1000 + 8 * CHUNK)]  # two lanes of 8 chunks
    chunks = [jobs[i : i + CHUNK] for i in range(0, len(jobs), CHUNK)]
    ran = {job: pid for res in _render_lanes(_where, chunks, 2) for job, pid, _ in res}  # type: ignore[arg-type]
    assert sorted(ran) == jobs  # every job once
    slow, fast = ran[0], ran[1000]
    assert slow != fast and os.getpid() not in (slow, fast)
    assert {ran[j] for j in range(1000, 1000 + 8 * CHUNK)} == {fast}  # its own share
    stolen = [j // CHUNK for j in range(8 * CHUNK) if ran[j] == fast]
    assert stolen and stolen[::CHUNK] == list(range(8 - len(stolen) // CHUNK, 8))  # the tail
    assert {ran[j] for j in range(2 * CHUNK)} == {slow}  # the head stays with its lane


def test_more_workers_than_recipes_and_the_same_files(balanced_tree: Path, tmp_path: Path) -> None:
    for w in (1, 3, 8):
        imgbalance.balance(balanced_tree, tmp_path / f"w{w}", "smote", random_state=1,
                           workers=w, plots=False)  # fmt: skip
    one = tree_digest(tmp_path / "w1")
    one.pop("summary.json"), one.pop("balance_summary.txt")
    for w in (3, 8):
        other = tree_digest(tmp_path / f"w{w}")
        other.pop("summary.json"), other.pop("balance_summary.txt")
        assert other == one
