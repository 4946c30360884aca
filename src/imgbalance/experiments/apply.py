"""``imgbalance compare --apply DIR``: use the winner of a comparison.

The winner is the technique the verdict found significantly better than no balancing
in macro-F1 (after Holm's correction) with the largest gain; with none, nothing is
written and the reason is returned. ``DIR/split`` is one more split of the data with
the comparison's fractions and first seed (the comparison's split 0), so the test
split stays untouched; an offline winner also balances its training split into
``DIR/train_balanced`` (a folder any framework reads, with ``manifest.csv``). A
training-time winner (a loss, a sampler) has nothing to render: the command to train
with it is returned instead.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .stats import BETTER

__all__ = ["apply_winner", "winner_of"]


def winner_of(verdict: dict[str, Any]) -> dict[str, Any] | None:
    """The trained technique with the largest significant gain in macro-F1, or None."""
    better = [
        t
        for t in verdict["techniques"]
        if t.get("macro_f1_status") == BETTER and not t.get("posthoc")
    ]
    if not better:
        return None
    best: dict[str, Any] = max(better, key=lambda t: float(t["macro_f1_delta"]))
    return best


def apply_winner(
    verdict: dict[str, Any], dest: str | os.PathLike[str], *, overwrite: bool = False
) -> list[str]:
    """Write the winner's split (and balanced training set) into ``dest``; returns what
    was done, in sentences."""
    from ..balancing import balance
    from ..dataset.scanner import scan
    from ..dataset.splits import split
    from .compare import ALL_TECHNIQUES
    from .data import load_split
    from .repeats import without_classes, write_split_without

    plan = verdict["plan"]
    best = winner_of(verdict)
    if best is None:
        return [
            "--apply: no trained technique beats no balancing on this data, so nothing was "
            "written: train on the data as it is (a post-hoc variant of the baseline that "
            "wins is applied to its predictions, `imgbalance predict --posthoc`, not to the "
            "data)."
        ]
    dest = Path(dest)
    settings = ALL_TECHNIQUES[best["arm"]]
    excluded = sorted(plan["excluded_classes"])
    catalog = without_classes(scan(plan["data"]), excluded)
    result = split(catalog, val=plan["val"], test=plan["test"], random_state=plan["seed"])
    write_split_without(result, dest / "split", excluded, overwrite=overwrite)
    gain = f"+{100 * best['macro_f1_delta']:.1f} points of macro-F1"
    done = [f"--apply: the winner is {best['arm']} ({gain}); its split: {dest / 'split'}."]
    technique = settings.get("technique")
    train_flags = _train_flags(settings, plan)
    if technique:
        balance(
            load_split(dest / "split").train_catalog(),
            dest / "train_balanced",
            method=technique,
            random_state=plan["seed"],
            overwrite=overwrite,
            **settings.get("technique_params", {}),
        )
        done.append(
            f"--apply: its training split balanced with {technique}: "
            f"{dest / 'train_balanced'} (provenance in its manifest.csv)."
        )
    done.append(
        f"--apply: to train {best['arm']} as the comparison did: `imgbalance train "
        f"{dest / 'split'} --out RUN {train_flags}`"
        + (" (it balances the training split itself, as above)." if technique else ".")
    )
    if not math.isnan(float(best.get("macro_f1_ci_low", math.nan))):
        done.append(
            f"--apply: expect a gain between {100 * best['macro_f1_ci_low']:+.1f} and "
            f"{100 * best['macro_f1_ci_high']:+.1f} points (95% interval of the comparison)."
        )
    return done


def _train_flags(settings: dict[str, Any], plan: dict[str, Any]) -> str:
    """The ``imgbalance train`` options of a technique, with the comparison's model and
    protocol (its epochs, image size and step budget), so a run repeats the comparison's."""
    flags = [f"--model {plan.get('model', 'small-cnn')}"]
    for key, value in settings.items():
        if key == "technique":
            flags.append(f"--technique {value}")
        elif key == "technique_params":
            flags += [f"--technique-param {k}={v}" for k, v in value.items()]
        elif key in ("loss", "sampler", "mixing"):
            flags.append(f"--{key} {value}")
        else:
            flags.append(f"--set {key}={value}")
    for key in ("epochs", "image_size", "batch_size", "max_steps"):
        if key in plan.get("defaults", {}):
            flags.append(f"--set {key}={plan['defaults'][key]}")
    return " ".join(flags)
