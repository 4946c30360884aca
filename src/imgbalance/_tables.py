"""CSV tables read and written by imgbalance (split records, results, metrics), and
JSON's lack of NaN."""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path
from typing import Any

from ._fs import atomic_write_text
from ._text import csv_text
from .errors import DatasetError

__all__ = ["nan_to_none", "read_csv_rows", "write_csv"]


def nan_to_none(d: Any) -> Any:
    """``d`` with every NaN float, in nested dicts and lists, replaced by None (JSON has
    no NaN: ``json.dumps`` would write the invalid token ``NaN``)."""
    if isinstance(d, float) and d != d:
        return None
    if isinstance(d, dict):
        return {k: nan_to_none(v) for k, v in d.items()}
    if isinstance(d, list):
        return [nan_to_none(v) for v in d]
    return d


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` (dicts with the same keys) as CSV, atomically; NaN becomes empty."""

    atomic_write_text(path, csv_text(rows))


def read_csv_rows(path: Path, fix: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the rows of the UTF-8 CSV file ``path`` (a BOM is dropped), each row
    with its line number in the file (the header is line 1) and a value per column ("" for
    a short row). A file that cannot be read, is not UTF-8 text, is not CSV or has no
    header is a :class:`DatasetError` naming it, what is wrong and ``fix`` (the way on)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(
            f'Cannot read "{path}": {exc.strerror}. Check the path, {fix}.'
        ) from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetError(
            f'"{path}" is not UTF-8 text: line {line} has the byte 0x{data[exc.start]:02x} '
            "(saved as Latin-1 or Windows-1252?). Save the file as UTF-8 (a spreadsheet's "
            f'"CSV UTF-8"), {fix}.'
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise DatasetError(
                f'"{path}" is empty; it needs a header row and a row per image. Write them, {fix}.'
            )
        rows = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue  # a blank line
            values += [""] * (len(header) - len(values))
            rows.append((reader.line_num, dict(zip(header, values, strict=False))))
    except csv.Error as exc:
        raise DatasetError(
            f'"{path}" is not valid CSV (line {reader.line_num}: {exc}). Fix that line, {fix}.'
        ) from None
    return header, rows
