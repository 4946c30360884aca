"""Compact feature matrices for planning: ``thumbnail`` (default) and ``pca:N``.

A thumbnail is the image area-averaged to ``size`` x ``size`` (RGB or gray),
scaled to [0, 1], as float32. It is linear in the pixels, so the feature of a
blend is (up to resizing) the blend of the features: iterated methods can
clean synthetic samples without rendering them.

Features are cached on disk per spec, keyed by each file's sha256, so
re-planning the same files is instant. The cache lives in
``$IMGBALANCE_CACHE_DIR`` or ``~/.cache/imgbalance`` - never in the input tree.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from ._fs import atomic_write_bytes
from .images import load_image

__all__ = ["FeatureSpec", "cache_dir", "compute_features", "parse_feature_spec"]

_BATCH = 64
_PARALLEL_MIN = 128


@dataclass(frozen=True)
class FeatureSpec:
    """``thumbnail[:SIZE][:rgb|gray]`` optionally followed by PCA to ``pca`` dimensions."""

    size: int = 32
    color: str = "rgb"
    pca: int | None = None

    @property
    def key(self) -> str:
        return f"thumbnail-{self.size}-{self.color}"

    def __str__(self) -> str:
        base = f"thumbnail:{self.size}:{self.color}"
        return base if self.pca is None else f"pca:{self.pca}:{base}"


_SPEC = re.compile(
    r"^(?:pca:(?P<pca>\d+):?)?(?:thumbnail(?::(?P<size>\d+))?(?::(?P<color>rgb|gray))?)?$"
)


def parse_feature_spec(text: str | FeatureSpec) -> FeatureSpec:
    """Parse ``thumbnail``, ``thumbnail:16:gray``, ``pca:50`` or ``pca:50:thumbnail:32``."""
    if isinstance(text, FeatureSpec):
        return text
    if text.startswith("embedding:"):
        raise ValueError(
            f'Feature space "{text}" needs CNN embeddings, which are not available in this '
            'version. Use "thumbnail" or "pca:N".'
        )
    m = _SPEC.match(text.strip())
    if not text.strip() or m is None:
        raise ValueError(
            f'Unknown feature space "{text}". Use "thumbnail[:SIZE][:rgb|gray]" '
            '(default "thumbnail:32:rgb") or "pca:N[:thumbnail...]".'
        )
    size = int(m["size"] or 32)
    pca = int(m["pca"]) if m["pca"] else None
    if not 2 <= size <= 256:
        raise ValueError(f"thumbnail size must be between 2 and 256, got {size}")
    if pca is not None and pca < 1:
        raise ValueError(f"pca dimensions must be at least 1, got {pca}")
    return FeatureSpec(size=size, color=m["color"] or "rgb", pca=pca)


def cache_dir() -> Path:
    """Where feature caches live: ``$IMGBALANCE_CACHE_DIR`` or ``~/.cache/imgbalance``."""
    env = os.environ.get("IMGBALANCE_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imgbalance"


def thumbnail(path: str, size: int, color: str) -> np.ndarray:
    """Area-averaged ``size`` x ``size`` thumbnail in [0, 1], flattened float32."""
    im = load_image(path, draft=(size * 2, size * 2))
    im = im.convert("RGB" if color == "rgb" else "L")
    small = im.resize((size, size), Image.Resampling.BOX)
    return (np.asarray(small, dtype=np.float32) / 255.0).ravel()


def _thumbnail_batch(paths: Sequence[str], size: int, color: str) -> list[np.ndarray | str]:
    """Thumbnails, or the decode error's message for a file that cannot be decoded."""
    out: list[np.ndarray | str] = []
    for p in paths:
        try:
            out.append(thumbnail(p, size, color))
        except Exception as exc:  # a corrupt file that passed the header-only scan
            out.append(f"{type(exc).__name__}: {exc}")
    return out


def _cache_file(spec: FeatureSpec, directory: Path) -> Path:
    return directory / "features" / f"{spec.key}.npz"


def _load_cache(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            return dict(zip(data["sha256"].tolist(), data["features"], strict=True))
    except (OSError, ValueError, KeyError):
        return {}  # a damaged cache is rebuilt, never trusted


def _save_cache(path: Path, cache: dict[str, np.ndarray]) -> None:
    keys = sorted(cache)
    buf = io.BytesIO()
    np.savez(buf, sha256=np.array(keys), features=np.stack([cache[k] for k in keys]))
    atomic_write_bytes(path, buf.getvalue())


def compute_features(
    paths: Sequence[str],
    hashes: Sequence[str],
    spec: FeatureSpec | str = "thumbnail",
    *,
    workers: int | None = None,
    cache: bool = True,
    cache_path: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    random_state: int = 0,
) -> tuple[np.ndarray, dict[int, str]]:
    """Feature matrix (n x d, float32) of the images at ``paths``, and decode failures.

    ``hashes`` are the files' sha256 (from the scan): the cache key. Files that
    cannot be decoded get a row of zeros and an entry ``{index: error}`` in the
    second value; PCA, when asked, is fitted on the other rows with
    ``random_state`` (deterministic).
    """
    spec = parse_feature_spec(spec)
    directory = cache_path if cache_path is not None else cache_dir()
    store = _load_cache(_cache_file(spec, directory)) if cache else {}
    missing = [i for i, h in enumerate(hashes) if h not in store]
    todo = [paths[i] for i in missing]
    batches = [todo[i : i + _BATCH] for i in range(0, len(todo), _BATCH)]
    fn = partial(_thumbnail_batch, size=spec.size, color=spec.color)
    n_workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    done = len(paths) - len(todo)
    if progress:
        progress(done, len(paths))
    results: list[np.ndarray | str] = []
    if n_workers <= 1 or len(todo) < _PARALLEL_MIN:
        mapped = map(fn, batches)
        for batch in mapped:
            results.extend(batch)
            done += len(batch)
            if progress:
                progress(done, len(paths))
    else:
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            for batch in pool.map(fn, batches):
                results.extend(batch)
                done += len(batch)
                if progress:
                    progress(done, len(paths))
    failed: dict[int, str] = {}
    for i, feat in zip(missing, results, strict=True):
        if isinstance(feat, str):
            failed[i] = feat
        else:
            store[hashes[i]] = feat
    if cache and len(failed) < len(missing):
        _save_cache(_cache_file(spec, directory), store)
    dim = spec.size * spec.size * (3 if spec.color == "rgb" else 1)
    zero = np.zeros(dim, dtype=np.float32)
    feats = np.stack([zero if i in failed else store[h] for i, h in enumerate(hashes)])
    if spec.pca is not None:
        ok = np.array([i not in failed for i in range(len(hashes))])
        reduced = np.zeros((len(hashes), min(spec.pca, int(ok.sum()), dim)), dtype=np.float32)
        reduced[ok] = _pca(feats[ok], spec.pca, random_state)
        feats = reduced
    return feats.astype(np.float32, copy=False), failed


def _pca(feats: np.ndarray, n: int, random_state: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    n = min(n, feats.shape[0], feats.shape[1])
    pca = PCA(n_components=n, random_state=random_state)
    return np.asarray(pca.fit_transform(feats), dtype=np.float32)


def digest(arr: np.ndarray) -> str:
    """Short content hash of an array (for plan fingerprints)."""
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]
