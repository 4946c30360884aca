"""Header-only inspection of files: what a scan runs for each file.

Each file is read once: its bytes are hashed, its header parsed by Pillow
(no pixel decode), its trailer checked for truncation and, only when asked,
its pixels decoded. Nothing here raises for a bad file: what is wrong is
recorded in :class:`FileFacts`.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from .images import (
    DEFAULT_MAX_PIXELS,
    FORMAT_EXTENSIONS,
    IMAGE_EXTENSIONS,
    dhash,
    load_image,
    mode_note,
    no_pillow_pixel_limit,
)

__all__ = ["FileFacts", "probe_files"]

_TRAILERS = {
    # format: (bytes that must appear near the end, what is missing)
    "JPEG": (b"\xff\xd9", "the JPEG end-of-image marker"),
    "MPO": (b"\xff\xd9", "the JPEG end-of-image marker"),
    "PNG": (b"IEND", "the PNG IEND chunk"),
    "GIF": (b";", "the GIF trailer byte"),
}
_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF8": "GIF"}
_TAIL_BYTES = 1024
_WHOLE_FILE_LIMIT = 64 << 20  # smaller files are read into memory once
# Formats whose EXIF block sits in the header. PNG's getexif() decodes the
# whole image when the eXIf chunk comes after the pixels, so it is only asked
# when the header already holds it.
_EXIF_IN_HEADER = frozenset({"JPEG", "MPO", "TIFF", "WEBP"})


@dataclass
class FileFacts:
    """What a probe learned about one file. Plain data: it crosses processes."""

    path: str
    size: int = 0
    is_image: bool = False
    format: str | None = None
    mode: str | None = None
    width: int | None = None
    height: int | None = None
    bit_depth: int | None = None
    orientation: int | None = None
    sha256: str | None = None
    dhash: int | None = None
    # (code, severity, message, fix)
    problems: list[tuple[str, str, str, str]] = field(default_factory=list)
    skip_reason: str | None = None

    def add(self, code: str, severity: str, message: str, fix: str) -> None:
        self.problems.append((code, severity, message, fix))

    @property
    def has_error(self) -> bool:
        return any(p[1] == "error" for p in self.problems)


def probe_files(
    paths: Sequence[str],
    verify: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    near_duplicates: bool = False,
) -> list[FileFacts]:
    """Probe a batch of files (one batch is one task for a worker process)."""
    with no_pillow_pixel_limit():
        return [_probe(p, verify, max_pixels, near_duplicates) for p in paths]


def _read(path: str, size: int) -> tuple[str, bytes, bytes, bytes | None]:
    """Return ``(sha256, head, tail, whole bytes or None when large)`` from one read."""
    with open(path, "rb") as fh:
        if size <= _WHOLE_FILE_LIMIT:
            data = fh.read()
            return hashlib.sha256(data).hexdigest(), data[:32], data[-_TAIL_BYTES:], data
        digest = hashlib.sha256()
        head = tail = b""
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            head = head or chunk[:32]
            tail = (tail + chunk)[-_TAIL_BYTES:]
        return digest.hexdigest(), head, tail, None


def _probe(path: str, verify: bool, max_pixels: int, near_duplicates: bool) -> FileFacts:
    facts = FileFacts(path=path)
    ext = os.path.splitext(path)[1].lower()
    image_ext = ext in IMAGE_EXTENSIONS
    try:
        facts.size = os.stat(path).st_size
    except FileNotFoundError:
        if os.path.islink(path):
            facts.is_image = True
            facts.add(
                "broken-link",
                "error",
                f"symbolic link to a missing target ({os.readlink(path)})",
                "restore the target or delete the link",
            )
        else:
            facts.skip_reason = "vanished during the scan"
        return facts
    except OSError as exc:
        facts.is_image = True
        if exc.errno == errno.ELOOP:  # a link to itself, or links that point at each other
            try:
                target = f" (to {os.readlink(path)})"
            except OSError:
                target = ""
            facts.add(
                "broken-link",
                "error",
                f"symbolic link loop: the link{target} leads back to itself and never "
                "reaches a file",
                "delete the link, or point it at a real image",
            )
            return facts
        facts.add(
            "unreadable",
            "error",
            f"cannot stat the file: {exc.strerror}",
            "check the file's permissions",
        )
        return facts
    if facts.size == 0:
        if image_ext:
            facts.is_image = True
            facts.add(
                "zero-byte",
                "error",
                "the file is empty (0 bytes)",
                "re-export or re-download the image, or delete the file",
            )
        else:
            facts.skip_reason = "empty file that is not named as an image"
        return facts
    try:
        facts.sha256, head, tail, data = _read(path, facts.size)
    except OSError as exc:
        facts.is_image = True
        facts.add(
            "unreadable",
            "error",
            f"cannot read the file: {exc.strerror}",
            "check the file's permissions",
        )
        return facts
    try:
        im = Image.open(io.BytesIO(data) if data is not None else path)
    except Exception as exc:  # Pillow raises many types on broken headers
        _open_failed(facts, exc, ext, image_ext, head, tail)
        return facts
    with im:
        facts.is_image = True
        _read_header(facts, im, ext, head, tail)
        if im.width * im.height > max_pixels:
            facts.add(
                "decompression-bomb",
                "error",
                f"{im.width}x{im.height} = {im.width * im.height:,} pixels, over the "
                f"limit of {max_pixels:,}",
                "downscale the image, or raise --max-pixels if it is genuine",
            )
            return facts
        trailer = _TRAILERS.get(im.format or "")
        if trailer is not None and trailer[0] not in tail:
            _check_ending(facts, data if data is not None else path, *trailer)
        if verify and not facts.has_error:
            _verify_decode(facts, im)
    if near_duplicates and not facts.has_error:
        try:
            facts.dhash = dhash(load_image(path, draft=(64, 64)))
        except Exception:  # approximate extra: a failure here only loses the hash
            facts.dhash = None
    return facts


def _open_failed(
    facts: FileFacts, exc: Exception, ext: str, image_ext: bool, head: bytes, tail: bytes
) -> None:
    """Classify a file Pillow cannot open: truncated, broken, or simply not an image."""
    fmt = next((f for sig, f in _SIGNATURES.items() if head.startswith(sig)), None)
    if fmt is not None and _TRAILERS[fmt][0] not in tail:
        facts.is_image = True
        facts.add(
            "truncated",
            "error",
            f"{fmt} data that ends inside its header (truncated download or copy)",
            "re-copy or re-download the image",
        )
    elif fmt is not None or (image_ext and not isinstance(exc, UnidentifiedImageError)):
        facts.is_image = True
        facts.add(
            "unreadable",
            "error",
            f"broken image header: {exc}",
            "re-export the image, or move the file out of the dataset",
        )
    elif image_ext:
        facts.is_image = True
        facts.add(
            "unreadable",
            "error",
            f"not a readable image although named {ext}",
            "re-export the image, or move the file out of the dataset",
        )
    else:
        facts.skip_reason = "not an image (content not recognised)"


def _read_header(facts: FileFacts, im: Image.Image, ext: str, head: bytes, tail: bytes) -> None:
    facts.format, facts.mode = im.format, im.mode
    width, height = im.size
    orientation = None
    if im.format in _EXIF_IN_HEADER or "exif" in im.info:
        try:
            orientation = im.getexif().get(0x0112)
        except Exception:  # a broken EXIF block must not make the image unusable
            facts.add(
                "exif-unreadable",
                "info",
                "the EXIF block cannot be parsed; it is ignored",
                "nothing to do unless orientation matters",
            )
    if orientation is not None:
        facts.orientation = int(orientation)
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        elif orientation not in (1, 2, 3, 4):
            facts.add(
                "exif-orientation-invalid",
                "info",
                f"EXIF Orientation is {orientation}, which is not a valid value; "
                "treated as 1 (no rotation)",
                "nothing to do",
            )
    facts.width, facts.height = width, height
    if im.format == "PNG" and head[12:16] == b"IHDR" and len(head) >= 25:
        facts.bit_depth = head[24]
    note = mode_note(im.mode)
    if facts.bit_depth == 16 and im.mode in ("RGB", "RGBA"):
        note = "16-bit colour PNG: Pillow reads it as 8 bits per channel (precision reduced)"
    if note is not None:
        facts.add(
            "mode",
            "warning",
            note,
            "nothing to do if the conversion is acceptable; otherwise convert the file yourself",
        )
    expected = FORMAT_EXTENSIONS.get(im.format or "")
    if expected is not None and ext not in expected:
        named = f"a {ext} file" if ext else "a file without extension"
        extra = "" if ext in IMAGE_EXTENSIONS else " (torchvision's ImageFolder would skip it)"
        facts.add(
            "extension-mismatch",
            "warning",
            f"{im.format} data in {named}{extra}",
            f"rename it to {sorted(expected)[0]}",
        )


def _contains(source: bytes | str, marker: bytes) -> bool:
    """Whether ``marker`` occurs anywhere in the file (read in blocks when large)."""
    if isinstance(source, bytes):
        return marker in source
    with open(source, "rb") as fh:
        prev = b""
        while block := fh.read(1 << 20):
            if marker in prev + block:
                return True
            prev = block[-len(marker) :]
    return False


def _check_ending(facts: FileFacts, source: bytes | str, marker: bytes, what: str) -> None:
    """The file does not end with its format's end marker: truncated, or data appended
    after a complete image (a phone's motion photo stores a video there). The marker
    must occur earlier in the file and the image must decode completely for the latter;
    the decode runs only for these rare files."""
    complete = _contains(source, marker)
    if complete:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
                    im.load()
        except Exception:
            complete = False
    if not complete:
        facts.add(
            "truncated",
            "error",
            f"the file ends without {what} (truncated download or copy)",
            "re-copy or re-download the image",
        )
        return
    facts.add(
        "trailing-data",
        "info",
        f"extra data after {what} (a motion photo, or something appended); the image "
        "itself decodes completely",
        "nothing to do; re-save the image to drop the extra data",
    )


def _verify_decode(facts: FileFacts, im: Image.Image) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            im.load()
    except Exception as exc:
        facts.add(
            "corrupt",
            "error",
            f"pixel data cannot be decoded: {exc}",
            "re-export or re-download the image",
        )
