"""Every target form against every method kind: resolve_target, and real plans."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgbalance.errors import ImgBalanceError
from imgbalance.methods import METHODS, create_method, list_methods
from imgbalance.planner import plan_arrays
from imgbalance.planning.targets import parse_target, resolve_target

COUNTS = {"big": 100, "mid": 40, "small": 10}


@pytest.mark.parametrize(
    ("target", "over", "under"),
    [
        ("auto", {"big": 100, "mid": 100, "small": 100}, {"big": 10, "mid": 10, "small": 10}),
        ("ratio:0.5", {"big": 100, "mid": 50, "small": 50}, {"big": 20, "mid": 20, "small": 10}),
        ("ratio:1", {"big": 100, "mid": 100, "small": 100}, {"big": 10, "mid": 10, "small": 10}),
        ("count:30", {"big": 30, "mid": 30, "small": 30}, {"big": 30, "mid": 30, "small": 30}),
        ({"small": 60}, {"big": 100, "mid": 40, "small": 60}, {"big": 100, "mid": 40, "small": 60}),
    ],
)
def test_resolve_target_per_kind(target: object, over: dict, under: dict) -> None:
    assert resolve_target(target, COUNTS, kind="over") == over  # type: ignore[arg-type]
    assert resolve_target(target, COUNTS, kind="under") == under  # type: ignore[arg-type]


def test_ratio_under_is_a_cap_on_the_largest_class() -> None:
    """random-under --target ratio:0.5 on {big: 100, small: 10}: big <= 20 (it did nothing)."""
    got = resolve_target("ratio:0.5", {"big": 100, "small": 10}, kind="under")
    assert got == {"big": 20, "small": 10}
    assert min(got.values()) / max(got.values()) >= 0.5


def test_empty_classes_and_bad_targets() -> None:
    counts = {"a": 5, "b": 0}
    assert resolve_target("auto", counts) == {"a": 5, "b": 0}
    assert resolve_target("count:3", counts) == {"a": 3, "b": 0}
    with pytest.raises(ImgBalanceError, match=r"empty class\(es\) \['b'\]"):
        resolve_target({"b": 4}, counts)
    with pytest.raises(ImgBalanceError, match=r"unknown class\(es\) \['zz'\]"):
        resolve_target({"zz": 4}, counts)
    with pytest.raises(ImgBalanceError, match="must be in"):
        parse_target("ratio:1.5")
    with pytest.raises(ImgBalanceError, match="whole number"):
        parse_target("count:2.5")
    with pytest.raises(ImgBalanceError, match="not a number"):
        parse_target("ratio:half")
    with pytest.raises(ImgBalanceError, match="Unknown target"):
        parse_target("most")


def test_yaml_target_file(tmp_path: Path) -> None:
    good = tmp_path / "t.yaml"
    good.write_text("small: 25\nmid: 45\n", encoding="utf-8")
    assert parse_target(str(good)) == {"small": 25, "mid": 45}
    bad = tmp_path / "bad.yaml"
    bad.write_text("!!python/object/apply:os.system ['echo hi']\n", encoding="utf-8")
    with pytest.raises(ImgBalanceError, match=r"bad.yaml.*not a readable YAML"):  # never run
        parse_target(str(bad))
    with pytest.raises(ImgBalanceError, match="does not exist"):
        parse_target(str(tmp_path / "missing.yaml"))


CLASSES = list(COUNTS)
TARGETS = ["auto", "ratio:0.5", "count:30", {"small": 30}]


def _features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), list(COUNTS.values()))
    centers = np.array([[0, 0, 0, 0], [4, 0, 0, 0], [0, 4, 0, 0]], dtype=np.float32)
    return centers[y] + rng.normal(0, 1, (len(y), 4)).astype(np.float32), y


def _methods_of(kind: str) -> list[str]:
    return [n for n in list_methods() if METHODS.get(n).kind == kind]


@pytest.mark.parametrize("target", TARGETS, ids=str)
@pytest.mark.parametrize("method", list_methods())
def test_every_method_obeys_every_target_form(method: str, target: object) -> None:
    """The expectation comes from the method's kind, so a new method gets real checks."""
    X, y = _features()
    kind = create_method(method).kind
    plan = plan_arrays(X, y, CLASSES, method, target, random_state=0)  # type: ignore[arg-type]
    before, after = plan.counts_before(), plan.counts_after()
    over = resolve_target(target, before, kind="over")  # type: ignore[arg-type]
    under = resolve_target(target, before, kind="under")  # type: ignore[arg-type]
    if kind == "over":
        assert after == {c: max(before[c], over[c]) for c in CLASSES}
    elif kind == "under":
        assert after == {c: min(before[c], under[c]) for c in CLASSES}
    elif kind == "clean":  # the rule decides, not the target: same plan as with auto
        auto = plan_arrays(X, y, CLASSES, method, "auto", random_state=0)
        assert after == auto.counts_after()
        assert all(after[c] <= before[c] for c in CLASSES)
    else:
        assert kind == "hybrid", f"{method} has an unknown kind {kind!r}"
        # hybrids keep every original by default and add towards the target
        assert sorted(plan.kept) == list(range(len(y)))
        assert all(after[c] >= before[c] for c in CLASSES)
        if method != "stem":  # stem adds Mixup images on top of its target
            assert all(after[c] <= max(before[c], over[c]) for c in CLASSES)


def test_every_kind_has_methods() -> None:
    assert {METHODS.get(n).kind for n in list_methods()} == {"over", "under", "clean", "hybrid"}
    assert _methods_of("under") == ["random-under"]
