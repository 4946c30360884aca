"""Worker processes that end with the command that started them.

A pool's workers are children of the command. If the command is killed by a signal
it cannot handle (SIGKILL) or one Python does not turn into an exception (SIGTERM),
``concurrent.futures`` never shuts the pool down and the workers go on working
alone, minutes later still writing. Every pool of imgbalance starts its workers with
:func:`exit_with_parent`: a thread in each worker that ends it as soon as its parent
is gone (the kernel re-parents an orphan, so ``os.getppid()`` changes).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.context as mp_context
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

__all__ = ["exit_with_parent", "process_pool", "threads_per_job"]

_POLL_S = 0.5
#: the signals a worker holds back from its fork until its initializer has set them up
_STOPS = {signal.SIGINT, signal.SIGTERM}


def exit_with_parent(parent: int) -> None:
    """Pool initializer: end this worker when process ``parent`` is no longer its parent.

    The worker also ignores Ctrl-C (SIGINT, sent to the whole foreground process group):
    the command handles it once and ends its workers itself, instead of every worker
    printing its own traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the command turns SIGTERM into its clean stop; a forked worker would inherit that
    # handler, and the pool ends its workers with SIGTERM: here it simply ends them
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)  # blocked by _QuietStart

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def threads_per_job(jobs: int, log: Callable[[str], None]) -> int | None:
    """Torch threads for each of ``jobs`` runs at once (None for one run: its own
    choice). More runs than CPUs share them: said, since each run is then slower, and
    its time (a comparison's budget is planned from it) is inflated."""
    if jobs <= 1:
        return None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    if jobs > cpus:
        log(
            f"note: {jobs} runs at once on {cpus} CPU(s): they share the CPUs, so the grid "
            f"ends no sooner than with {cpus} at a time and each run's time is longer"
        )
    return max(1, cpus // jobs)


class _QuietStart:
    """A process that starts with Ctrl-C and SIGTERM blocked: a SIGINT that arrives between
    the fork and :func:`exit_with_parent` would otherwise interrupt the child's at-fork hooks
    ("Exception ignored in: Random.seed" on the terminal). Module-level classes, so that
    spawned children can unpickle them."""

    def start(self) -> None:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
        try:
            super().start()  # type: ignore[misc]
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _QuietFork(_QuietStart, mp_context.ForkProcess):
    pass


class _QuietSpawn(_QuietStart, mp_context.SpawnProcess):
    pass


class _QuietForkServer(_QuietStart, mp_context.ForkServerProcess):
    pass


_QUIET = {"fork": _QuietFork, "spawn": _QuietSpawn, "forkserver": _QuietForkServer}


class _QuietContext:
    """A multiprocessing context whose processes start with Ctrl-C blocked."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx
        self.Process = _QUIET[ctx.get_start_method()]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


@contextlib.contextmanager
def process_pool(max_workers: int, *, spawn: bool = False) -> Iterator[ProcessPoolExecutor]:
    """A ``ProcessPoolExecutor`` whose workers end with this process (see the module).

    Leaving the block normally waits for the work; leaving it by an exception (Ctrl-C's
    ``KeyboardInterrupt`` included) cancels what has not started and terminates the
    workers at once, so a stopped command does not wait for their tasks to finish.
    ``spawn`` starts them fresh (for work that uses torch: a forked copy of a process
    that already ran torch can deadlock); otherwise the platform's default.
    """
    ctx = multiprocessing.get_context("spawn" if spawn else None)
    kwargs: dict[str, Any] = {"mp_context": _QuietContext(ctx)}
    pool = ProcessPoolExecutor(
        max_workers=max_workers, initializer=exit_with_parent, initargs=(os.getpid(),), **kwargs
    )
    try:
        yield pool
    except BaseException:
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.terminate()
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.join(timeout=5)
        raise
    else:
        pool.shutdown(wait=True)
