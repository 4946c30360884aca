"""Stage 1, the dataset: a class-folder tree becomes a :class:`Catalog` (``scan``:
every file probed, problems named), and a catalog becomes train / val / test
(``split``). Nothing here writes into the input tree.

Modules: :mod:`.images` (decoding rules), :mod:`.probe` (one file's facts),
:mod:`.scanner` (the folder walk), :mod:`.catalog` (the result types),
:mod:`.splits` (stratified, grouped, duplicate-aware splits), :mod:`.groups` (the units that
stay together), :mod:`.near_duplicates` (resized, re-encoded or cropped copies).
"""

from .catalog import Catalog, ImageRecord, Problem, Skipped
from .images import load_image
from .scanner import scan
from .splits import SplitResult, read_groups_csv, split, write_split

__all__ = [
    "Catalog",
    "ImageRecord",
    "Problem",
    "Skipped",
    "SplitResult",
    "load_image",
    "read_groups_csv",
    "scan",
    "split",
    "write_split",
]
