"""Compare two output folders of imgbalance byte for byte (a refactor must change none).

    python benchmarks/tools/compare_outputs.py BEFORE AFTER

Every file under both folders is compared; ``summary.json`` without its ``timings`` and
``balance_summary.txt`` without its ``timings:`` line, since those are wall-clock
measurements. A ``results.csv`` (an experiment's) is compared on its metric columns,
leaving out training times and memory; a run's files that hold times, memory,
hardware or the git revision (``experiment_summary.json``, ``history.csv``,
``environment.json``, the report) are left out. Exit code 0 when nothing differs, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

_TIMED = re.compile(r"time|_s$|memory|seconds")
_RUN_TIMED = {
    "experiment_summary.json",
    "history.csv",
    "environment.json",
    "report.md",
    "report.html",
    "grid.json",
    "results.csv",  # compared on its metric columns below
}


def normalised(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name == "summary.json":
        d = json.loads(data)
        d.pop("timings", None)
        return json.dumps(d, sort_keys=True).encode()
    if path.name == "balance_summary.txt":
        return re.sub(rb"timings: .*\n", b"", data)
    if path.name == "error.json":
        d = json.loads(data)
        for key in ("traceback", "seconds"):
            d.pop(key, None)
        return json.dumps(d, sort_keys=True).encode()
    return data


def metric_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return {
            r["run"]: {k: v for k, v in r.items() if not _TIMED.search(k)}
            for r in csv.DictReader(fh)
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--skip", default=r"(^|/)cache(/|$)|\.log$", help="regex of paths to skip")
    args = ap.parse_args()
    skip = re.compile(args.skip)

    def files(root: Path) -> set[str]:
        return {
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and not skip.search(p.relative_to(root).as_posix())
        }

    a, b = files(args.before), files(args.after)
    # files of a run that hold wall-clock times, memory, hardware or the git revision
    timed_out = {f for f in a | b if Path(f).name in _RUN_TIMED}
    common = sorted((a & b) - timed_out)
    differ = [f for f in common if normalised(args.before / f) != normalised(args.after / f)]
    print(f"only in {args.before}: {len(a - b)}  only in {args.after}: {len(b - a)}")
    print(f"{len(common)} files compared, {len(differ)} differ")
    for f in differ[:20]:
        print("  differs:", f)
    bad = bool(a - b or b - a or differ)
    for f in sorted(x for x in a & b if x.endswith("results.csv")):
        ra, rb = metric_rows(args.before / f), metric_rows(args.after / f)
        changed = [run for run in ra if ra[run] != rb.get(run)]
        print(f"{f}: {len(ra)} runs, {len(changed)} with other metrics {changed[:5]}")
        bad = bad or bool(changed) or set(ra) != set(rb)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
