"""Connecting to Ray (the optional ``ray`` extra), shared by the render and grid backends.

Ray is imported only when chosen. Without an address a local Ray instance sized
to the machine is started, so one command works on a laptop and on a cluster
(``ray start --head`` on one node, ``ray start --address HEAD:6379`` on the
others, then ``--address HEAD:6379`` or ``auto``).

A local instance ends with the command. Ray stops its processes when the driver exits
normally, but a driver killed with SIGKILL (or SIGTERM, which Python does not turn into
an exception) left Ray's agents (DashboardAgent, RuntimeEnvAgent) and idle workers
running for one to two minutes. :func:`ensure_ray` starts a small watchdog beside a
local instance: a process in a session of its own that notes the command's
descendants every half second and, once the command is gone, kills those still running.
An instance reached at an address is the cluster's, and is left alone.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from typing import Any

from ._optional import require
from .errors import ImgBalanceError

__all__ = ["WATCHDOG", "ensure_ray", "require_ray"]

#: the watchdog of a local Ray instance (see the module doc); argv[1] is the command's pid,
#: argv[2] the folder psutil is imported from (Ray ships it in a folder of its own). A
#: recorded process is killed only if it is still the process recorded (psutil checks its
#: start time), so a reused pid is never hit.
WATCHDOG = """
import signal, sys, time
sys.path.insert(0, sys.argv[2])
import psutil
signal.signal(signal.SIGINT, signal.SIG_IGN)
driver = psutil.Process(int(sys.argv[1]))
me = psutil.Process()
seen = {}
while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
    try:
        for p in driver.children(recursive=True):
            if p.pid != me.pid:
                seen[p.pid] = p
    except psutil.Error:
        break
    time.sleep(0.5)
for _ in range(3):  # the agents' own children, re-parented as their parents die
    for p in list(seen.values()):
        try:
            for c in p.children(recursive=True):
                seen.setdefault(c.pid, c)
            p.kill()
        except psutil.Error:
            pass
    time.sleep(0.2)
"""


def require_ray() -> Any:
    """The ``ray`` module, or an error naming the extra (checked before any work)."""
    return require("ray", "ray", "--backend ray", "or use the default local backend")


def ensure_ray(address: str | None = None) -> Any:
    """Connect to ``address``, or start a local instance sized to this machine, once."""
    ray = require_ray()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = os.cpu_count() or 1
        try:
            ray.init(**kwargs)
        except Exception as exc:  # a wrong address, a cluster that is down...
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise ImgBalanceError(f"Cannot start or reach {where}: {exc}") from exc
        if not address:
            _start_watchdog()
    return ray


def _start_watchdog() -> None:
    """The local instance's watchdog (see the module doc), in a session of its own so
    that the Ctrl-C of the command's terminal does not stop it before it has looked."""
    psutil = importlib.import_module("psutil")  # importable once ray is (its own copy)
    where = os.path.dirname(os.path.dirname(os.path.abspath(str(psutil.__file__))))
    _WATCHDOGS.append(subprocess.Popen(
        [sys.executable, "-c", WATCHDOG, str(os.getpid()), where],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    ))  # fmt: skip


#: the watchdogs started (held, so they are not garbage-collected as running processes)
_WATCHDOGS: list[subprocess.Popen[bytes]] = []
