"""Every grid the repository ships (configs/, the effectiveness studies, the GPU check)
plans: each arm is a valid run, so a study's recipe (LDAM-DRW, Mixup-DRW, cRT, a named
protocol) is something the grid can express, and a setting renamed since fails here,
not an hour in."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgbalance.experiments.grid import load_grid, plan_grid

pytest.importorskip("torch", reason="the arms' losses and models are checked with torch")

ROOT = Path(__file__).resolve().parents[1]
GRIDS = sorted([*(ROOT / "configs").glob("*.yaml"),
                *(ROOT / "benchmarks" / "effectiveness").glob("*.yaml"),
                *(ROOT / "benchmarks" / "gpu").glob("*.yaml")])  # fmt: skip


@pytest.mark.parametrize("path", GRIDS, ids=[p.name for p in GRIDS])
def test_the_grid_plans(path: Path, tmp_path: Path) -> None:
    runs = plan_grid(load_grid(path, tmp_path), splits_dir=tmp_path / "splits")
    assert runs and len({r.run_id for r in runs}) == len(runs)


def test_the_cifar_lt_grids_run_the_papers_protocol(tmp_path: Path) -> None:
    from imgbalance.experiments import RunConfig

    where = ROOT / "benchmarks" / "effectiveness"
    gpu = {r.arm: RunConfig.from_dict(r.settings) for r in
           plan_grid(load_grid(where / "cifar10_lt_gpu.yaml", tmp_path))}  # fmt: skip
    ldam = gpu["ldam-drw"]
    assert (ldam.model, ldam.epochs, ldam.optimizer, ldam.milestones, ldam.drw_epoch) == (
        "resnet32", 200, "sgd", [160, 180], 160,
    )  # fmt: skip
    assert ldam.model_head()["head"] == "cosine"
    assert gpu["baseline"].model_head()["head"] == "linear"
    cpu = {r.arm: RunConfig.from_dict(r.settings) for r in
           plan_grid(load_grid(where / "cifar10_lt_cpu.yaml", tmp_path))}  # fmt: skip
    assert {c.max_steps for c in cpu.values()} == {1455}  # one budget for every arm
