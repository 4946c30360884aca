"""Rendering chunks of recipes as Ray tasks (``--backend ray``).

Workers read the input files by path, so inputs must be on storage every node
sees; rendered bytes come back to the driver, which writes every output itself
(atomically, as locally), so the output folder only has to exist where the
command runs. The outputs are byte-identical to the local pool's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .._cluster import ensure_ray
from .._fs import atomic_write_bytes
from .kernel import RenderJob, RenderOptions, render_recipe

__all__ = ["render_chunks_ray"]


def _render_bytes(jobs: Sequence[RenderJob], opts: RenderOptions) -> list[tuple[int, bytes]]:
    return [(job.index, render_recipe(job, opts)) for job in jobs]


def render_chunks_ray(
    chunks: Sequence[Sequence[RenderJob]],
    root: str | os.PathLike[str],
    opts: RenderOptions,
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
