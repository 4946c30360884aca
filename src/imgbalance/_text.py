"""User-supplied text (file, class and arm names, messages that quote them) made safe
to print on a terminal through rich, and rows as CSV text."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from rich.markup import escape

__all__ = ["control_escaped", "csv_text", "shown"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_KEEP_NEWLINES = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def shown(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` with control characters written out (``\\x1b`` for ESC: a name cannot
    move the cursor, recolour or retitle the terminal) and rich markup escaped (a file
    named ``[red]x.jpg`` or ``[/]a.jpg`` prints as it is named, never as markup).

    >>> print(shown("a\\x1b[31mb [bold]c"))
    a\\x1b[31mb \\[bold]c
    """
    pattern = _CONTROL_KEEP_NEWLINES if keep_newlines else _CONTROL
    return escape(pattern.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text)))


def control_escaped(text: str) -> str:
    """``text`` with control characters other than newlines written out, and no markup
    escaping: for plain output (a CSV) that goes to a terminal."""
    return _CONTROL_KEEP_NEWLINES.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def csv_text(rows: list[dict[str, Any]]) -> str:
    """``rows`` (dicts with the same keys) as CSV text with a header; NaN becomes empty."""
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(v, float) and v != v else v) for k, v in r.items()})
    return buf.getvalue()
