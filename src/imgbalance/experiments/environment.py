"""What a run records about where it ran: package versions, git revision, hardware,
and the peak resident memory of the process while it trained."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["PeakRSS", "environment"]


def environment() -> dict[str, Any]:
    """Package versions, git revision and hardware (instead of a code snapshot)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for pkg in (
        "imgbalance", "torch", "torchvision", "numpy", "scikit-learn",
        "imbalanced-learn", "pillow", "matplotlib", "timm",
    ):  # fmt: skip
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    rev: str | None = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        rev = proc.stdout.strip() or None
    hw: dict[str, Any] = {"cpus": os.cpu_count(), "machine": platform.machine()}
    try:
        import torch

        hw["torch_threads"] = torch.get_num_threads()
        hw["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git_revision": rev,
        "hardware": hw,
    }


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 50 ms).

    ``ru_maxrss`` alone would report the largest run so far when several runs share a
    process (a grid with ``--jobs 1``); where ``/proc`` is missing it is the fallback.
    """

    def __init__(self) -> None:
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _now() -> float | None:
        try:
            with open("/proc/self/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def _sample(self) -> None:
        while not self._stop.is_set():
            now = self._now()
            if now is not None:
                self.peak_mib = max(self.peak_mib, now)
            self._stop.wait(0.05)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.peak_mib == 0.0:
            self.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
