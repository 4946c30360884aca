"""A recipe's JSON form: every field, copied, and read back the same."""

from __future__ import annotations

import json
from dataclasses import asdict, fields

from imgbalance.planning.recipes import Recipe


def test_to_dict_is_asdict_with_lists_and_floats() -> None:
    params = {"angle": 12.5, "hflip": True, "nested": {"a": [1, 2]}}
    r = Recipe(op="augment", label=2, parents=(4,), weights=(1,), method="augment",
               params=params, seed=7)  # fmt: skip
    d = r.to_dict()
    assert set(d) == {f.name for f in fields(Recipe)}  # a new field must be written out
    want = asdict(r)
    want["parents"], want["weights"] = [4], [1.0]
    assert d == want and isinstance(d["weights"][0], float)
    assert Recipe.from_dict(json.loads(json.dumps(d))) == Recipe(
        op="augment", label=2, parents=(4,), weights=(1.0,), method="augment",
        params={"angle": 12.5, "hflip": True, "nested": {"a": [1, 2]}}, seed=7,
    )  # fmt: skip
    d["params"]["nested"]["a"].append(3)  # a copy, as asdict gave: the recipe is unchanged
    assert r.params["nested"]["a"] == [1, 2]


def test_to_dict_of_a_blend_without_params() -> None:
    r = Recipe(op="smote", label=0, parents=(1, 3), weights=(0.25, 0.75), method="smote")
    assert r.to_dict() == {"op": "smote", "label": 0, "parents": [1, 3],
                           "weights": [0.25, 0.75], "method": "smote", "params": {},
                           "seed": None}  # fmt: skip
