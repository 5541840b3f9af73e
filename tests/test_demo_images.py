"""Reading uploaded and command-line photos: bad bytes named, the pixel limit, 16-bit,
palette and transparent PNGs converted."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from faceid.demo.faces import DemoInputError, read_image
from tests._demo_fixtures import PEOPLE, identify_json, png_header_only, render_face


def test_read_image_refuses_bad_input_by_name(tmp_path):
    with pytest.raises(DemoInputError, match=r"x\.jpg: not an image"):
        read_image(b"hello", "x.jpg", 10**6)
    buffer = io.BytesIO()
    Image.fromarray(render_face(1)).save(buffer, format="PNG")
    with pytest.raises(DemoInputError, match=r"y\.png: a corrupt or truncated image"):
        read_image(buffer.getvalue()[:2000], "y.png", 10**6)
    with pytest.raises(
        DemoInputError, match=r"z.png: refused by the pixel limit: 200x240 is 48,000 pixels, more than the 1,000"
    ):
        read_image(buffer.getvalue(), "z.png", 1000)
    with pytest.raises(DemoInputError, match="empty"):
        read_image(b"", "e.png", 1000)
    grey = io.BytesIO()
    Image.new("L", (30, 20), 7).save(grey, format="PNG")
    assert read_image(grey.getvalue(), "g.png", 1000).shape == (20, 30, 3)



@pytest.mark.parametrize("side", [12000, 30000])  # below and above Pillow's own bomb limit
def test_a_pixel_limit_refusal_says_pixel_limit(side):
    with pytest.raises(DemoInputError, match=r"big.png: refused by the pixel limit") as caught:
        read_image(png_header_only(side, side), "big.png", 50_000_000)
    assert "corrupt" not in str(caught.value)


def test_16_bit_greyscale_and_palette_pngs_are_converted(demo_project, capsys, tmp_path):
    face = render_face(PEOPLE["alice"])
    grey = np.asarray(Image.fromarray(face).convert("L"), dtype=np.uint16) * 257  # full 16-bit range
    deep = tmp_path / "deep.png"
    Image.fromarray(grey).save(deep)  # uint16: mode I;16
    assert Image.open(deep).mode.startswith("I")
    palette = tmp_path / "palette.png"
    Image.fromarray(face).convert("P", palette=Image.ADAPTIVE, colors=256).save(palette)
    decoded = read_image(deep, "deep.png", 10**6)
    np.testing.assert_array_equal(decoded[..., 0], np.asarray(Image.fromarray(face).convert("L")))
    assert np.abs(read_image(palette, "palette.png", 10**6).astype(int) - face).mean() < 6
    rc, out = identify_json(demo_project, capsys, deep, palette)
    assert rc == 0 and [len(p["faces"]) for p in out["photos"]] == [1, 1]


def test_transparent_pixels_are_laid_on_white():
    rgba = np.zeros((20, 30, 4), np.uint8)  # fully transparent black
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    assert read_image(buffer.getvalue(), "t.png", 10**6).min() == 255
