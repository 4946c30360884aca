"""One error family at the boundary, and ``random_state`` on the public verbs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import imgbalance
from imgbalance import balancing
from imgbalance.cli import app
from imgbalance.errors import EXIT_ERROR

from conftest import tree_digest


def test_cli_maps_only_imgbalance_errors_to_exit_1(
    balanced_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["balance", str(balanced_tree), str(balanced_tree / "out")])
    assert r.exit_code == EXIT_ERROR and "Error:" in r.output and r.exception is not None
    assert isinstance(r.exception, SystemExit)  # a clear message, no traceback

    def bug(*args: object, **kwargs: object) -> None:
        raise ValueError("operands could not be broadcast together")  # numpy's kind of bug

    monkeypatch.setattr(balancing, "plan", bug)
    r = runner.invoke(app, ["balance", str(balanced_tree), str(tmp_path / "out")])
    assert isinstance(r.exception, ValueError)  # not swallowed into "Error: ..." and exit 1
    assert "operands could not be broadcast" in str(r.exception)


def test_user_input_errors_are_imgbalance_errors_and_value_errors(balanced_tree: Path) -> None:
    for call in (
        lambda: imgbalance.split(balanced_tree, val=0.6, test=0.6),
        lambda: imgbalance.balance(balanced_tree, None, method="smoot", dry_run=True),
        lambda: imgbalance.balance(balanced_tree, None, dry_run=True, features="pca:0"),
        lambda: imgbalance.plan_arrays(np.zeros((3, 2)), [0, 1], ["a", "b"]),
    ):
        with pytest.raises(imgbalance.ConfigError) as info:
            call()
        assert isinstance(info.value, ValueError)


def test_random_state_int_generator_none_and_the_old_seed_name(balanced_tree: Path) -> None:
    def counts_and_recipes(**kw: object) -> tuple[object, str]:
        p = imgbalance.plan(balanced_tree, "smote", **kw)  # type: ignore[arg-type]
        return p.counts_after(), p.plan.to_json()

    a = counts_and_recipes(random_state=3)
    assert a == counts_and_recipes(random_state=3)
    assert a != counts_and_recipes(random_state=4)
    g1 = counts_and_recipes(random_state=np.random.default_rng(3))
    assert g1 == counts_and_recipes(random_state=np.random.default_rng(3))  # same stream
    assert '"seed": null' in g1[1]  # a Generator is not a seed to record
    fresh = counts_and_recipes(random_state=None)
    assert fresh[0] == a[0]  # counts are the target's; the recipes are drawn afresh
    with pytest.warns(DeprecationWarning, match=r"plan\(seed=...\) is deprecated"):
        old = counts_and_recipes(seed=3)
    assert old == a
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s1 = imgbalance.split(balanced_tree, random_state=5)
    with pytest.warns(DeprecationWarning):
        s2 = imgbalance.split(balanced_tree, seed=5)
    assert s1.rows == s2.rows and s1.seed == 5


@pytest.mark.parametrize("bad", [-1, "3", 1.5, True])
def test_a_random_state_that_is_not_a_seed_is_a_clear_error(
    balanced_tree: Path, bad: object
) -> None:
    """split(random_state=-1) was numpy's ValueError from inside its seeding."""
    with pytest.raises(imgbalance.ImgBalanceError, match="random_state must be an integer >= 0"):
        imgbalance.split(balanced_tree, random_state=bad)  # type: ignore[arg-type]
    with pytest.raises(imgbalance.ImgBalanceError, match="random_state must be an integer >= 0"):
        imgbalance.plan(balanced_tree, "smote", random_state=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args",
    [
        ["split", "{data}", "--out", "{out}", "--seed", "-1"],
        ["balance", "{data}", "{out}", "--seed", "-1"],
        ["balance", "{data}", "{out}", "--method", "smote", "--k-neighbors", "0"],
        ["analyze", "{data}", "--workers", "0"],
    ],
)
def test_cli_numbers_out_of_range_are_refused_by_name(
    balanced_tree: Path, tmp_path: Path, args: list[str]
) -> None:
    """--seed -1 was a numpy traceback; --workers 0 and --k-neighbors 0 were accepted."""
    argv = [a.format(data=balanced_tree, out=tmp_path / "out") for a in args]
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 2 and "Invalid value for '--" in r.output, r.output
    assert "Traceback" not in r.output and not (tmp_path / "out").exists()


def test_balance_preview_uses_the_runs_seed(
    balanced_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeds = []
    real = balancing.plot_balance

    def spy(result: object, out: Path, seed: int = 0, **kw: object) -> None:
        seeds.append(seed)
        real(result, out, seed=seed)  # type: ignore[arg-type]

    monkeypatch.setattr(balancing, "plot_balance", spy)
    before = tree_digest(balanced_tree)
    for s in (0, 7):
        imgbalance.balance(balanced_tree, tmp_path / f"out{s}", "mixup", random_state=s, workers=1)
    assert seeds == [0, 7]
    assert (tmp_path / "out7" / "preview.png").is_file()
    assert tree_digest(balanced_tree) == before
