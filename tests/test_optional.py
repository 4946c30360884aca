"""A missing optional dependency is an error naming the extra that installs it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import imgbalance
from imgbalance._cluster import require_ray
from imgbalance._optional import require
from imgbalance.experiments.trackers import log_run


def test_require_imports_or_names_the_extra() -> None:
    assert require("json", "none", "x", "y").dumps([1]) == "[1]"
    with pytest.raises(imgbalance.ImgBalanceError) as err:
        require("no_such_module_here.sub", "ray", "--backend ray", "or use the local backend")
    msg = str(err.value)
    assert "--backend ray needs no_such_module_here" in msg
    assert "pip install 'imgbalance[ray]'" in msg and "or use the local backend" in msg


def test_missing_ray_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import raises ImportError
    with pytest.raises(imgbalance.ImgBalanceError, match=r"--backend ray.*imgbalance\[ray\]"):
        require_ray()


@pytest.mark.parametrize("tracker", ["mlflow", "wandb"])
def test_missing_tracker_names_its_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tracker: str
) -> None:
    monkeypatch.setitem(sys.modules, tracker, None)
    with pytest.raises(imgbalance.ImgBalanceError, match=rf"--tracker {tracker}.*\[{tracker}\]"):
        log_run(tracker, tmp_path, {})


def test_missing_ray_fails_before_any_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from imgbalance.experiments.grid import run_grid

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(imgbalance.ImgBalanceError, match=r"imgbalance\[ray\]"):
        grid = {"data": str(tmp_path), "arms": {"baseline": {}}}
        run_grid(grid, tmp_path / "runs", backend="ray")
    with pytest.raises(imgbalance.ImgBalanceError, match=r"imgbalance\[ray\]"):
        imgbalance.balance(tmp_path / "missing", tmp_path / "out", backend="ray")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()
