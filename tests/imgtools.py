"""Helpers that write tiny real image files for the tests, and run the command line."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def rgb(seed: int, size: tuple[int, int] = (24, 16)) -> Image.Image:
    """A small random RGB image; different seeds give different bytes."""
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


def save(im: Image.Image, path: Path, fmt: str | None = None, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt, **kw)
    return path


def png_files(folder: Path, n: int, size: tuple[int, int]) -> tuple[list[str], list[str]]:
    """``n`` random RGB PNGs in ``folder`` and a made-up cache key (``hashN``) for each."""
    paths = []
    for i in range(n):
        p = folder / f"{i}.png"
        save(rgb(i, size), p)
        paths.append(str(p))
    return paths, [f"hash{i}" for i in range(n)]


def jpeg_bytes(seed: int, size: tuple[int, int] = (24, 16), **kw: object) -> bytes:
    buf = io.BytesIO()
    rgb(seed, size).save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body))
        + kind
        + body
        + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


def raw_png(
    width: int, height: int, bit_depth: int, color_type: int, pixels: bytes | None = None
) -> bytes:
    """A PNG written by hand: lets tests make 16-bit colour and huge-header files."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    data = zlib.compress(pixels if pixels is not None else b"")
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
    )


def png16_rgb(width: int = 4, height: int = 3) -> bytes:
    rows = b"".join(b"\x00" + bytes(range(6 * width)) for _ in range(height))
    return raw_png(width, height, 16, 2, rows)


def exif_rotated_jpeg(path: Path, stored: tuple[int, int] = (40, 20), orientation: int = 6) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(rgb(7, stored), path, "JPEG", exif=exif.tobytes())


def body_corrupt_jpeg(seed: int = 0) -> bytes:
    """A JPEG whose header opens but whose Huffman table is damaged: only a decode sees it."""
    good = bytearray(jpeg_bytes(seed, (64, 64)))
    dht = good.find(b"\xff\xc4")
    good[dht + 5] ^= 0xFF
    return bytes(good)


def colour_image(
    rng: np.random.Generator, colour: tuple[int, int, int], size: int = 20
) -> Image.Image:
    """A noisy image whose mean colour says its class (learnable in a few epochs)."""
    base = np.array(colour, dtype=np.float64)
    arr = base + rng.normal(0, 40, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


COLOURS = {"blue": (40, 40, 200), "green": (40, 200, 40), "red": (200, 40, 40)}


# -- processes (Linux /proc) -------------------------------------------------------------


def child_pids(pid: int) -> list[int]:
    """The direct children of process ``pid`` (empty once it is gone)."""
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def is_running(pid: int) -> bool:
    """Alive and not a zombie (an exited child nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


#: run ``argv[1:]`` with Ctrl-C (SIGINT) at its default disposition. A process inherits an
#: ignored SIGINT (a script's ``cmd &`` starts its jobs that way, and the tests with them),
#: and Python installs no KeyboardInterrupt handler in a process that starts with it
#: ignored: a Ctrl-C test run so would fail however well the command handles Ctrl-C.
_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def interruptible(cmd: list[str]) -> list[str]:
    """``cmd`` as it runs from a terminal: Ctrl-C raises KeyboardInterrupt in it, even
    when the tests themselves were started with SIGINT ignored (the process keeps its
    pid through the exec, so its workers are its children)."""
    return [sys.executable, "-c", _DEFAULT_SIGINT, *cmd]


def all_gone(pids: list[int], timeout: float = 10.0) -> bool:
    """Wait up to ``timeout`` seconds for every process of ``pids`` to end."""
    deadline = time.monotonic() + timeout
    while any(is_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not any(is_running(p) for p in pids)


_SCRIPT = Path(sys.executable).parent / "imgbalance"
#: the installed console script (``python -m imgbalance`` where there is none)
ENTRY = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "imgbalance"]


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``imgbalance ARGS...`` through the console script: wide, uncoloured, no stdin."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [*ENTRY, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


#: the files of a run that say what its model predicted and scored
RUN_OUTPUTS = ("predictions.csv", "val_predictions.csv", "test_metrics.csv")


def differing_run_files(a: Path, b: Path, names: tuple[str, ...] = RUN_OUTPUTS) -> list[str]:
    """The files among ``names`` whose bytes differ between run folders ``a`` and ``b``."""
    return [n for n in names if (a / n).read_bytes() != (b / n).read_bytes()]
