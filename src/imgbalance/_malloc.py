"""Keep freed memory for the next training step instead of giving it back to the kernel.

A CPU training step allocates its activations afresh: at 224 px a batch of 32 through
``small-cnn`` needs blocks of 200 MB and more. glibc's ``malloc`` serves every block above
its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and returns it with ``munmap``
when freed, so every step the kernel faults in and zeroes the same few hundred MB again.
Measured on 2 CPUs, that was 40% of a step's CPU time, all of it system time (see
``benchmarks/README.md``, "Training throughput").

:func:`keep_freed_memory` tells glibc, for the duration of a run, to take large blocks
from its heap (``M_MMAP_MAX`` 0) and to keep what is freed there (``M_TRIM_THRESHOLD``
2 GiB) so that the next step reuses the pages it has already touched. The numbers are
the same. The peak is a little higher, since a freed block may stay in the heap beside
the next one instead of going back (measured on the 50,000-image run: +0.63 GiB
streaming, median of 3, and +0.38 GiB in memory, for 1.26x and 1.39x the speed);
afterwards glibc's usual settings come back (see ``_AFTER_MMAP_THRESHOLD``) and
:func:`malloc_trim` returns what is free. Elsewhere than on glibc (macOS, musl, which do
not have this cost) it does nothing, and so it does where the user has set these knobs
(``GLIBC_TUNABLES=glibc.malloc.mmap_max=...``, ``MALLOC_TRIM_THRESHOLD_``...);
``IMGBALANCE_MALLOC=system`` turns it off, for the lower peak where memory is tighter
than time.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["keep_freed_memory", "mmapped_blocks"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
#: put back when the last run ends. Any ``mallopt`` of these turns glibc's dynamic mmap
#: threshold off for good (there is no call that turns it on again), so what comes back
#: is the state that threshold reaches in any process that has freed a large block: its
#: ceiling (32 MiB on 64-bit), and twice that kept free at the top of the heap. glibc's
#: first defaults (128 KiB each, fixed) would map and fault in every block above 128 KiB
#: for the rest of the process.
_DEFAULT_MMAP_MAX = 65536
_AFTER_MMAP_THRESHOLD = 4 * 2**20 * ctypes.sizeof(ctypes.c_long)
_AFTER_TRIM = 2 * _AFTER_MMAP_THRESHOLD
#: the user's own settings of the same knobs: then this module leaves malloc alone
_TUNED = ("mmap_max", "mmap_threshold", "trim_threshold")
#: the most ``mallopt`` takes (a C int)
_KEEP = 2**31 - 1

_lock = threading.Lock()
_depth = 0


@functools.cache
def _glibc() -> Any | None:
    """The glibc this process runs on (None elsewhere: macOS, musl), loaded once."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


def _libc() -> Any | None:
    """glibc, when this process runs on it and the user has not turned this off."""
    if os.environ.get("IMGBALANCE_MALLOC", "").lower() == "system":
        return None
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if any(f"glibc.malloc.{k}" in tunables or f"MALLOC_{k.upper()}_" in os.environ
           for k in _TUNED):  # fmt: skip
        return None
    return _glibc()


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[bool]:
    """Within the block, freed memory stays in the process for reuse (glibc only).
    Yields whether the setting took effect; nested blocks share the outermost one."""
    global _depth
    libc = _libc()
    if libc is None:
        yield False
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _KEEP)
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_MMAP_THRESHOLD, _AFTER_MMAP_THRESHOLD)
                libc.mallopt(_M_TRIM_THRESHOLD, _AFTER_TRIM)
                libc.malloc_trim(0)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                     "fsmblks", "uordblks", "fordblks", "keepcost")
    ]  # fmt: skip


def mmapped_blocks() -> int | None:
    """How many blocks glibc's ``malloc`` holds as their own mappings now (``hblks`` of
    ``mallinfo2``), or None elsewhere than on glibc 2.33 or later."""
    fn = getattr(_glibc(), "mallinfo2", None)
    if fn is None:
        return None
    fn.restype = _MallInfo2
    return int(fn().hblks)
