"""Target class counts: ``auto``, ``ratio:R``, ``count:N`` or a per-class mapping.

* ``auto``: every class up to the largest class's count.
* ``ratio:R``: every class to at least ``ceil(R x largest)``, so the balance
  ratio min/max is at least R (STEM's ``target_ratio``); larger classes stay.
* ``count:N``: every class to exactly N (over- or under-sampling, as the
  method allows).
* a mapping ``{class: N}`` (Python, or YAML file ``path.yaml``); classes not
  named keep their count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ImgBalanceError

__all__ = ["Target", "parse_target", "resolve_target"]

Target = str | Mapping[str, int]


def parse_target(text: Target) -> Target:
    """Validate a target given as text (``auto``, ``ratio:0.7``, ``count:500``, a YAML path)."""
    if isinstance(text, Mapping):
        return dict(text)
    t = text.strip()
    if t == "auto" or t.startswith(("ratio:", "count:")):
        resolve_target(t, {"a": 1, "b": 2})  # checks the syntax and range
        return t
    if t.endswith((".yaml", ".yml")):
        import yaml

        from .._yaml import safe_load

        p = Path(t)
        if not p.is_file():
            raise ImgBalanceError(f'Target file "{p}" does not exist.')
        try:
            data: Any = safe_load(p.read_text(encoding="utf-8"), str(p))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ImgBalanceError(
                f'Target file "{p}" is not a readable YAML mapping of class names to counts '
                f"({type(exc).__name__}: {str(exc).splitlines()[0]}). Write it like\n"
                "  Basophil: 100\n  Monocyte: 100"
            ) from None
        if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
            raise ImgBalanceError(
                f'Target file "{p}" must map class names to integer counts, '
                "e.g.\n  Basophil: 100\n  Monocyte: 100"
            )
        return {str(k): int(v) for k, v in data.items()}
    raise ImgBalanceError(
        f'Unknown target "{text}". Use "auto", "ratio:R" (0 < R <= 1), '
        '"count:N" or a YAML file mapping class names to counts.'
    )


def resolve_target(target: Target, counts: Mapping[str, int], kind: str = "over") -> dict[str, int]:
    """Per-class target counts for the given current counts.

    ``kind="over"`` (the default) reads ``auto`` as "up to the largest class" and
    ``ratio:R`` as "smallest at least R x largest"; ``kind="under"`` reads
    ``auto`` as "down to the smallest class" and ``ratio:R`` as "largest at
    most smallest / R". Empty classes keep a target of 0 for over-sampling:
    there is nothing to make new images from.
    """
    nonzero = [n for n in counts.values() if n > 0]
    top = max(nonzero, default=0)
    low = min(nonzero, default=0)
    if isinstance(target, Mapping):
        unknown = sorted(set(target) - set(counts))
        if unknown:
            raise ImgBalanceError(
                f"Target names unknown class(es) {unknown}; the classes are {sorted(counts)}."
            )
        bad = {c: n for c, n in target.items() if n < 0}
        if bad:
            raise ImgBalanceError(f"Target counts must be >= 0, got {bad}.")
        empty = sorted(c for c, n in counts.items() if n == 0 and target.get(c, 0) > 0)
        if empty and kind == "over":
            raise ImgBalanceError(
                f"Target asks for images of empty class(es) {empty}; there "
                "is nothing to make them from. Add images or drop the class."
            )
        return {c: int(target.get(c, n)) for c, n in counts.items()}
    if target == "auto":
        if kind == "under":
            return {c: min(n, low) for c, n in counts.items()}
        return {c: max(n, top) if n else 0 for c, n in counts.items()}
    form, _, value = target.partition(":")
    try:
        number = float(value)
    except ValueError:
        raise ImgBalanceError(f'Target "{target}": "{value}" is not a number.') from None
    if form == "ratio":
        if not 0 < number <= 1:
            raise ImgBalanceError(
                f'Target "{target}": the balance ratio min/max must be in '
                "(0, 1]; 1 means fully balanced."
            )
        if kind == "under":
            cap = math.floor(low / number + 1e-9)
            return {c: min(n, cap) for c, n in counts.items()}
        need = math.ceil(number * top - 1e-9)
        return {c: max(n, need) if n else 0 for c, n in counts.items()}
    if form == "count":
        if number < 1 or number != int(number):
            raise ImgBalanceError(f'Target "{target}": the count must be a whole number >= 1.')
        return {c: int(number) if n else 0 for c, n in counts.items()}
    raise ImgBalanceError(
        f'Unknown target "{target}". Use "auto", "ratio:R", "count:N" or a YAML file.'
    )
