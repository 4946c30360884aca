"""Offline augmentation: parameters drawn at plan time, applied with Pillow.

Each augmented image is described by a plain dictionary of *drawn* parameters
(flips, quarter turns, rotation angle, zoom, shift, brightness, contrast,
saturation, hue), so the recipe in ``plan.json`` and ``manifest.csv`` says
exactly what was done, and rendering is a pure function of the recipe and the
parent file. The parameters are drawn from a per-image seed that the recipe
also stores.

The transforms are the Pillow calls that ``torchvision.transforms.v2.functional``
makes for a PIL image, made directly (the same pixels, tested against torchvision),
so offline augmentation needs neither torch nor its import (2.7 CPU-s and 670 MiB
in every render process).

Policies
--------
``conservative`` (the default) is meant to be safe for medical images: small
rotations (up to 10 degrees), horizontal flips, brightness and contrast within
10%. ``standard`` is a common natural-image policy; ``microscopy`` uses the
symmetries of top-down images (flips and quarter turns; non-square images
only get half turns, so their size is kept). Any field can be overridden.

Corners
-------
A rotated, shifted or shrunk image leaves corners with no pixels. With
``corners="zoom"`` (the default) the image is scaled up just enough to cover
the frame, so no invented pixels appear; a number 0-255 fills the corners with
that grey value instead.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

from ..errors import ImgBalanceError

__all__ = [
    "POLICIES",
    "AugmentPolicy",
    "apply_augment",
    "draw_augment",
]


@dataclass(frozen=True)
class AugmentPolicy:
    """Ranges the per-image parameters are drawn from."""

    hflip: float = 0.5  # probability of a horizontal flip
    vflip: float = 0.0  # probability of a vertical flip
    quarter_turns: bool = False  # rotate by a random multiple of 90 degrees
    rotate: float = 10.0  # angle drawn uniformly in [-rotate, rotate] degrees
    scale: tuple[float, float] = (1.0, 1.0)  # zoom factor range
    translate: float = 0.0  # shift, as a fraction of width/height, in [-t, t]
    brightness: float = 0.1  # factor in [1 - b, 1 + b]
    contrast: float = 0.1
    saturation: float = 0.0
    hue: float = 0.0  # shift in [-h, h], at most 0.5
    corners: str | int = "zoom"  # "zoom" or a grey value 0-255 for uncovered corners

    def validate(self) -> None:
        def fail(what: str) -> ImgBalanceError:
            return ImgBalanceError(f"augment: {what}.")

        for key in ("hflip", "vflip"):
            p = getattr(self, key)
            if not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise fail(f"{key} is a probability in [0, 1], got {p!r}")
        for key in ("rotate", "translate", "brightness", "contrast", "saturation", "hue"):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise fail(f"{key} must be a number >= 0, got {v!r}")
        if self.rotate > 180:
            raise fail(f"rotate is at most 180 degrees, got {self.rotate}")
        if self.translate >= 0.5:
            raise fail(
                f"translate must be below 0.5 (a fraction of the size), got {self.translate}"
            )
        for key in ("brightness", "contrast", "saturation"):
            v = getattr(self, key)
            if v >= 1:
                raise fail(
                    f"{key} must be below 1 (factors stay positive), got {getattr(self, key)}"
                )
        if self.hue > 0.5:
            raise fail(f"hue is at most 0.5, got {self.hue}")
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise fail(f"scale must be [low, high] with 0 < low <= high, got {list(self.scale)}")
        c = self.corners
        if c != "zoom" and not (isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255):
            raise fail(f'corners must be "zoom" or a grey value 0-255, got {c!r}')


POLICIES: dict[str, AugmentPolicy] = {
    "conservative": AugmentPolicy(),
    "standard": AugmentPolicy(
        rotate=20.0,
        scale=(0.9, 1.1),
        translate=0.05,
        brightness=0.2,
        contrast=0.2,
        saturation=0.2,
        hue=0.02,
    ),
    "microscopy": AugmentPolicy(vflip=0.5, quarter_turns=True, rotate=0.0),
}

#: the method parameters that override a policy field
POLICY_FIELDS = tuple(f.name for f in fields(AugmentPolicy))


def make_policy(name: str, overrides: dict[str, Any]) -> AugmentPolicy:
    """A named policy with some fields replaced (``None`` values are ignored)."""
    if name not in POLICIES:
        raise ImgBalanceError(
            f'augment: unknown policy "{name}"; choose one of {", ".join(POLICIES)}.'
        )
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "scale" in changes:
        s = changes["scale"]
        changes["scale"] = (float(s), float(s)) if isinstance(s, (int, float)) else tuple(s)
        if len(changes["scale"]) != 2:
            raise ImgBalanceError(f"augment: scale must be a number or [low, high], got {s!r}.")
    policy = replace(POLICIES[name], **changes)
    policy.validate()
    return policy


def policy_dict(policy: AugmentPolicy) -> dict[str, Any]:
    d = asdict(policy)
    d["scale"] = list(policy.scale)
    return d


def draw_augment(policy: AugmentPolicy, seed: int) -> dict[str, Any]:
    """Concrete parameters for one image, drawn from ``seed`` (rounded, so JSON is exact)."""
    rng = np.random.default_rng(seed)
    u = rng.random(11)  # always eleven draws: changing one range never shifts the others

    def sym(x: float, r: float) -> float:
        return round((2.0 * x - 1.0) * r, 4) + 0.0  # + 0.0: never -0.0

    return {
        "hflip": bool(u[0] < policy.hflip),
        "vflip": bool(u[1] < policy.vflip),
        "quarter_turns": int(u[2] * 4) if policy.quarter_turns else 0,
        "angle": sym(u[3], policy.rotate),
        "scale": round(policy.scale[0] + u[4] * (policy.scale[1] - policy.scale[0]), 4),
        "translate": [sym(u[5], policy.translate), sym(u[6], policy.translate)],
        "brightness": round(1.0 + sym(u[7], policy.brightness), 4),
        "contrast": round(1.0 + sym(u[8], policy.contrast), 4),
        "saturation": round(1.0 + sym(u[9], policy.saturation), 4),
        "hue": sym(u[10], policy.hue),
        "corners": policy.corners,
    }


def cover_scale(width: int, height: int, angle: float, tx: float, ty: float) -> float:
    """Smallest zoom at which the rotated, shifted image still covers its whole frame.

    ``tx``/``ty`` are shifts in pixels. torchvision rotates and scales about the
    centre and then shifts, so the frame corner ``c`` comes from the source point
    ``R(-angle)(c - t) / s``; it must lie inside the source for every corner.
    """
    need = 0.0
    for sign in (1.0, -1.0):  # either rotation direction: a slight over-estimate at worst
        a = math.radians(sign * angle)
        cos, sin = math.cos(a), math.sin(a)
        for cx in (-width / 2, width / 2):
            for cy in (-height / 2, height / 2):
                dx, dy = cx - tx, cy - ty
                ux, uy = cos * dx + sin * dy, -sin * dx + cos * dy
                need = max(need, 2 * abs(ux) / width, 2 * abs(uy) / height)
    return need


def _inverse_affine(
    center: tuple[float, float], angle: float, translate: tuple[float, float], scale: float
) -> list[float]:
    """Pillow's inverse matrix of a rotation by ``angle`` degrees and a zoom by ``scale``
    about ``center``, then a shift by ``translate``: torchvision's
    ``_get_inverse_affine_matrix`` with zero shear (its terms ``cos(rot - 0) / cos(0)``
    and ``x * tan(0)`` are exactly ``cos(rot)`` and 0), in its order of operations, so
    the floats (and so the pixels) are the same."""
    rot = math.radians(angle)
    cx, cy = center
    tx, ty = translate
    cx_plus_tx, cy_plus_ty = cx + tx, cy + ty
    cos, sin = math.cos(rot), math.sin(rot)
    matrix = [cos / scale, sin / scale, 0.0, -sin / scale, cos / scale, 0.0]
    matrix[2] += cx - matrix[0] * cx_plus_tx - matrix[1] * cy_plus_ty
    matrix[5] += cy - matrix[3] * cx_plus_tx - matrix[4] * cy_plus_ty
    return matrix


def _shift_hue(image: Image.Image, hue: float) -> Image.Image:
    """Hue rotated by ``hue`` of a turn in HSV, wrapping around (torchvision's PIL path)."""
    h, s, v = image.convert("HSV").split()
    np_h = np.array(h, dtype=np.uint8)
    np_h += np.int32(hue * 255).astype(np.uint8)  # over/underflows, as wanted
    return Image.merge("HSV", (Image.fromarray(np_h), s, v)).convert(image.mode)


def apply_augment(image: Image.Image, params: dict[str, Any]) -> Image.Image:
    """Apply drawn parameters to a PIL image (RGB or L); the size is kept.

    The operations are Pillow's, called exactly as ``torchvision.transforms.v2.functional``
    calls them for a PIL image (flips, an affine transform with bilinear resampling about
    the centre, ``ImageEnhance`` for brightness, contrast and saturation, an HSV shift for
    hue), so the pixels are torchvision's (a test compares them with torchvision's for
    hundreds of drawn parameters) without importing torch: importing
    ``torchvision.transforms.v2`` costs each render process about 2.7 CPU-s and 670 MiB.
    """
    out = image
    if params["hflip"]:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if params["vflip"]:
        out = out.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    turns = int(params["quarter_turns"]) % 4
    if turns and out.width != out.height:
        turns = 2 if turns in (1, 3) else turns  # a quarter turn would change the size
    if turns:
        out = out.transpose(
            {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180}.get(
                turns, Image.Transpose.ROTATE_270
            )
        )
    angle, scale = float(params["angle"]), float(params["scale"])
    fx, fy = params["translate"]
    tx, ty = fx * out.width, fy * out.height
    if angle or fx or fy or scale != 1.0:
        grey = 0
        if params["corners"] == "zoom":
            scale = max(scale, cover_scale(out.width, out.height, angle, tx, ty))
        else:
            grey = int(params["corners"])
        if scale <= 0.0:
            raise ImgBalanceError(f"augment: scale must be positive, got {scale}.")
        bands = len(out.getbands())
        # the fill colour as torchvision passes it on: a tuple per band, a plain 0 for a
        # grey image without a fill value
        fill: int | tuple[int, ...] = (grey,) * bands
        if bands == 1 and params["corners"] == "zoom":
            fill = 0
        matrix = _inverse_affine((out.width * 0.5, out.height * 0.5), angle, (tx, ty), scale)
        out = out.transform(
            out.size, Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR, fillcolor=fill
        )
    if params["brightness"] != 1.0:
        out = ImageEnhance.Brightness(out).enhance(float(params["brightness"]))
    if params["contrast"] != 1.0:
        out = ImageEnhance.Contrast(out).enhance(float(params["contrast"]))
    if out.mode == "RGB":
        if params["saturation"] != 1.0:
            out = ImageEnhance.Color(out).enhance(float(params["saturation"]))
        if params["hue"]:
            hue = float(params["hue"])
            if not -0.5 <= hue <= 0.5:
                raise ImgBalanceError(f"augment: hue must be in [-0.5, 0.5], got {hue}.")
            out = _shift_hue(out, hue)
    return out


def augment_features(row: np.ndarray, shape: tuple[int, ...], params: dict[str, Any]) -> np.ndarray:
    """The same augmentation applied to a thumbnail feature row in [0, 1] of ``shape``."""
    pixels = np.clip(np.rint(row.reshape(shape) * 255.0), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels[..., 0] if shape[-1] == 1 else pixels)
    out = np.asarray(apply_augment(image, params), dtype=np.float32) / 255.0
    return out.reshape(-1)
