"""The Ray backend gives the same outputs as the local one (a local Ray instance)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import imgbalance

from conftest import tree_digest
from imgtools import rgb, save

ray = pytest.importorskip("ray", reason="the Ray backend needs the ray extra")

TIMED = ("summary.json", "balance_summary.txt")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _tree(root: Path) -> Path:
    for i in range(12):
        save(rgb(i, (40, 30)), root / "many" / f"{i}.jpg")
    for i in range(3):
        save(rgb(50 + i, (30, 40)), root / "few" / f"{i}.png")
    return root


@pytest.mark.parametrize("method", ["smote", "stem", "augment"])
def test_ray_render_is_byte_identical(local_ray: None, tmp_path: Path, method: str) -> None:
    src = _tree(tmp_path / "src")
    params = {"k_neighbors": 2} if method != "augment" else {}
    digests = []
    for backend in ("local", "ray"):
        imgbalance.balance(src, tmp_path / backend, method=method, seed=3, plots=False,
                           workers=2, backend=backend, **params)  # fmt: skip
        digests.append({k: v for k, v in tree_digest(tmp_path / backend).items() if k not in TIMED})
    assert digests[0] == digests[1]
    assert any("/synthetic/" in k for k in digests[0])


def test_missing_ray_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(imgbalance.ImgBalanceError, match=r"imgbalance\[ray\]"):
        imgbalance.balance(_tree(tmp_path / "src"), tmp_path / "out", backend="ray", plots=False)
