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


def copy_report(
    runs: Path,
    out: Path,
    info: dict[str, Any],
    extra: tuple[str, ...] = (),
    paths: dict[str, str] | None = None,
) -> None:
    """Write the report of ``runs``, copy it, its plots and ``extra`` files to ``out``, and
    write ``out/study.json`` (``info`` and the date). Checkpoints and rendered sets stay
    behind. In the text files copied, each absolute path prefix of ``paths`` (and the runs
    folder) is written as its short name, so a study's files name no machine's folders."""
    write_report(runs)
    out.mkdir(parents=True, exist_ok=True)
    short = {str(runs.resolve()): "RUNS", str(runs): "RUNS", **(paths or {})}

    def relative(text: str) -> str:
        for prefix in sorted(short, key=len, reverse=True):  # the longest first
            text = text.replace(prefix, short[prefix])
        return text

    for f in [*REPORT_FILES, *extra, *(p.name for p in runs.glob("*.png"))]:
        if f.endswith((".csv", ".md", ".html", ".json")):
            (out / f).write_text(relative((runs / f).read_text(encoding="utf-8")), "utf-8")
        else:
            shutil.copy2(runs / f, out / f)
    info = {**info, "date": time.strftime("%Y-%m-%d")}
    (out / "study.json").write_text(relative(json.dumps(info, indent=2)) + "\n")


def run(main: Callable[[], None]) -> None:
    """Run a script's ``main``: a user error (a bad grid, an output inside the input) ends
    it with the library's message and exit code 1 (``EXIT_ERROR``), as the CLI does, not a
    traceback (the exit codes are listed in ``imgbalance.errors``); Ctrl-C ends it with
    one line and exit code 130."""
    try:
        main()
    except ImgBalanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_ERROR) from None
    except KeyboardInterrupt:  # the grid keeps its finished runs: the same command resumes
        print("interrupted: run the same command again to resume", file=sys.stderr)
        raise SystemExit(130) from None
