"""``methods``, ``list`` and ``demo``: what imgbalance offers, and the whole story."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .common import app, err_console, errors_to_exit, out_console, progress_bars


@app.command("methods")
def methods_cmd() -> None:
    """List the balancing methods and their parameters."""
    from rich.table import Table

    from ..methods import create_method, list_methods

    table = Table(title="balancing methods", title_justify="left", show_lines=True)
    for col in ("method", "kind", "what it does", "parameters (defaults)"):
        table.add_column(col, overflow="fold")
    for name in list_methods():
        m = create_method(name)
        doc = " ".join((type(m).__doc__ or "").split("\n\n")[0].split())
        table.add_row(name, m.kind, doc, ", ".join(f"{k}={v!r}" for k, v in m.params.items()))
    out_console.print(table)


class Family(str, Enum):
    methods = "methods"
    losses = "losses"
    class_weights = "class-weights"
    samplers = "samplers"
    mixing = "mixing"
    models = "models"


@app.command("list")
@errors_to_exit
def list_cmd(
    family: Annotated[Family, typer.Argument(help="Which registry to list.")] = Family.methods,
) -> None:
    """List the registered names of one family, with a line on each.

    These are what --method, --loss, --sampler, --mixing, --model and class_weights accept.
    """
    from rich.table import Table

    from .registries import registry_of

    registry, extra = registry_of(family.value)
    table = Table(title=f"{family.value}", title_justify="left")
    table.add_column("name")
    table.add_column("what it is", overflow="fold")
    for entry in registry.entries():
        table.add_row(entry.name, entry.help)
    for name, what in extra:
        table.add_row(name, what)
    out_console.print(table)


@app.command()
@errors_to_exit
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo data and results.")] = Path(
        "imgbalance-demo"
    ),
    experiment: Annotated[
        bool, typer.Option(help="Also train and compare techniques (needs the torch extra).")
    ] = True,
) -> None:
    """Build the long-tailed digits demo dataset; analyze, split and balance it; then train
    and compare a few techniques over 3 seeds and write a report."""
    from ..demo import run_demo

    run_demo(
        out,
        experiment=experiment,
        out_console=out_console,
        err_console=err_console,
        progress=progress_bars,
    )
