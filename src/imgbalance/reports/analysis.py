"""Terminal and file reports for ``analyze`` and ``split``."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from .._fs import atomic_write_text, output_faults
from .._text import shown
from ..dataset.catalog import ratios
from ..errors import OutputError
from .balance import STEP_DEFAULTS, class_breakdown

if TYPE_CHECKING:
    from ..dataset.catalog import Catalog, Problem
    from ..dataset.splits import SplitResult
    from ..rendering.outputs import BalanceResult

__all__ = [
    "ANALYSIS_OUTPUTS",
    "check_analysis_out",
    "print_analysis",
    "print_skipped",
    "print_split",
    "print_titled",
    "write_analysis",
]

_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def _size(v: list[int] | None) -> str:
    return f"{v[0]}x{v[1]}" if v else "-"


def _tally(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" if len(d) > 1 else k for k, v in d.items()) or "-"


def _listed_in(written_to: Path | None) -> str:
    """Where the full lists are: the analysis.json written to ``written_to``, or how to
    get them when no file is written."""
    if written_to is not None:
        return f"listed in {shown(written_to / 'analysis.json')}"
    return "rerun with --json (or --out DIR) to list them all"


def _problem_table(problems: list[Problem], per_code: int, written_to: Path | None) -> Table:
    """Problems grouped by code, errors first; at most ``per_code`` files shown per code."""
    table = Table(show_header=True, header_style="bold")
    for col in ("severity", "file", "problem", "what is wrong / fix"):
        table.add_column(col, overflow="fold")
    by_code: dict[tuple[int, str], list[Problem]] = defaultdict(list)
    for p in problems:
        by_code[(_SEVERITY_ORDER[p.severity], p.code)].append(p)
    for (_, code), group in sorted(by_code.items()):
        style = _SEVERITY_STYLE[group[0].severity]
        for p in group[:per_code]:
            table.add_row(
                p.severity, shown(p.path), code, shown(f"{p.message}. Fix: {p.fix}."), style=style
            )
        if len(group) > per_code:
            table.add_row(
                "",
                f"... {len(group) - per_code} more",
                code,
                _listed_in(written_to),
                style=style,
            )
    return table


def print_titled(console: Console, title: str, table: Table) -> None:
    """``title`` on a line of its own above ``table``: a rich table's own title wraps at the
    table's width (a narrow table broke "split (seed 42): train 70%, val 15%, test 15%" in
    two at any terminal width); this one wraps only at the terminal's."""
    console.print(title, style="table.title")
    console.print(table)


def print_analysis(
    catalog: Catalog, console: Console, per_code: int = 5, *, written_to: Path | None = None
) -> None:
    """Per-class table, both ratios, then the problems (grouped) and skipped files.

    ``written_to`` is the folder :func:`write_analysis` writes ``analysis.json`` into (None:
    none is written, and the report points at ``--json`` instead)."""
    data = catalog.to_dict()
    minority = set(data["minority_classes"])
    title = (
        f"{shown(catalog.root)}  ({data['total_images']} readable images, "
        f"{len(catalog.classes)} classes)"
    )
    table = Table()
    for col, kw in (
        ("idx", {"justify": "right"}),
        ("class", {}),
        ("count", {"justify": "right"}),
        ("share", {"justify": "right"}),
        ("min size", {}),
        ("max size", {}),
        ("modes", {}),
        ("formats", {}),
        ("problems", {"justify": "right"}),
    ):
        table.add_column(col, **kw)  # type: ignore[arg-type]
    for row in data["per_class"]:
        style = (
            "bold red"
            if row["count"] == 0
            else ("dark_orange" if row["class"] in minority else None)
        )
        table.add_row(
            str(row["label"]),
            shown(row["class"]),
            str(row["count"]),
            f"{row['share']:.1%}",
            _size(row["min_size"]),
            _size(row["max_size"]),
            _tally(row["modes"]),
            _tally(row["formats"]),
            str(row["problems"] or ""),
            style=style,
        )
    print_titled(console, title, table)
    br, ir = data["balance_ratio"], data["imbalance_ratio"]
    if br is not None:
        counts = data["counts"]
        nz = {c: n for c, n in counts.items() if n}
        lo, hi = min(nz, key=lambda c: nz[c]), max(nz, key=lambda c: nz[c])
        console.print(
            f"balance_ratio   = min/max = {nz[lo]}/{nz[hi]} = [bold]{br:.4f}[/]  "
            f"(1 = balanced; smallest class {shown(repr(lo))}, largest {shown(repr(hi))})"
        )
        console.print(f"imbalance_ratio = max/min = {nz[hi]}/{nz[lo]} = [bold]{ir:.2f}[/]")
    if minority:
        console.print(
            "minority classes (< 50% of the largest): " + shown(", ".join(sorted(minority)))
        )
    problems = catalog.problems
    if problems:
        console.print(
            f"\n[bold]{len(problems)} problem(s)[/]: "
            + ", ".join(f"{code} {n}" for code, n in catalog.problem_counts().items())
        )
        console.print(_problem_table(problems, per_code, written_to))
    print_skipped(catalog, console)
    if catalog.near_duplicates:
        cross = sum(not p["same_class"] for p in catalog.near_duplicates)
        console.print(
            f"\n[yellow]approximate[/]: {len(catalog.near_duplicates)} near-duplicate "
            f"pair(s) by perceptual hash ({cross} across classes); {_listed_in(written_to)}"
        )


def analysis_json(catalog: Catalog) -> str:
    return json.dumps(catalog.to_dict(), indent=2, ensure_ascii=False) + "\n"


#: the files ``analyze --out`` writes (and ``--overwrite`` replaces)
ANALYSIS_OUTPUTS = ("analysis.json", "class_distribution.png", "samples.png")


def check_analysis_out(out: Path) -> None:
    """Refuse to replace an ``analysis.json`` or plot that an earlier analyze did not write.

    An earlier analysis is recognised by its ``analysis.json`` (imgbalance's version, the
    root, the counts); the plots beside it are its own. Without one, a
    ``class_distribution.png`` there is someone else's, and ``--overwrite`` must not
    replace it.
    """
    present = [n for n in ANALYSIS_OUTPUTS if (out / n).exists() or (out / n).is_symlink()]
    if not present:
        return
    try:
        earlier = json.loads((out / "analysis.json").read_text(encoding="utf-8"))
        if isinstance(earlier, dict) and {"imgbalance_version", "root", "counts"} <= set(earlier):
            return
    except (OSError, ValueError):
        pass
    raise OutputError(
        f'"{out / present[0]}" is not an output of an earlier imgbalance analyze, and this '
        "analysis would write there. imgbalance never replaces files it did not write: move "
        "it, or choose another folder for --out."
    )


def write_analysis(catalog: Catalog, out: Path, samples_per_class: int = 6) -> list[Path]:
    """Write ``analysis.json``, ``class_distribution.png`` and ``samples.png`` into ``out``
    (an ``analysis.json`` or plot there that imgbalance did not write is an error)."""
    from .plotting import plot_class_distribution, plot_samples

    check_analysis_out(out)
    with output_faults(out, "run the same command again"):
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "analysis.json", analysis_json(catalog))
        plot_class_distribution(catalog, out / "class_distribution.png")
        plot_samples(catalog, out / "samples.png", per_class=samples_per_class)
    return [out / name for name in ANALYSIS_OUTPUTS]


def print_skipped(catalog: Catalog, console: Console) -> None:
    """The files the scan left out (not images, hidden, links out of the tree, broken
    links), grouped by reason, and the first ten by name."""
    if not catalog.skipped:
        return
    reasons: dict[str, int] = {}
    for s in catalog.skipped:
        reasons[s.reason] = reasons.get(s.reason, 0) + 1
    console.print(
        f"\nskipped {len(catalog.skipped)} file(s) that are not dataset images: "
        + shown(", ".join(f"{r} ({n})" for r, n in sorted(reasons.items())))
    )
    for s in catalog.skipped[:10]:
        console.print(f"  [dim]{shown(s.path)}: {shown(s.reason)}[/]")


def print_split(result: SplitResult, summary: dict[str, Any], console: Console) -> None:
    """Per-class counts in each split."""
    counts = result.counts()
    title = f"split (seed {result.seed}): " + ", ".join(
        f"{s} {result.fractions[s]:.0%}" for s in counts
    )
    table = Table()
    table.add_column("class")
    for s in counts:
        table.add_column(s, justify="right")
    for c in result.catalog.classes:
        missing = any(counts[s][c] == 0 for s in counts if result.fractions[s] > 0)
        table.add_row(
            shown(c),
            *(str(counts[s][c]) for s in counts),
            style="dark_orange" if missing else None,
        )
    table.add_row("[bold]total[/]", *(f"[bold]{sum(counts[s].values())}[/]" for s in counts))
    print_titled(console, title, table)
    console.print(
        f"{summary['groups']} group(s) kept whole (groups, exact and near duplicates never "
        "cross splits)"
    )
    print_skipped(result.catalog, console)


def print_balance(result: BalanceResult, console: Console) -> None:
    """Before/after counts per class, with the synthetic images by method and op."""
    p = result.plan
    before, after, synth = p.counts_before(), p.counts_after(), p.synthetic_by_op()
    target = p.config.get("target")
    target = STEP_DEFAULTS if target is None else target
    title = f"{shown(p.config.get('method'))} (target {shown(target)}, seed {p.config.get('seed')})"
    table = Table()
    for col in ("class", "before", "after", "new images", "originals removed"):
        table.add_column(col, justify="left" if col in ("class", "new images") else "right")
    kept = {c: part["kept"] for c, part in class_breakdown(p).items()}
    for c in p.classes:
        made = ", ".join(f"{k} {v}" for k, v in synth.get(c, {}).items())
        table.add_row(
            shown(c),
            str(before[c]),
            str(after[c]),
            made or "-",
            str(before[c] - kept[c]) if before[c] - kept[c] else "",
        )
    print_titled(console, title, table)
    for label, counts in (("before", before), ("after", after)):
        r = ratios(counts)
        if r["balance_ratio"] is not None:
            console.print(
                f"{label:6s}: balance_ratio min/max = {r['balance_ratio']:.4f}, "
                f"imbalance_ratio max/min = {r['imbalance_ratio']:.2f}"
            )
