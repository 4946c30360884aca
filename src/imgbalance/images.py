"""Reading images: header probes, full-decode checks, normalised loading.

``probe_file`` is what a scan runs per file. It reads the header through
Pillow (no pixel decode), hashes the bytes, checks the file's trailer for
truncation and, only when asked, decodes the pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "FileFacts",
    "dhash",
    "load_image",
    "mode_note",
    "probe_file",
]

#: torchvision's ``IMG_EXTENSIONS`` plus the other formats Pillow reads well.
IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".ppm",
        ".pgm",
        ".pbm",
        ".bmp",
        ".tif",
        ".tiff",
        ".webp",
        ".gif",
    }
)

#: Extensions that are expected for each Pillow format.
FORMAT_EXTENSIONS: dict[str, frozenset[str]] = {
    "JPEG": frozenset({".jpg", ".jpeg", ".jpe", ".jfif"}),
    "MPO": frozenset({".jpg", ".jpeg", ".jpe", ".mpo"}),
    "PNG": frozenset({".png"}),
    "PPM": frozenset({".ppm", ".pgm", ".pbm", ".pnm"}),
    "BMP": frozenset({".bmp", ".dib"}),
    "TIFF": frozenset({".tif", ".tiff"}),
    "WEBP": frozenset({".webp"}),
    "GIF": frozenset({".gif"}),
}

#: Pillow's own default limit (about 89.5 megapixels); beyond it Pillow warns,
#: beyond twice it refuses to open.
DEFAULT_MAX_PIXELS = 89_478_485

#: What ``load_image`` does to each mode that is not plain RGB or L.
_MODE_NOTES = {
    "1": "1-bit image: converted to 8-bit grayscale (L)",
    "P": "palette image: converted to RGB (transparent palette entries composited on white)",
    "PA": "palette image with alpha: converted to RGB, alpha composited on white",
    "RGBA": "RGBA image: alpha channel composited on white, giving RGB",
    "RGBa": "premultiplied RGBA image: alpha composited on white, giving RGB",
    "LA": "grayscale with alpha: alpha composited on white, giving L",
    "La": "grayscale with premultiplied alpha: alpha composited on white, giving L",
    "CMYK": "CMYK image (often print scans): converted to RGB without colour management",
    "YCbCr": "YCbCr image: converted to RGB",
    "LAB": "CIELAB image: converted to RGB",
    "HSV": "HSV image: converted to RGB",
    "I": "32-bit integer image: rescaled to 8-bit grayscale (precision reduced)",
    "F": "32-bit float image: rescaled to 8-bit grayscale (precision reduced)",
}
for _m in ("I;16", "I;16L", "I;16B", "I;16N"):
    _MODE_NOTES[_m] = "16-bit grayscale image: rescaled to 8-bit grayscale (precision reduced)"

_TRAILERS = {
    # Format: (bytes that must appear near the end, what is missing)
    "JPEG": (b"\xff\xd9", "the JPEG end-of-image marker"),
    "MPO": (b"\xff\xd9", "the JPEG end-of-image marker"),
    "PNG": (b"IEND", "the PNG IEND chunk"),
    "GIF": (b";", "the GIF trailer byte"),
}
_TAIL_BYTES = 1024
_EXIF_IN_HEADER = frozenset({"JPEG", "MPO", "TIFF", "WEBP"})
_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF8": "GIF"}


def mode_note(mode: str) -> str | None:
    """Describe how a Pillow mode is converted on load; None for RGB and L."""
    if mode in ("RGB", "L"):
        return None
    return _MODE_NOTES.get(mode, f"mode {mode}: converted to RGB")


@dataclass
class FileFacts:
    """What one probe learned about one file. Plain data: it crosses processes."""

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


@contextlib.contextmanager
def _no_pillow_pixel_limit() -> Iterator[None]:
    """Let Pillow open any header: the scan applies its own limit without decoding."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _hash_and_tail(path: str) -> tuple[str, bytes]:
    digest = hashlib.sha256()
    tail = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            tail = (tail + chunk)[-_TAIL_BYTES:]
    return digest.hexdigest(), tail


def _png_bit_depth(path: str) -> int | None:
    with open(path, "rb") as fh:
        head = fh.read(26)
    if len(head) == 26 and head[12:16] == b"IHDR":
        return head[24]
    return None


def probe_file(
    path: str,
    *,
    verify: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    near_duplicates: bool = False,
) -> FileFacts:
    """Inspect one file without decoding its pixels (unless ``verify``).

    Never raises for a bad file: what is wrong is recorded in ``problems``
    (as ``(code, severity, message, fix)``) or ``skip_reason``.
    """
    facts = FileFacts(path=path)
    ext = os.path.splitext(path)[1].lower()
    image_ext = ext in IMAGE_EXTENSIONS
    try:
        st = os.stat(path)
    except FileNotFoundError:
        facts.is_image = image_ext
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
        facts.add(
            "unreadable",
            "error",
            f"cannot stat the file: {exc.strerror}",
            "check the file's permissions",
        )
        return facts
    facts.size = st.st_size
    if st.st_size == 0:
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
        facts.sha256, tail = _hash_and_tail(path)
    except OSError as exc:
        facts.is_image = True
        facts.add(
            "unreadable",
            "error",
            f"cannot read the file: {exc.strerror}",
            "check the file's permissions",
        )
        return facts
    with _no_pillow_pixel_limit():
        try:
            im = Image.open(path)
        except Exception as exc:  # Pillow raises many types on broken headers
            _open_failed(facts, exc, ext, image_ext, tail)
            return facts

        with im:
            facts.is_image = True
            _read_header(facts, im, ext, tail)
            pixels = im.width * im.height
            if pixels > max_pixels:
                facts.add(
                    "decompression-bomb",
                    "error",
                    f"{im.width}x{im.height} = {pixels:,} pixels, over the limit of {max_pixels:,}",
                    "downscale the image, or raise --max-pixels if it is genuine",
                )
                return facts
            if verify and not _has_error(facts):
                _verify_decode(facts, im)
        if near_duplicates and not _has_error(facts):
            facts.dhash = _safe_dhash(path)
    return facts


def _open_failed(facts: FileFacts, exc: Exception, ext: str, image_ext: bool, tail: bytes) -> None:
    """Classify a file Pillow cannot open: truncated, broken, or simply not an image."""
    with open(facts.path, "rb") as fh:
        head = fh.read(8)
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


def _has_error(facts: FileFacts) -> bool:
    return any(p[1] == "error" for p in facts.problems)


def _read_header(facts: FileFacts, im: Image.Image, ext: str, tail: bytes) -> None:
    facts.format = im.format
    facts.mode = im.mode
    width, height = im.size
    orientation = None
    # PNG's getexif() decodes the whole image when the EXIF chunk comes after
    # the pixels; only ask where the header already holds it.
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
    if im.format == "PNG":
        facts.bit_depth = _png_bit_depth(facts.path)
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
    trailer = _TRAILERS.get(im.format or "")
    if trailer is not None and trailer[0] not in tail:
        facts.add(
            "truncated",
            "error",
            f"the file ends without {trailer[1]} (truncated download or copy)",
            "re-copy or re-download the image",
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


def load_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode an image the way every imgbalance command sees it.

    EXIF orientation is applied; the result is mode ``RGB`` or ``L`` (see
    :func:`mode_note` for each conversion). ``draft`` lets JPEG decode at a
    reduced scale when only a thumbnail of at least that size is needed.
    """
    with _no_pillow_pixel_limit(), Image.open(path) as im:
        if im.width * im.height > max_pixels:
            raise ValueError(f"{path}: {im.width}x{im.height} exceeds {max_pixels:,} pixels")
        if draft is not None and im.format in ("JPEG", "MPO"):
            im.draft(im.mode, draft)
        im.load()
        return _normalise(ImageOps.exif_transpose(im))


def _normalise(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode in ("RGB", "L"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("RGBA", "RGBa", "PA", "LA", "La"):
        gray = mode in ("LA", "La")
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out = Image.alpha_composite(white, rgba).convert("RGB")
        return out.convert("L") if gray else out
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        scaled = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L")
    return im.convert("RGB")


def dhash(im: Image.Image, size: int = 8) -> int:
    """64-bit difference hash of an image: approximate, robust to re-encoding."""
    small = im.convert("L").resize((size + 1, size), Image.Resampling.BILINEAR)
    arr = np.asarray(small, dtype=np.int16)
    bits = (arr[:, 1:] > arr[:, :-1]).ravel()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def _safe_dhash(path: str) -> int | None:
    try:
        return dhash(load_image(path, draft=(64, 64)))
    except Exception:
        return None
