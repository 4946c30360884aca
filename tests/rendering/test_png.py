"""The fast PNG writer: lossless, a valid PNG for Pillow and libpng, and the default."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgbalance
from imgbalance.rendering.png import encode_png

from imgtools import rgb, run_cli, save

SHAPES = [(1, 1), (1, 7), (9, 1), (2, 2), (31, 17), (240, 256)]


def _pictures() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for h, w in SHAPES:
        noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # every byte difference
        yy, xx = np.mgrid[:h, :w]
        smooth = np.stack([(xx * 3) % 256, (yy * 5) % 256, (xx + yy) % 256], -1)
        out += [noise, smooth.astype(np.uint8), noise[..., 0].copy()]  # RGB, RGB, grey
    out.append(np.full((5, 4, 3), 255, np.uint8))
    out.append(np.zeros((4, 5), np.uint8))
    return out


def _chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    tags, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        tag, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(tag + body)
        tags.append(tag)
        at += 12 + length
    return tags


@pytest.mark.parametrize("index", range(len(SHAPES) * 3 + 2))
def test_pixels_come_back_exactly_from_pillow(index: int) -> None:
    pixels = _pictures()[index]
    data = encode_png(pixels)
    assert _chunks(data) == [b"IHDR", b"IDAT", b"IEND"]
    image = Image.open(io.BytesIO(data))
    assert image.mode == ("L" if pixels.ndim == 2 else "RGB")
    np.testing.assert_array_equal(np.asarray(image), pixels)


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
def test_libpng_reads_the_same_pixels() -> None:
    """A second, independent decoder (libpng through torchvision), strict on CRCs."""
    pytest.importorskip("torchvision")
    import torch
    from torchvision.io import decode_png

    for pixels in _pictures():
        data = torch.frombuffer(bytearray(encode_png(pixels)), dtype=torch.uint8)
        decoded = decode_png(data).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(decoded.reshape(pixels.shape), pixels)


def test_views_and_bad_arrays() -> None:
    base = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    view = base[::2, 5:25:3]  # not contiguous
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(view)))), view)
    for bad, rule in [
        (base.astype(np.uint16), "uint8"),
        (np.zeros((4, 4, 4), np.uint8), "shape|3\\)"),
        (np.zeros((0, 4, 3), np.uint8), "3\\)"),
        (np.zeros(5, np.uint8), "3\\)"),
    ]:
        with pytest.raises(ValueError, match=rule):
            encode_png(bad)


def test_about_the_size_of_pillow_level_1_and_smaller_than_raw() -> None:
    yy, xx = np.mgrid[:200, :240]
    rng = np.random.default_rng(2)
    field = np.stack(
        [np.sin(xx / 17.0) * 90 + yy * 0.4, np.cos(yy / 23.0) * 80 + 100, xx * 0.9], -1
    )
    pixels = np.clip(field + rng.normal(0, 3, field.shape) + 20, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    ours = len(encode_png(pixels))
    assert ours < 0.8 * pixels.nbytes
    assert ours < 1.25 * len(buf.getvalue())


def _png_tree(root: Path) -> Path:
    for cls, n in (("cat", 8), ("dog", 3)):
        for i in range(n):
            save(rgb(100 * len(cls) + i, (24 + i, 20)), root / cls / f"{cls}{i}.png")
    return root


def _synthetic(out: Path) -> list[Path]:
    return sorted(out.glob("*/synthetic/*.png"))


def test_balance_writes_fast_pngs_by_default_with_the_same_pixels_as_pillow(
    tmp_path: Path,
) -> None:
    src = _png_tree(tmp_path / "src")
    kw = {"method": "smote", "random_state": 0, "workers": 1, "plots": False}
    imgbalance.balance(src, tmp_path / "fast", **kw)
    imgbalance.balance(src, tmp_path / "pillow", png_compress_level=1, **kw)
    fast, pillow = _synthetic(tmp_path / "fast"), _synthetic(tmp_path / "pillow")
    assert fast and [p.name for p in fast] == [p.name for p in pillow]
    for a, b in zip(fast, pillow, strict=True):
        assert a.read_bytes() != b.read_bytes()  # another writer...
        np.testing.assert_array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    for name, level in (("fast", "fast"), ("pillow", 1)):
        plan = json.loads((tmp_path / name / "plan.json").read_text())
        assert plan["config"]["png_compress_level"] == level
    # one seed, one writer: the same bytes again
    imgbalance.balance(src, tmp_path / "again", **kw)
    assert [p.read_bytes() for p in _synthetic(tmp_path / "again")] == [
        p.read_bytes() for p in fast
    ]


@pytest.mark.parametrize("bad", ["quick", 10, -1, True, 1.0])
def test_a_bad_level_is_refused_by_name(tmp_path: Path, bad: object) -> None:
    src = _png_tree(tmp_path / "src")
    with pytest.raises(imgbalance.ConfigError, match='png_compress_level must be "fast"'):
        imgbalance.balance(src, tmp_path / "o", png_compress_level=bad, plots=False)  # type: ignore[arg-type]
    assert not (tmp_path / "o").exists()


def test_cli_takes_fast_or_a_level(tmp_path: Path) -> None:
    src = _png_tree(tmp_path / "src")
    done = run_cli("balance", src, tmp_path / "six", "--png-compress-level", "6", "--no-plots",
                   "--workers", "1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    plan = json.loads((tmp_path / "six" / "plan.json").read_text())
    assert plan["config"]["png_compress_level"] == 6
    bad = run_cli("balance", src, tmp_path / "x", "--png-compress-level", "quick")
    assert bad.returncode == 1
    said = bad.stdout + bad.stderr
    assert "png_compress_level must be" in said and "Traceback" not in said


def test_resume_with_other_settings_names_them(tmp_path: Path) -> None:
    """A run interrupted before png_compress_level's default changed resumes only with
    the level it was started with, and the refusal says which setting differs."""
    src = _png_tree(tmp_path / "src")
    out = tmp_path / "out"
    kw = {"method": "smote", "random_state": 0, "workers": 1, "plots": False}
    imgbalance.balance(src, out, png_compress_level=1, **kw)
    shutil.rmtree(out / "dog" / "synthetic")  # as if stopped before the synthetic images
    with pytest.raises(imgbalance.OutputError, match=r'png_compress_level \(1 there, "fast" now\)'):
        imgbalance.balance(src, out, resume=True, **kw)
    imgbalance.balance(src, out, resume=True, png_compress_level=1, **kw)
    assert _synthetic(out)
