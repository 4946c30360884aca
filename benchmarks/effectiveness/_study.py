"""What the effectiveness scripts share: copying a runs folder's report into the repository."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from imgbalance.training.report import write_report

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
