"""load_image: EXIF orientation applied (every value, XMP too), no copy when none is needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from imgbalance.dataset.images import load_image

from imgtools import exif_rotated_jpeg, rgb, save


@pytest.mark.parametrize("orientation", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
def test_every_orientation_as_pillow_transposes_it(tmp_path: Path, orientation: int) -> None:
    p = exif_rotated_jpeg(tmp_path / "r.jpg", stored=(40, 20), orientation=orientation)
    with Image.open(p) as im:
        want = np.asarray(ImageOps.exif_transpose(im))
    got = load_image(p)
    assert got.size == (want.shape[1], want.shape[0])
    np.testing.assert_array_equal(np.asarray(got), want)
    assert got.size == ((20, 40) if orientation in (5, 6, 7, 8) else (40, 20))


def test_xmp_orientation_and_none(tmp_path: Path) -> None:
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>'
        b'<rdf:Description tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
    )
    p = save(rgb(3, (30, 10)), tmp_path / "x.jpg", "JPEG", xmp=xmp)
    assert load_image(p).size == (10, 30)  # turned by its XMP orientation
    plain = save(rgb(4, (30, 10)), tmp_path / "plain.png")
    got = load_image(plain)
    plain.unlink()  # the pixels are loaded: nothing reads the file again
    assert got.size == (30, 10) and np.asarray(got).shape == (10, 30, 3)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(rgb(4, (30, 10))))
