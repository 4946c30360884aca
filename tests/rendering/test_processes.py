"""Every worker of ``balance`` ends with it, whatever stops it (SIGKILL, SIGTERM, Ctrl-C)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from imgtools import all_gone, child_pids, interruptible, is_running

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)"),
]


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough large images that rendering SMOTE takes a while (made once: read only)."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("procs") / "data"
    for name, n in (("many", 400), ("few", 4)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            px = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
            Image.fromarray(px).resize((600, 600)).save(root / name / f"{i}.jpg", quality=90)
    return root


@contextlib.contextmanager
def balancing(
    big_tree: Path, out: Path, **popen: Any
) -> Iterator[tuple[subprocess.Popen[bytes], list[int]]]:
    """``imgbalance balance --workers 2`` started and rendering: (its process, its
    workers); everything is killed on the way out, whatever the test did."""
    cmd = [sys.executable, "-m", "imgbalance", "balance", str(big_tree), str(out),
           "--method", "smote", "--workers", "2", "--format", "png"]  # fmt: skip
    driver = subprocess.Popen(interruptible(cmd), **popen)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not workers:
            time.sleep(0.2)
            workers = [k for k in child_pids(driver.pid) if is_running(k)]
        assert workers, "balance started no worker processes"
        time.sleep(0.5)
        workers = [k for k in child_pids(driver.pid) if is_running(k)] or workers
        yield driver, workers
    finally:
        driver.kill()
        for w in workers:
            with contextlib.suppress(OSError):
                os.kill(w, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "term"])
def test_balance_workers_end_with_it(tmp_path: Path, big_tree: Path, sig: int) -> None:
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    with balancing(big_tree, tmp_path / "out", **quiet) as (driver, workers):
        driver.send_signal(sig)
        driver.wait(timeout=30)
        assert all_gone(workers), "a worker outlived balance"


def test_ctrl_c_stops_balance_and_its_workers_with_one_line(tmp_path: Path, big_tree: Path) -> None:
    """Ctrl-C reaches the whole foreground process group: the command stops within
    seconds, with no traceback (not one per worker), and leaves no worker behind."""
    piped = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "start_new_session": True}
    with balancing(big_tree, tmp_path / "out", **piped) as (driver, workers):
        t0 = time.monotonic()
        os.killpg(driver.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _, err = driver.communicate(timeout=30)
        assert time.monotonic() - t0 < 10
        assert b"Traceback" not in err, err.decode(errors="replace")[-2000:]
        assert driver.returncode != 0
        assert all_gone(workers), "a worker outlived balance"
