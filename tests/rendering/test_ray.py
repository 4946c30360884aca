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
        imgbalance.balance(src, tmp_path / backend, method=method, random_state=3, plots=False,
                           workers=2, backend=backend, **params)  # fmt: skip
        digests.append({k: v for k, v in tree_digest(tmp_path / backend).items() if k not in TIMED})
    assert digests[0] == digests[1]
    assert any("/synthetic/" in k for k in digests[0])


def test_missing_ray_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(imgbalance.ImgBalanceError, match=r"imgbalance\[ray\]"):
        imgbalance.balance(_tree(tmp_path / "src"), tmp_path / "out", backend="ray", plots=False)


def test_grid_on_ray_matches_local_and_records_failures(
    local_ray: None, tmp_path: Path, split_tree: Path
) -> None:
    import csv
    import os

    from imgbalance.experiments.grid import plan_grid, run_grid
    from imgbalance.experiments.report import write_report

    pytest.importorskip("torch")
    threads = max(1, (os.cpu_count() or 1) // 2)  # what --jobs 2 gives each local run
    grid = {
        "name": "tiny",
        "data": str(split_tree),
        "seeds": [0, 1],
        "models": ["small-cnn"],
        "defaults": {"epochs": 2, "image_size": 16, "batch_size": 8},
        "resources": {"cpus": threads},
        "arms": {
            "baseline": {},
            "over+focal": {"technique": "random-over", "loss": "focal"},
            "linear": {"model": "linear", "features": "thumbnail:4"},
            "broken": {"technique": "smote", "technique_params": {"small_class_fallback": "error"}},
        },
    }
    assert len(plan_grid(grid)) == 8
    local = run_grid(grid, tmp_path / "local", jobs=2)
    on_ray = run_grid(grid, tmp_path / "ray", backend="ray")
    assert local == on_ray == {"completed": 6, "failed": 2, "skipped": 0, "not_started": 0}
    assert (
        "k_neighbors + 1"
        in (tmp_path / "ray" / "broken__small-cnn__seed0" / "error.json").read_text()
    )
    tables = []
    for name in ("local", "ray"):
        rows = csv.DictReader(write_report(tmp_path / name)["results"].open())
        keep = ("run", "status", "macro_f1", "balanced_accuracy", "ece", "recall:red")
        tables.append(sorted(tuple(r.get(k) for k in keep) for r in rows))
    assert tables[0] == tables[1]
    assert run_grid(grid, tmp_path / "ray", backend="ray")["skipped"] == 6  # resumes


def test_a_killed_command_takes_its_local_ray_instance_with_it(tmp_path: Path) -> None:
    """kill -9 of a command that started a local Ray instance: every process it started
    (GCS, raylet, agents, workers) is gone within seconds (Ray's agents outlived the
    driver by one to two minutes before the watchdog)."""
    import signal
    import subprocess
    import time

    import psutil

    ready = tmp_path / "ready"
    driver = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from imgbalance._cluster import ensure_ray\n"
         "ray = ensure_ray()\n"
         "ray.get(ray.remote(lambda: 1).remote())\n"  # a worker process too
         f"open({str(ready)!r}, 'w').close()\n"
         "time.sleep(120)\n"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert driver.poll() is None and time.monotonic() < deadline, "Ray did not start"
            time.sleep(0.2)
        time.sleep(1.0)  # the watchdog's next look
        started = [p for p in psutil.Process(driver.pid).children(recursive=True)]
        assert len(started) >= 3  # the watchdog, GCS, raylet, ...
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        _gone, alive = psutil.wait_procs(started, timeout=15)
        assert not alive, f"still running 15 s after kill -9: {[p.name() for p in alive]}"
    finally:
        if driver.poll() is None:
            driver.kill()
