"""What the effectiveness scripts share: copying a runs folder's report into the repository."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgbalance.errors import EXIT_ERROR, ImgBalanceError
from imgbalance.experiments.report import write_report

REPORT_FILES = ("results.csv", "report.md", "report.html")


def copy_report(runs: Path, out: Path, info: dict[str, Any]) -> None:
    """Write the report of ``runs``, copy it and its plots to ``out``, and write
    ``out/study.json`` (``info`` and the date). Checkpoints and rendered sets stay behind."""
    write_report(runs)
    out.mkdir(parents=True, exist_ok=True)
    for f in [*REPORT_FILES, *(p.name for p in runs.glob("*.png"))]:
        shutil.copy2(runs / f, out / f)
    info = {**info, "date": time.strftime("%Y-%m-%d")}
    (out / "study.json").write_text(json.dumps(info, indent=2) + "\n")


def run(main: Callable[[], None]) -> None:
    """Run a script's ``main``: a user error (a bad grid, an output inside the input) ends
    it with the library's message and exit code 1 (``EXIT_ERROR``), as the CLI does, not a
    traceback (the exit codes are listed in ``imgbalance.errors``)."""
    try:
        main()
    except ImgBalanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_ERROR) from None
