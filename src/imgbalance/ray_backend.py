"""Ray as an optional backend: render chunks and grid runs as Ray tasks.

Ray is imported only when chosen. Without an address a local Ray instance
sized to the machine is started, so one command works on a laptop and on a
cluster (``ray start --head`` on one node, ``ray start --address HEAD:6379``
on the others, then ``--address HEAD:6379`` or ``auto``). Workers read the
input files by path, so inputs must be on storage every node sees; rendered
bytes come back to the driver, which writes every output itself (atomically,
as locally), so the output folder only has to exist where the command runs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ._fs import atomic_write_bytes
from ._optional import require
from .errors import ImgBalanceError

__all__ = ["ensure_ray", "render_chunks_ray", "require_ray"]


def require_ray() -> Any:
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


def _render_bytes(jobs: Sequence[Any], opts: Any) -> list[tuple[int, bytes]]:
    from .rendering import render_recipe

    return [(job.index, render_recipe(job, opts)) for job in jobs]


def render_chunks_ray(
    chunks: Sequence[Sequence[Any]],
    root: str | os.PathLike[str],
    opts: Any,
    *,
    address: str | None = None,
    on_done: Callable[[list[tuple[int, str, int]]], None] | None = None,
    in_flight: int | None = None,
) -> Iterator[tuple[int, str, int]]:
    """Render chunks of jobs as Ray tasks; write each output here, as it arrives.

    At most ``in_flight`` chunks (default: twice the cluster's CPUs) are pending at
    once, so memory stays bounded however many recipes there are.
    """
    ray = ensure_ray(address)
    task = ray.remote(num_cpus=1, max_retries=1)(_render_bytes)
    opts_ref = ray.put(opts)
    out_of = {j.index: j.out for chunk in chunks for j in chunk}
    limit = in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    pending: list[Any] = []
    queue = list(chunks)
    while queue or pending:
        while queue and len(pending) < limit:
            pending.append(task.remote(queue.pop(0), opts_ref))
        ready, pending = ray.wait(pending, num_returns=1)
        written = []
        for index, data in ray.get(ready[0]):
            atomic_write_bytes(Path(root, out_of[index]), data)
            written.append((index, hashlib.sha256(data).hexdigest(), len(data)))
        if on_done:
            on_done(written)
        yield from written
