"""Names are shown, never obeyed: terminal escape sequences and rich markup in file,
class and arm names reach the terminal written out."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from imgbalance._text import shown
from imgbalance.cli import app

from imgtools import rgb, save

ESC = "\x1b"


def test_shown() -> None:
    assert shown(f"a{ESC}[31mred{ESC}[0m") == "a\\x1b[31mred\\x1b[0m"
    assert shown("[bold]x[/]") == "\\[bold]x\\[/]"
    assert shown("line\nnext") == "line\\x0anext"
    assert shown("line\nnext", keep_newlines=True) == "line\nnext"
    assert shown("\x9b2J") == "\\x9b2J"  # the one-byte CSI too


def test_hostile_names_are_printed_as_they_are_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    hostile_class = f"evil{ESC}]0;pwned{ESC}\\"
    save(rgb(1, (8, 8)), data / "[bold]cats" / "a.png")
    save(rgb(2, (8, 8)), data / "[bold]cats" / "b.png")
    save(rgb(3, (8, 8)), data / hostile_class / f"[/]x{ESC}[2J.png")
    (data / hostile_class / "broken [red]y.png").write_bytes(b"not an image")
    res = CliRunner().invoke(app, ["analyze", str(data)])
    assert res.exit_code == 0, res.output
    assert ESC not in res.output  # nothing reaches the terminal raw
    assert "[bold]cats" in res.output  # markup in a name is shown, not applied
    assert "\\x1b]0;pwned" in res.output
    assert "broken [red]y.png" in res.output
    # an error message that quotes such a name prints instead of crashing rich
    res = CliRunner().invoke(app, ["split", str(data / "[/]none"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "[/]none" in res.output and "Traceback" not in res.output


def test_plain_output_to_a_terminal_writes_control_characters_out() -> None:
    """predict's CSV on standard output: to a terminal, ESC and BEL in a class or file
    name are written out (a pipe or --out gets the names as they are)."""
    from imgbalance._text import control_escaped

    assert control_escaped("p:esc\x1b[31mred,x\x07\n1,2\n") == "p:esc\\x1b[31mred,x\\x07\n1,2\n"
    assert control_escaped("[bold] plain\n") == "[bold] plain\n"  # no markup escaping


def test_a_class_name_without_a_glyph_warns_nothing(tmp_path: Path) -> None:
    import warnings

    from imgbalance.reports.plotting import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.set_title("esc\x1b[31mred")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        pyplot()  # the filter is installed with pyplot
        save_figure(fig, tmp_path / "f.png")
    assert not [w for w in caught if "Glyph" in str(w.message)]
