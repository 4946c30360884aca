"""Benchmark helpers: run a command in a subprocess and sample its process tree's RSS."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:  # the process ended between two reads: it has no children now
        return out
    for task in tasks:
        with contextlib.suppress(OSError, ValueError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _pss_kib(pid: int) -> int:
    """Proportional set size: private pages plus a fair share of pages shared with others.

    Summing RSS over forked workers would count the pages they share with their
    parent (copy-on-write) once per process; PSS counts each page once in total.
    """
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(pid: int) -> int:
    """Memory of a process and all its descendants (KiB, summed PSS)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _pss_kib(p)
        todo += _children(p)
    return total


def run_measured(
    code: str, env: dict[str, str] | None = None, interval: float = 0.02
) -> dict[str, float]:
    """Run ``python -c code``; return wall seconds and peak memory of its process tree
    (MiB, summed PSS, reported as ``peak_rss_mib``).

    The code's last stdout line, if it is ``key=value`` pairs, is parsed into the result.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        # Every ``interval`` for the first 10 s, then less often (at most 0.5 s apart):
        # reading smaps_rollup of a GB-sized process costs milliseconds, which at 50 Hz
        # took about a third of a core from the process being measured.
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_kib(proc.pid))
            elapsed = time.perf_counter() - t0
            time.sleep(interval if elapsed < 10 else min(0.5, interval * elapsed / 10))

    t0 = time.perf_counter()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    thread.join()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark command failed:\n{stderr[-3000:]}")
    # the kernel's CPU account of the child and every process it waited for (one child at
    # a time runs from here, so the difference is that child's tree)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    result: dict[str, float] = {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "peak_rss_mib": round(peak / 1024, 1),
    }
    last = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    for part in last.split():
        if "=" in part:
            k, v = part.split("=", 1)
            try:
                result[k] = float(v)
            except ValueError:  # a line of prose with an "=" in it
                continue
    return result


def own_peak_mib() -> float:
    """This process's own peak RSS (``VmHWM``, MiB). Unlike ``ru_maxrss``, it starts at
    ``exec``: a child started from a big driver (Python forks or vforks, then execs)
    inherits the driver's high-water mark in ``ru_maxrss``, not in ``VmHWM``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def run_timed(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``argv``; wall and CPU seconds (children included) and the largest process's
    peak RSS, all from the kernel; the last stdout line's ``key=value`` pairs too.

    ``max_rss_mib`` is at least this driver's own peak at the time (see
    :func:`own_peak_mib`): for a child smaller than its driver, have it print its own."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env={**os.environ, **env})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed ({proc.returncode}):\n{stderr[-3000:]}")
    res = {
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "max_rss_mib": round(usage.ru_maxrss / 1024, 1),
    }
    lines = stdout.strip().splitlines()
    for part in (lines[-1] if lines else "").split():
        if "=" in part:
            k, v = part.split("=", 1)
            with contextlib.suppress(ValueError):  # a line of prose with an "=" in it
                res[k] = float(v)
    return res


def provenance(**extra: Any) -> dict[str, Any]:
    """The head of a result file: machine, Python, imgbalance's version, the date."""
    import platform

    import imgbalance

    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            **extra,
        },
        "imgbalance": imgbalance.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def write_result(out: Path | None, result: dict[str, Any]) -> None:
    """Write ``result`` as indented JSON to ``out`` (when given) and say so."""
    if out is None:
        return
    import json

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
