"""Compact feature matrices for planning: ``thumbnail`` (default) and ``pca:N``.

A thumbnail is the image area-averaged to ``size`` x ``size`` (RGB or gray),
scaled to [0, 1], as float32; the default, 16 x 16 RGB, has 768 dimensions.
It is linear in the pixels, so the feature of a blend is (up to resizing) the
blend of the features: iterated methods can clean synthetic samples without
rendering them.

Features are cached on disk per spec, keyed by each file's sha256, so
re-planning the same files is instant. The cache lives in
``$IMGBALANCE_CACHE_DIR`` or ``~/.cache/imgbalance`` - never in the input tree.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from .._fs import atomic_path, cache_dir
from .._procs import process_pool
from ..dataset.images import load_image
from ..errors import ConfigError

__all__ = ["FeatureSpec", "cache_dir", "compute_features", "parse_feature_spec"]

_BATCH = 64
_PARALLEL_MIN = 128


@dataclass(frozen=True)
class FeatureSpec:
    """``thumbnail[:SIZE][:rgb|gray]`` (default 16, rgb) or ``embedding:MODEL[:WEIGHTS]``,
    optionally reduced by PCA to ``pca`` dimensions."""

    size: int = 16
    color: str = "rgb"
    pca: int | None = None
    #: a torchvision model name for CNN embeddings (None: thumbnails)
    model: str | None = None
    #: the model's weights: DEFAULT, a torchvision weights name, or a state-dict file
    weights: str = "DEFAULT"

    @property
    def shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the thumbnail."""
        return (self.size, self.size, 3 if self.color == "rgb" else 1)

    @property
    def is_image(self) -> bool:
        """Whether rows are flattened thumbnails (images), not embeddings or PCA scores."""
        return self.model is None and self.pca is None

    @property
    def key(self) -> str:
        return f"thumbnail-{self.size}-{self.color}"

    def __str__(self) -> str:
        base = (
            f"thumbnail:{self.size}:{self.color}"
            if self.model is None
            else f"embedding:{self.model}:{self.weights}"
        )
        return base if self.pca is None else f"pca:{self.pca}:{base}"


_SPEC = re.compile(
    r"^(?:pca:(?P<pca>\d+):?)?(?:thumbnail(?::(?P<size>\d+))?(?::(?P<color>rgb|gray))?)?$"
)
_EMBEDDING = re.compile(
    r"^(?:pca:(?P<pca>\d+):)?embedding:(?P<model>[A-Za-z0-9_]+)(?::(?P<w>.+))?$"
)


def parse_feature_spec(text: str | FeatureSpec) -> FeatureSpec:
    """Parse ``thumbnail``, ``thumbnail:32:gray``, ``pca:50``, ``pca:50:thumbnail:32``,
    ``embedding:resnet18``, ``embedding:resnet18:IMAGENET1K_V1`` or
    ``pca:64:embedding:resnet50:/path/weights.pth``."""
    if isinstance(text, FeatureSpec):
        return text
    e = _EMBEDDING.match(text.strip())
    if e is not None:
        pca = int(e["pca"]) if e["pca"] else None
        if pca is not None and pca < 1:
            raise ConfigError(f"pca dimensions must be at least 1, got {pca}")
        return FeatureSpec(pca=pca, model=e["model"], weights=e["w"] or "DEFAULT")
    m = _SPEC.match(text.strip())
    if not text.strip() or m is None:
        raise ConfigError(
            f'Unknown feature space "{text}". Use "thumbnail[:SIZE][:rgb|gray]" '
            '(default "thumbnail:16:rgb"), "embedding:MODEL[:WEIGHTS]" (torch extra) '
            'or "pca:N:" before either.'
        )
    size = int(m["size"] or 16)
    pca = int(m["pca"]) if m["pca"] else None
    if not 2 <= size <= 256:
        raise ConfigError(f"thumbnail size must be between 2 and 256, got {size}")
    if pca is not None and pca < 1:
        raise ConfigError(f"pca dimensions must be at least 1, got {pca}")
    return FeatureSpec(size=size, color=m["color"] or "rgb", pca=pca)


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


def _cache_key(spec: FeatureSpec) -> str:
    """File name of a spec's cache: embeddings are keyed by model and resolved weights."""
    if spec.model is None:
        return spec.key
    from ..torch.models import weights_id

    return f"embedding-{spec.model}-{weights_id(spec.model, spec.weights)}"


def _load_cache(path: Path, dim: int | None) -> tuple[list[str], np.ndarray]:
    """Cached ``(sha256 keys, feature rows)``; empty when missing or damaged."""
    empty: tuple[list[str], np.ndarray] = ([], np.zeros((0, dim or 0), dtype=np.float32))
    if not path.exists():
        return empty
    try:
        with np.load(path, allow_pickle=False) as data:
            keys, rows = data["sha256"].tolist(), data["features"]
    except (OSError, ValueError, KeyError):
        return empty  # a damaged cache is rebuilt, never trusted
    ok = rows.ndim == 2 and len(rows) == len(keys) and (dim is None or rows.shape[1] == dim)
    return (keys, rows) if ok else empty


def _save_cache(path: Path, keys: list[str], rows: np.ndarray) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as fh:  # streamed: no in-memory copy
        np.savez(fh, sha256=np.array(keys), features=rows)


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
    ``random_state`` (deterministic). Memory: the matrix, plus the cache file's
    rows while it is read and extended.
    """
    spec = parse_feature_spec(spec)
    dim: int | None = None
    if spec.model is None:
        dim = int(np.prod(spec.shape))
    directory = cache_path if cache_path is not None else cache_dir()
    cache_file = directory / "features" / f"{_cache_key(spec)}.npz"
    keys, rows = _load_cache(cache_file, dim) if cache else ([], np.zeros((0, 0), np.float32))
    where = {k: j for j, k in enumerate(keys)}
    found = {i: where[h] for i, h in enumerate(hashes) if h in where}
    missing = [i for i in range(len(paths)) if i not in found]
    done = len(paths) - len(missing)
    if progress:
        progress(done, len(paths))
    failed: dict[int, str] = {}
    feats: np.ndarray | None = None
    if dim is not None:  # thumbnails: results go straight into the matrix
        feats = np.zeros((len(paths), dim), dtype=np.float32)
    if spec.model is not None and missing:
        from ..torch.models import build_model
        from .embeddings import embed_images

        loaded = build_model(spec.model, spec.weights)

        def step(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(done, len(paths))

        emb, emb_failed = embed_images([paths[i] for i in missing], loaded, progress=step)
        failed = {missing[j]: msg for j, msg in emb_failed.items()}
        dim = emb.shape[1]
        feats = np.zeros((len(paths), dim), dtype=np.float32)
        feats[missing] = emb
        del emb
    elif missing:
        assert feats is not None
        batches = [missing[i : i + _BATCH] for i in range(0, len(missing), _BATCH)]
        fn = partial(_thumbnail_batch, size=spec.size, color=spec.color)
        n_workers = min(os.cpu_count() or 1, 8) if workers is None else workers
        path_batches = [[paths[i] for i in batch] for batch in batches]
        with contextlib.ExitStack() as stack:
            if n_workers <= 1 or len(missing) < _PARALLEL_MIN:
                results: Iterator[list[np.ndarray | str]] = map(fn, path_batches)
            else:
                pool = stack.enter_context(process_pool(n_workers))
                results = pool.map(fn, path_batches)
            for batch, values in zip(batches, results, strict=True):
                for i, value in zip(batch, values, strict=True):
                    if isinstance(value, str):
                        failed[i] = value
                    else:
                        feats[i] = value
                done += len(batch)
                if progress:
                    progress(done, len(paths))
    if feats is None:  # embeddings, all from the cache
        dim = rows.shape[1]
        feats = np.zeros((len(paths), dim), dtype=np.float32)
    for i, j in found.items():
        feats[i] = rows[j]
    for i in failed:
        feats[i] = 0.0
    new = {hashes[i]: i for i in missing if i not in failed}  # duplicates stored once
    if cache and new:
        if not keys and len(new) == len(paths):  # a first run: the matrix is the cache
            _save_cache(cache_file, list(new), feats)
        else:
            added = feats[list(new.values())]
            _save_cache(
                cache_file, keys + list(new), np.concatenate([rows, added]) if keys else added
            )
            del added
    del rows
    dim = feats.shape[1]
    if spec.pca is not None:
        ok = np.array([i not in failed for i in range(len(hashes))])
        reduced = np.zeros((len(hashes), min(spec.pca, int(ok.sum()), dim)), dtype=np.float32)
        reduced[ok] = _pca(feats[ok], spec.pca, random_state)
        feats = reduced
    return feats, failed


def _pca(feats: np.ndarray, n: int, random_state: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    n = min(n, feats.shape[0], feats.shape[1])
    pca = PCA(n_components=n, random_state=random_state)
    return np.asarray(pca.fit_transform(feats), dtype=np.float32)


def digest(arr: np.ndarray) -> str:
    """Short content hash of an array (for plan fingerprints)."""
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]
