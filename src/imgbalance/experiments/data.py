"""Training data: the split and the (optionally balanced) training set, as paths and labels.

A split comes from ``imgbalance split`` (a folder with ``splits.csv`` and
``split_summary.json``) or is a pre-split tree ``DIR/{train,val,test}/<class>``.
Offline balancing applies to the training split only, through the engine, and
its output is cached by the training split's content, the technique, its
parameters and the seed, so several runs (models, losses) reuse one render.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._tables import read_csv_rows
from ..dataset.catalog import Catalog, ImageRecord
from ..dataset.scanner import scan
from ..errors import DatasetError

__all__ = [
    "SPLITS",
    "SplitChangedError",
    "SplitData",
    "TrainSet",
    "check_split_unchanged",
    "load_split",
    "read_split_rows",
    "read_split_summary",
    "split_fingerprint",
]

SPLITS = ("train", "val", "test")


class SplitChangedError(DatasetError):
    """Files of a split changed or disappeared since the split was made: ``what`` says
    which, ``advice`` what to do (a caller with another remedy says its own)."""

    def __init__(self, what: str, advice: str) -> None:
        super().__init__(f"{what}. {advice}")
        self.what = what


def check_split_unchanged(path: str | os.PathLike[str], advice: str) -> None:
    """Refuse, with ``advice``, when files of the split in ``path`` changed since it was
    made (each run would refuse in turn; a caller resuming many runs says it once)."""
    try:
        load_split(path)
    except SplitChangedError as exc:
        raise DatasetError(f"{exc.what}: {advice}") from None


@dataclass
class SplitData:
    """Rows ``(absolute path, label)`` per split, over one class list."""

    classes: list[str]
    root: Path
    rows: dict[str, list[tuple[str, int]]]
    #: the training split's records (for the balancing engine)
    train_records: list[ImageRecord] = field(default_factory=list)
    source: str = ""
    #: sha256 of every row's file, by absolute path (from the scan: never read again)
    hashes: dict[str, str] = field(default_factory=dict)

    @property
    def inputs(self) -> list[Path]:
        """Folders a run must never write into: the images, and a pre-split tree."""
        folders = [self.root]
        source = Path(self.source) if self.source else None
        if source is not None and (
            not (source / "splits.csv").is_file() or source.resolve() in self.root.parents
        ):  # a pre-split tree, or a split read from its own copies
            folders.append(source)
        return folders

    def counts(self, split: str) -> list[int]:
        c = np.bincount([lab for _, lab in self.rows[split]], minlength=len(self.classes))
        return [int(v) for v in c]

    def train_catalog(self) -> Catalog:
        return Catalog(
            root=self.root,
            classes=self.classes,
            records=self.train_records,
            skipped=[],
            class_problems=[],
        )

    def train_fingerprint(self) -> str:
        """Content hash of the training split (paths, labels and file hashes)."""
        h = hashlib.sha256()
        for r in sorted(self.train_records, key=lambda r: r.path):
            h.update(f"{r.path}\0{r.label}\0{r.sha256}\n".encode())
        return h.hexdigest()[:16]


def split_fingerprint(path: str | os.PathLike[str]) -> str | None:
    """sha256 of a split folder's ``splits.csv`` (None for a pre-split tree): a run records
    it, and a grid redoes a run whose split has been rewritten since."""
    try:
        return hashlib.sha256((Path(path) / "splits.csv").read_bytes()).hexdigest()
    except OSError:
        return None


def load_split(
    path: str | os.PathLike[str], *, scans: dict[tuple[str, bool], Catalog] | None = None
) -> SplitData:
    """Read a split folder (``splits.csv``) or a pre-split tree (``train/ val/ test/``).

    ``scans`` holds catalogs by (image root, follow_links) for several splits of one
    dataset to share (a grid's repeated splits): each root is scanned once.
    """
    path = Path(path)
    if (path / "splits.csv").is_file():
        return _from_csv(path, scans if scans is not None else {})
    if (path / "train").is_dir():
        return _from_tree(path)
    raise DatasetError(
        f'"{path}" is not a split: it has neither splits.csv (from `imgbalance split DATA '
        f"--out {path}`) nor train/ val/ test/ folders."
    )


def _redo(path: Path) -> str:
    """How to write a split folder's files again."""
    return f"or re-run `imgbalance split DATA --out {path} --overwrite` to write it again"


_JSON_KINDS = {
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true/false",
}


def read_split_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The content of the split folder ``path``'s ``split_summary.json``, checked: a JSON
    object with the image folder (``root``, a path) and the ``classes`` (names); a file
    that is missing, not UTF-8 JSON or lacks either is a :class:`DatasetError`."""
    path = Path(path)
    file = path / "split_summary.json"
    if not file.is_file():
        raise DatasetError(f'"{file}" is missing; re-run `imgbalance split DATA --out {path}`.')
    try:
        summary = json.loads(file.read_bytes().decode("utf-8-sig"))
    except OSError as exc:
        raise DatasetError(f'Cannot read "{file}": {exc.strerror}; {_redo(path)}.') from None
    except UnicodeDecodeError:
        raise DatasetError(
            f'"{file}" is not UTF-8 text. Save it as UTF-8, {_redo(path)}.'
        ) from None
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f'"{file}" is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). '
            f"Undo the edit, {_redo(path)}."
        ) from None
    if not isinstance(summary, dict):
        kind = "null" if summary is None else _JSON_KINDS.get(type(summary), "not an object")
        raise DatasetError(
            f'"{file}" must hold a JSON object with "root" and "classes"; it holds {kind}. '
            f"Undo the edit, {_redo(path)}."
        )
    missing = [k for k in ("root", "classes") if k not in summary]
    if missing:
        raise DatasetError(
            f'"{file}" has no {" and no ".join(repr(k) for k in missing)} key; a split\'s '
            'summary names its image folder ("root") and its class names ("classes"). '
            f"Restore the key, {_redo(path)}."
        )
    root, classes = summary["root"], summary["classes"]
    if not isinstance(root, str) or not root:
        raise DatasetError(
            f'"{file}": "root" must be the path of the image folder; got {root!r}. '
            f"Restore it, {_redo(path)}."
        )
    lists = {"classes": classes, "excluded_classes": summary.get("excluded_classes") or []}
    for key, names in lists.items():
        if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
            raise DatasetError(
                f'"{file}": "{key}" must be a list of class names; got {names!r:.80}. '
                f"Restore it, {_redo(path)}."
            )
    if not classes:
        raise DatasetError(f'"{file}": "classes" is empty. Restore it, {_redo(path)}.')
    return summary


def read_split_rows(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of the split folder ``path``'s ``splits.csv``, checked: a UTF-8 CSV with
    the columns ``path`` and ``split``, every row with a path and a split of
    :data:`SPLITS`; anything else is a :class:`DatasetError` naming the line."""
    path = Path(path)
    file = path / "splits.csv"
    header, rows = read_csv_rows(file, _redo(path))
    missing = [c for c in ("path", "split") if c not in header]
    if missing:
        raise DatasetError(
            f'"{file}" has no {" and no ".join(repr(c) for c in missing)} column (its header '
            f'row is {",".join(header)!r}); splits.csv needs the columns "path" and '
            f'"split", as `imgbalance split` writes them. Restore the header row, {_redo(path)}.'
        )
    out = []
    seen: dict[str, tuple[int, str]] = {}
    for line, row in rows:
        where = f'"{file}", line {line}'
        first = seen.setdefault(row["path"], (line, row["split"]))
        if first[0] != line:
            raise DatasetError(
                f'{where}: "{row["path"]}" is listed again (first on line {first[0]}, in '
                f'"{first[1]}"; here in "{row["split"]}"): an image in two rows could reach '
                f"training and test at once. Keep one row per image, {_redo(path)}."
            )
        if not row["path"].strip():
            raise DatasetError(
                f'{where}: the "path" column is empty; every row needs the image\'s path '
                f"relative to the dataset folder. Fill it in (or delete the row), {_redo(path)}."
            )
        value = row["split"]
        if value not in SPLITS:
            guess = next((s for s in SPLITS if value.strip().lower().startswith(s)), None)
            hint = f' (write "{guess}" for {value!r})' if guess else ""
            raise DatasetError(
                f'{where}, column "split": {value!r} is not a split; the allowed values are '
                f'"train", "val" and "test". Correct the row{hint}, {_redo(path)}.'
            )
        out.append(row)
    return out


def _from_csv(path: Path, scans: dict[tuple[str, bool], Catalog]) -> SplitData:
    summary = read_split_summary(path)
    root = Path(summary["root"])
    if not root.is_absolute() and not root.is_dir():  # relative to where split ran, or to it
        root = path / root
    root = root.resolve()
    classes = list(summary["classes"])
    listed = read_split_rows(path)
    if not root.is_dir():
        copies = _from_copies(path, classes, listed)  # a materialised split travels
        if copies is not None:
            return copies
        raise DatasetError(
            f'The split in "{path}" was made from "{root}", which no longer exists (and the '
            "split folder holds no copies of its images, from --materialize copy). Re-run "
            "`imgbalance split` on the data where it is now."
        )
    key = (str(root), bool(summary.get("follow_links", False)))
    if key not in scans:
        scans[key] = scan(root, follow_links=key[1])
    catalog = scans[key]
    left_out = set(summary.get("excluded_classes") or [])  # a split may leave classes out
    if [c for c in catalog.classes if c not in left_out] != classes:
        raise DatasetError(
            f'The classes in "{root}" ({catalog.classes}) are not those of the split '
            f"({classes}); re-run `imgbalance split`."
        )
    idx = {c: i for i, c in enumerate(classes)}
    by_path = {r.path: r for r in catalog.usable()}
    rows: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    hashes: dict[str, str] = {}
    train: list[ImageRecord] = []
    changed = []
    for row in listed:
        rec = by_path.get(row["path"])
        if rec is None or (row.get("sha256") and rec.sha256 != row["sha256"]):
            changed.append(row["path"])
            continue
        if rec.class_name not in idx:
            changed.append(row["path"])
            continue
        label = idx[rec.class_name]
        rows[row["split"]].append((str(root / rec.path), label))
        hashes[str(root / rec.path)] = rec.sha256 or rec.path
        if row["split"] == "train":
            train.append(rec if rec.label == label else _relabel(rec, label))
    if changed:
        raise SplitChangedError(
            f"{len(changed)} file(s) of the split changed or disappeared since it was made "
            f'(first: "{changed[0]}")',
            "Re-run `imgbalance split` so no test image can leak.",
        )
    return SplitData(classes, root, rows, train, source=str(path), hashes=hashes)


def _from_copies(path: Path, classes: list[str], listed: list[dict[str, str]]) -> SplitData | None:
    """The split from its own ``train/ val/ test/`` copies (``split --materialize copy``)
    once the image folder it was made from has moved: every row's copy must be there with
    the recorded sha256 (a link into the moved folder is not), else None."""
    if not all((path / s).is_dir() for s in SPLITS) or not all(r.get("sha256") for r in listed):
        return None
    catalogs = {s: scan(path.resolve() / s) for s in SPLITS}
    found = {s: {r.path: r for r in cat.usable()} for s, cat in catalogs.items()}
    idx = {c: i for i, c in enumerate(classes)}
    rows: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    hashes: dict[str, str] = {}
    train: list[ImageRecord] = []
    for row in listed:
        rec = found[row["split"]].get(row["path"])
        if rec is None or rec.sha256 != row["sha256"] or rec.class_name not in idx:
            return None
        where = str(catalogs[row["split"]].root / rec.path)
        rows[row["split"]].append((where, idx[rec.class_name]))
        hashes[where] = row["sha256"]
        if row["split"] == "train":
            train.append(_relabel(rec, idx[rec.class_name]))
    return SplitData(classes, catalogs["train"].root, rows, train, source=str(path), hashes=hashes)


def _from_tree(path: Path) -> SplitData:
    catalogs = {s: scan(path.resolve() / s) for s in SPLITS if (path / s).is_dir()}
    missing = [s for s in SPLITS if s not in catalogs]
    if missing:
        raise DatasetError(
            f'"{path}" has no {", ".join(missing)} folder(s); a split needs all three.'
        )
    bad = [(s, r) for s in ("val", "test") for r in catalogs[s].records if not r.readable]
    if bad:  # a scored image left out would change what the run measures
        s, r = bad[0]
        why = "; ".join(p.message for p in r.problems if p.severity == "error")
        raise DatasetError(
            f'"{catalogs[s].root / r.path}" in the {s} split cannot be read ({why}), and '
            f"{len(bad) - 1} more in val/test: a {s} image left out would change what the "
            "run measures. Fix or remove them (`imgbalance analyze` lists each)."
        )
    classes = sorted(set().union(*(c.classes for c in catalogs.values())))
    idx = {c: i for i, c in enumerate(classes)}
    # an unreadable training image stays listed: the run leaves it out and counts it
    rows = {
        s: [(str(cat.root / r.path), idx[r.class_name]) for r in cat.records]
        for s, cat in catalogs.items()
    }
    hashes = {
        str(cat.root / r.path): r.sha256 or r.path for cat in catalogs.values() for r in cat.records
    }
    train = catalogs["train"]
    train.root = train.root.resolve()
    records = [_relabel(r, idx[r.class_name]) for r in train.records]
    return SplitData(classes, train.root, rows, records, source=str(path), hashes=hashes)


def _relabel(r: ImageRecord, label: int) -> ImageRecord:
    d = dict(r.__dict__)
    d["label"] = label
    return ImageRecord(**d)


@dataclass
class TrainSet:
    """The training set a run uses: paths and labels, and what balancing did."""

    paths: list[str]
    labels: list[int]
    #: original training counts (before any balancing): priors and loss weights come from these
    original_counts: list[int]
    balancing: dict[str, Any] = field(default_factory=dict)
    #: sha256 per path (from the scan and the manifest): the feature cache's keys
    hashes: list[str] = field(default_factory=list)

    def counts(self, n_classes: int) -> list[int]:
        return [int(v) for v in np.bincount(self.labels, minlength=n_classes)]
