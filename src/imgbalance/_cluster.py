"""Connecting to Ray (the optional ``ray`` extra), shared by the render and grid backends.

Ray is imported only when chosen. Without an address a local Ray instance sized
to the machine is started, so one command works on a laptop and on a cluster
(``ray start --head`` on one node, ``ray start --address HEAD:6379`` on the
others, then ``--address HEAD:6379`` or ``auto``).
"""

from __future__ import annotations

import os
from typing import Any

from ._optional import require
from .errors import ImgBalanceError

__all__ = ["ensure_ray", "require_ray"]


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
    return ray
