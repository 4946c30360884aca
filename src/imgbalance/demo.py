"""The built-in demo dataset: real handwritten digits with a long-tailed profile.

scikit-learn ships 1,797 real 8x8 scans of handwritten digits (the UCI
"optdigits" test set) inside the package, so the demo needs no download.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ._fs import atomic_path, output_faults
from ._text import shown
from ._version import __version__
from .errors import OutputError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["DEMO_MARKER", "long_tail_counts", "make_demo_dataset", "run_demo"]

DEMO_MARKER = ".imgbalance-demo"


def long_tail_counts(n_max: int, n_classes: int, imbalance_ratio: float) -> list[int]:
    """Exponential profile from ``n_max`` down to ``n_max / imbalance_ratio`` (at least 1)."""
    if n_classes == 1:
        return [n_max]
    return [
        max(1, round(n_max * imbalance_ratio ** (-k / (n_classes - 1)))) for k in range(n_classes)
    ]


def make_demo_dataset(
    out: str | os.PathLike[str],
    *,
    imbalance_ratio: float = 30.0,
    size: int = 64,
    seed: int = 0,
) -> dict[str, int]:
    """Write the digits as ``out/digit-<d>/<index>.png``, long-tailed, and return the counts.

    Digit 0 keeps 170 images and digit 9 about ``170 / imbalance_ratio``; the
    choice of images is drawn from ``seed``. Images are upscaled to
    ``size`` x ``size`` grayscale PNG, dark ink on white.

    Examples
    --------
    >>> make_demo_dataset("demo-data")  # doctest: +SKIP
    {'digit-0': 170, 'digit-1': 116, ...}
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise OutputError(f'Destination path "{out}" already exists and is not empty.')
    rng = np.random.default_rng(seed)
    targets = long_tail_counts(170, 10, imbalance_ratio)
    counts: dict[str, int] = {}
    for digit, n in enumerate(targets):
        idx = np.flatnonzero(digits.target == digit)
        chosen = np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False))
        name = f"digit-{digit}"
        (out / name).mkdir(parents=True, exist_ok=True)
        for i in chosen:
            pixels = (255 - digits.images[i] * (255 / 16)).round().astype(np.uint8)
            im = Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.BICUBIC)
            with atomic_path(out / name / f"{int(i):04d}.png") as tmp:
                im.save(tmp, format="PNG")
        counts[name] = len(chosen)
    return counts


#: the demo's folder of training runs, kept by the next demo of the same version
DEMO_RUNS = "runs"


def _marker_text() -> str:
    return f"made by imgbalance demo {__version__}; safe to delete\n"


def prepare_demo_dir(out: Path) -> bool:
    """Create ``out`` for the demo, replacing an earlier demo there, refusing anything else.

    An earlier demo's training runs are kept when the same imgbalance version made them:
    the demo's data, split and grid are the same from one demo to the next (one seed), so
    the grid finds every run finished and the second demo trains nothing. Returns whether
    runs were kept. A demo of another version starts afresh (its numbers may differ)."""
    keep = False
    if out.exists():
        if not out.is_dir():
            raise OutputError(f'Demo output "{out}" exists and is a file. Pass --out elsewhere.')
        marker = out / DEMO_MARKER
        if any(out.iterdir()) and not marker.exists():
            raise OutputError(
                f'Destination path "{out}" already exists and was not made by '
                "`imgbalance demo`. Pass --out with a new folder."
            )
        try:
            keep = marker.read_text(encoding="utf-8") == _marker_text()
        except (OSError, UnicodeDecodeError):
            keep = False
        for child in out.iterdir():
            if child.name == DEMO_MARKER or (keep and child.name == DEMO_RUNS):
                continue
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text(_marker_text(), encoding="utf-8")
    return keep and (out / DEMO_RUNS).is_dir()


def demo_grid(split_dir: Path) -> dict[str, object]:
    """A small comparison on the demo split: the small CNN, five techniques, 3 seeds."""
    return {
        "name": "demo: long-tailed digits",
        "data": str(split_dir.resolve()),
        "seeds": [0, 1, 2],
        "models": ["small-cnn"],
        "defaults": {"image_size": 32, "epochs": 15, "patience": 4, "batch_size": 32},
        "arms": {
            "baseline": {},
            "random-over": {"technique": "random-over"},
            "smote": {"technique": "smote"},
            "weighted-ce": {"loss": "weighted-ce"},
            "focal": {"loss": "focal", "class_weights": "inverse"},
            "balanced-softmax": {"loss": "balanced-softmax"},
        },
    }


def run_demo(
    out: Path,
    *,
    experiment: bool,
    out_console: Console,
    err_console: Console,
    progress: Callable[[], AbstractContextManager[Callable[[str, int, int], None]]],
) -> None:
    """The whole story on the demo digits: build, analyze, split, balance with STEM, then
    (with the torch extra and ``experiment``) train and compare techniques over 3 seeds.

    ``progress()`` opens progress bars (the command line's); the consoles get the tables.
    A full disk or a read-only folder ends with an error naming the file; the next demo
    replaces what this one wrote.
    """
    with output_faults(out, "run `imgbalance demo` again"):
        _story(out, experiment=experiment, out_console=out_console, err_console=err_console,
               progress=progress)  # fmt: skip


def _story(
    out: Path,
    *,
    experiment: bool,
    out_console: Console,
    err_console: Console,
    progress: Callable[[], AbstractContextManager[Callable[[str, int, int], None]]],
) -> None:
    """:func:`run_demo`'s steps."""
    from .balancing import balance
    from .dataset.scanner import scan
    from .dataset.splits import split, write_split
    from .reports.analysis import print_analysis, print_balance, print_split, write_analysis

    kept = prepare_demo_dir(out)
    data = out / "data"
    counts = make_demo_dataset(data)
    err_console.print(
        f"built {sum(counts.values())} real handwritten digits in {data} (long-tailed: "
        + ", ".join(f"{n}" for n in counts.values())
        + ")",
        highlight=False,
    )
    with progress() as update:
        catalog = scan(
            data, verify=True, workers=1, progress=lambda d, t: update(f"scanning {data}", d, t)
        )
    print_analysis(catalog, out_console, written_to=out / "analysis")
    written = write_analysis(catalog, out / "analysis")
    result = split(catalog, random_state=42)
    summary = write_split(result, out / "split", materialize="link")
    print_split(result, summary, out_console)
    out_console.print("\n[bold]Balancing the training split with STEM[/] (SMOTE-ENN, then Mixup)")
    with progress() as update:
        balanced = balance(
            out / "split" / "train",
            out / "balanced",
            method="stem",
            random_state=0,
            progress=update,
        )
    print_balance(balanced, out_console)
    for note in balanced.plan.notes:
        err_console.print(f"[yellow]Note:[/] {shown(note)}", highlight=False)
    report = None
    if experiment:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            err_console.print(
                "[yellow]Note:[/] training needs the torch extra (pip install "
                "'imgbalance[torch]'); skipping the comparison.",
                highlight=False,
            )
        else:
            import json

            from .experiments.grid import run_grid
            from .experiments.report import write_report
            from .experiments.results import aggregate, collect_runs, small_class_warnings

            out_console.print(
                "\n[bold]Comparing techniques[/] (small CNN, 3 seeds, test split)"
                + (" - reusing the runs of the last demo" if kept else "")
            )
            status = run_grid(
                demo_grid(out / "split"),
                out / "runs",
                log=lambda m: err_console.print(shown(m), highlight=False),
            )
            paths = write_report(out / "runs")
            report = paths["html"]
            grid_runs = json.loads((out / "runs" / "grid.json").read_text())["runs"]
            rows = collect_runs(out / "runs")[0]
            print_comparison(aggregate(rows, grid_runs), out_console)
            # the report's warnings, here too: the demo's tail has a handful of test images
            for warning in small_class_warnings(rows, catalog.classes):
                out_console.print(f"[yellow]Warning:[/] {shown(warning)}", highlight=False)
            if status["failed"]:
                err_console.print(f"[red]{status['failed']} run(s) failed[/]", highlight=False)
    out_console.print("\n[bold]Outputs[/]")
    for p in [
        data,
        *written,
        out / "split" / "splits.csv",
        out / "split" / "train",
        out / "balanced",
        out / "balanced" / "manifest.csv",
        out / "balanced" / "balance_summary.txt",
        out / "balanced" / "preview.png",
        *([report] if report else []),
    ]:
        out_console.print(f"  {shown(p)}", highlight=False)


def _change_cell(a: dict[str, Any]) -> tuple[str, str]:
    """The change of macro-F1 against the baseline with its 95% interval, and its
    Holm-corrected p (what the report's verdict reads)."""
    delta = a.get("macro_f1_delta")
    if delta is None:
        return "", ""
    lo, hi = a.get("macro_f1_ci_low"), a.get("macro_f1_ci_high")
    if lo is None or hi is None or lo != lo or hi != hi:
        interval = "no interval"
    else:
        interval = f"{lo:+.3f}, {hi:+.3f}"
    p = a.get("macro_f1_p_holm")
    # the brackets escaped: "[no interval]" is rich markup's syntax for a style
    return f"{delta:+.3f} \\[{interval}]", "" if p is None or p != p else f"{p:.2g}"


def print_comparison(aggs: list[dict[str, Any]], console: Any) -> None:
    """The comparison as a console table that fits 80 columns: mean ± std per technique,
    and the change of macro-F1 against the baseline with its 95% interval and
    Holm-corrected p (the post-hoc variants of the baseline's models are named
    ``+ post-hoc LA`` and ``+ thresholds``)."""
    from rich import box
    from rich.table import Table

    from .reports.analysis import print_titled

    models = ", ".join(dict.fromkeys(str(a["model"]) for a in aggs))
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("technique", "macro-F1", "vs baseline\n[95% CI]", "p\n(Holm)", "minority\nrecall"):
        table.add_column(col, justify="left" if col == "technique" else "right",
                         min_width=23 if col.startswith("vs") else None)  # fmt: skip
    for a in aggs:
        change, p = _change_cell(a)
        recall = a.get("minority_recall")
        table.add_row(
            shown(str(a["arm"]).replace("baseline + ", "+ ", 1)),
            f"{a['macro_f1']:.3f} ± {a['macro_f1_std']:.3f}",
            change,
            p,
            "" if recall is None or recall != recall else f"{recall:.3f}",
        )
    print_titled(console, f"test split, {shown(models)}, mean ± std over 3 seeds", table)
