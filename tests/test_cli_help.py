"""The help reads as a command line: arguments in capitals, flags without a value."""

from __future__ import annotations

import pytest

from imgtools import run_cli


def _help(*args: str) -> str:
    r = run_cli(*args, "--help")
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize(
    ("cmd", "usage"),
    [
        ("analyze", "imgbalance analyze [OPTIONS] DATA"),
        ("balance", "imgbalance balance [OPTIONS] SRC [OUT]"),
        ("predict", "imgbalance predict [OPTIONS] RUN [IMAGES]..."),
    ],
)
def test_usage_names_arguments_in_capitals(cmd: str, usage: str) -> None:
    line = next(ln for ln in _help(cmd).splitlines() if "Usage:" in ln)
    assert usage in line and "{" not in line


def test_a_flag_shows_no_value_and_an_option_shows_its_type() -> None:
    lines = {ln.split()[1]: ln for ln in _help("analyze").splitlines() if ln.startswith("│ --")}
    assert "<bool>" not in lines["--verify"] and "<bool>" not in lines["--strict"]
    assert "<path>" in lines["--out"] and "<int>" in lines["--max-pixels"]
    for cmd in ("analyze", "experiment", "demo"):  # --help itself is a flag too
        assert "<bool>" not in _help(cmd), cmd


def test_a_missing_argument_is_named_as_the_usage_shows_it() -> None:
    r = run_cli("predict")
    assert r.returncode == 2 and "Missing argument 'RUN'" in r.stderr
