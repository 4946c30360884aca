"""``probe_files``: what one read of each file records, on tiny real files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgbalance.dataset.probe import FileFacts, probe_files

from imgtools import body_corrupt_jpeg, exif_rotated_jpeg, jpeg_bytes, png16_rgb, rgb, save, write


def probe(path: Path, **kw: object) -> FileFacts:
    (facts,) = probe_files([str(path)], **kw)  # type: ignore[arg-type]
    assert facts.path == str(path)
    return facts


def problems(facts: FileFacts) -> list[tuple[str, str]]:
    return [(code, severity) for code, severity, _, _ in facts.problems]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_clean_image(facts: FileFacts, path: Path, fmt: str, mode: str, size: tuple) -> None:
    assert facts.is_image and facts.skip_reason is None
    assert (facts.format, facts.mode, (facts.width, facts.height)) == (fmt, mode, size)
    assert facts.size == path.stat().st_size > 0
    assert facts.sha256 == sha(path)


def test_good_jpeg(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jpg", jpeg_bytes(1, (24, 16)))
    facts = probe(path)
    assert_clean_image(facts, path, "JPEG", "RGB", (24, 16))
    assert facts.problems == [] and not facts.has_error
    assert facts.orientation is None  # no EXIF block
    assert facts.bit_depth is None  # only read from a PNG header
    assert facts.dhash is None  # only when near_duplicates is asked


def test_good_png(tmp_path: Path) -> None:
    path = save(rgb(2, (30, 12)), tmp_path / "b.png")
    facts = probe(path)
    assert_clean_image(facts, path, "PNG", "RGB", (30, 12))
    assert facts.bit_depth == 8
    assert facts.problems == [] and facts.orientation is None


def test_png_named_jpg(tmp_path: Path) -> None:
    path = save(rgb(3), tmp_path / "png_as.jpg", "PNG")
    facts = probe(path)
    assert_clean_image(facts, path, "PNG", "RGB", (24, 16))  # format from content
    assert problems(facts) == [("extension-mismatch", "warning")]
    _, _, message, fix = facts.problems[0]
    assert message == "PNG data in a .jpg file"
    assert fix == "rename it to .png"
    assert not facts.has_error


def test_image_data_under_a_non_image_name(tmp_path: Path) -> None:
    facts = probe(save(rgb(3), tmp_path / "picture.dat", "PNG"))
    assert facts.is_image and facts.format == "PNG"
    assert problems(facts) == [("extension-mismatch", "warning")]
    assert "torchvision's ImageFolder would skip it" in facts.problems[0][2]


def test_zero_byte_image(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.jpg", b"")
    facts = probe(path)
    assert problems(facts) == [("zero-byte", "error")]
    assert facts.is_image and facts.has_error
    assert facts.size == 0 and facts.sha256 is None and facts.format is None


def test_zero_byte_non_image_is_skipped(tmp_path: Path) -> None:
    facts = probe(write(tmp_path / "empty.txt", b""))
    assert not facts.is_image and facts.problems == []
    assert facts.skip_reason == "empty file that is not named as an image"


def test_truncated_jpeg_body(tmp_path: Path) -> None:
    full = jpeg_bytes(9, (64, 64))
    path = write(tmp_path / "cut.jpg", full[: len(full) * 2 // 3])
    facts = probe(path)
    # the header is intact: the facts are read, the missing end-of-image marker is an error
    assert (facts.format, facts.mode, facts.width, facts.height) == ("JPEG", "RGB", 64, 64)
    assert problems(facts) == [("truncated", "error")]
    assert "end-of-image marker" in facts.problems[0][2]
    assert facts.size == len(full) * 2 // 3 and facts.sha256 == sha(path)


def test_jpeg_truncated_inside_its_header(tmp_path: Path) -> None:
    path = write(tmp_path / "head.jpg", jpeg_bytes(9, (64, 64))[:150])
    facts = probe(path)
    assert facts.is_image and facts.format is None  # Pillow could not open it
    assert problems(facts) == [("truncated", "error")]
    assert "ends inside its header" in facts.problems[0][2]
    assert facts.sha256 == sha(path)


def test_text_named_png(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.png", b"this is text, not a picture\n")
    facts = probe(path)
    assert facts.is_image  # named as an image: it is a problem, not a skip
    assert problems(facts) == [("unreadable", "error")]
    assert facts.problems[0][2] == "not a readable image although named .png"
    assert facts.format is None and facts.mode is None and facts.width is None
    assert facts.sha256 == sha(path) and facts.size == 28


def test_text_named_txt_is_skipped(tmp_path: Path) -> None:
    facts = probe(write(tmp_path / "notes.txt", b"labelling notes\n"))
    assert not facts.is_image and facts.problems == []
    assert facts.skip_reason == "not an image (content not recognised)"


def test_garbage_after_a_png_signature_is_unreadable(tmp_path: Path) -> None:
    png = (save(rgb(1), tmp_path / "ok.png")).read_bytes()
    damaged = png[:8] + b"\x00" * 30 + png[38:]  # IHDR destroyed, IEND still at the end
    facts = probe(write(tmp_path / "bad.png", damaged))
    assert problems(facts) == [("unreadable", "error")]
    assert facts.problems[0][2].startswith("broken image header")


@pytest.mark.parametrize(
    ("name", "make", "mode", "needle"),
    [
        ("rgba.png", lambda p: save(rgb(5).convert("RGBA"), p), "RGBA", "alpha"),
        ("palette.png", lambda p: save(rgb(4).convert("P"), p), "P", "palette"),
        ("cmyk.jpg", lambda p: save(rgb(8).convert("CMYK"), p, "JPEG"), "CMYK", "CMYK"),
    ],
)
def test_modes_converted_on_load_are_warnings(
    tmp_path: Path, name: str, make: object, mode: str, needle: str
) -> None:
    path = tmp_path / name
    make(path)  # type: ignore[operator]
    facts = probe(path)
    fmt = "PNG" if name.endswith(".png") else "JPEG"
    assert_clean_image(facts, path, fmt, mode, (24, 16))
    assert problems(facts) == [("mode", "warning")]
    assert needle in facts.problems[0][2]
    assert facts.bit_depth == (8 if fmt == "PNG" else None)
    assert not facts.has_error


def test_16_bit_grayscale_png(tmp_path: Path) -> None:
    arr = np.full((6, 10), 40000, dtype=np.uint16)
    path = save(Image.fromarray(arr), tmp_path / "gray16.png")
    facts = probe(path)
    assert facts.format == "PNG" and facts.mode.startswith("I;16")  # type: ignore[union-attr]
    assert (facts.width, facts.height, facts.bit_depth) == (10, 6, 16)
    assert problems(facts) == [("mode", "warning")]
    assert facts.problems[0][2] == (
        "16-bit grayscale image: rescaled to 8-bit grayscale (precision reduced)"
    )


def test_16_bit_colour_png(tmp_path: Path) -> None:
    facts = probe(write(tmp_path / "rgb16.png", png16_rgb(4, 3)))
    assert (facts.mode, facts.bit_depth, facts.width, facts.height) == ("RGB", 16, 4, 3)
    assert problems(facts) == [("mode", "warning")]
    assert "16-bit colour PNG" in facts.problems[0][2]


def test_exif_orientation_6_swaps_the_displayed_size(tmp_path: Path) -> None:
    path = exif_rotated_jpeg(tmp_path / "rotated.jpg", stored=(40, 20), orientation=6)
    facts = probe(path)
    assert facts.orientation == 6
    assert (facts.width, facts.height) == (20, 40)  # as displayed, not as stored
    assert facts.problems == [] and facts.format == "JPEG"


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 7, 8])
def test_other_orientations(tmp_path: Path, orientation: int) -> None:
    """5-8 turn the image by a quarter (width and height swap), 1-4 do not."""
    facts = probe(exif_rotated_jpeg(tmp_path / "r.jpg", stored=(40, 20), orientation=orientation))
    size = (20, 40) if orientation >= 5 else (40, 20)
    assert facts.orientation == orientation and (facts.width, facts.height) == size
    assert facts.problems == []


def test_invalid_orientation_is_noted_and_ignored(tmp_path: Path) -> None:
    facts = probe(exif_rotated_jpeg(tmp_path / "r.jpg", stored=(40, 20), orientation=9))
    assert facts.orientation == 9 and (facts.width, facts.height) == (40, 20)
    assert problems(facts) == [("exif-orientation-invalid", "info")]
    assert not facts.has_error


def test_body_corruption_is_found_only_with_verify(tmp_path: Path) -> None:
    path = write(tmp_path / "body.jpg", body_corrupt_jpeg())
    assert probe(path).problems == []
    facts = probe(path, verify=True)
    assert problems(facts) == [("corrupt", "error")]
    # a good file stays clean under verify
    assert probe(write(tmp_path / "ok.jpg", jpeg_bytes(1)), verify=True).problems == []


def test_pixel_limit(tmp_path: Path) -> None:
    path = save(rgb(1, (24, 16)), tmp_path / "a.png")
    facts = probe(path, max_pixels=24 * 16 - 1)
    assert problems(facts) == [("decompression-bomb", "error")]
    assert "24x16 = 384 pixels, over the limit of 383" in facts.problems[0][2]
    assert probe(path, max_pixels=24 * 16).problems == []


def test_near_duplicate_hash(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jpg", jpeg_bytes(1, (64, 64)))
    b = write(tmp_path / "b.jpg", jpeg_bytes(1, (64, 64), optimize=True))  # other bytes
    c = write(tmp_path / "c.jpg", jpeg_bytes(2, (64, 64)))
    cut = write(tmp_path / "cut.jpg", jpeg_bytes(3, (64, 64))[:1500])
    fa, fb, fc, fcut = probe_files([str(p) for p in (a, b, c, cut)], near_duplicates=True)
    assert fa.sha256 != fb.sha256
    assert isinstance(fa.dhash, int) and fa.dhash == fb.dhash
    assert fc.dhash is not None and fc.dhash != fa.dhash
    assert fcut.has_error and fcut.dhash is None  # no hash for a file with an error


def test_vanished_file_and_broken_link(tmp_path: Path) -> None:
    os.symlink("missing.jpg", tmp_path / "link.jpg")
    gone, link = probe_files([str(tmp_path / "gone.jpg"), str(tmp_path / "link.jpg")])
    assert gone.skip_reason == "vanished during the scan" and not gone.is_image
    assert problems(link) == [("broken-link", "error")]
    assert "missing.jpg" in link.problems[0][2]


def test_a_batch_keeps_its_order(tmp_path: Path) -> None:
    paths = [
        write(tmp_path / "z.jpg", jpeg_bytes(1)),
        write(tmp_path / "a.png", b""),
        save(rgb(2), tmp_path / "m.png"),
    ]
    facts = probe_files([str(p) for p in paths])
    assert [f.path for f in facts] == [str(p) for p in paths]
    assert [f.format for f in facts] == ["JPEG", None, "PNG"]


def test_jpeg_with_trailing_data_is_not_truncated(tmp_path: Path) -> None:
    """Over 1 KiB after a complete JPEG's end marker (a phone's motion photo) is not a
    truncation: the image is used, and an info line says what is there."""
    path = write(tmp_path / "motion.jpg", jpeg_bytes(1) + b"\x00" * 2000)
    with Image.open(path) as im:
        im.load()  # Pillow decodes it fully
    facts = probe(path, verify=True)
    assert [(c, s) for c, s, *_ in facts.problems] == [("trailing-data", "info")]
    assert not facts.has_error
