"""Drawing primitives in the canonical face frame: anti-aliased coverage and in-place blending."""

from __future__ import annotations

import numpy as np

from faceid.data.synthetic import exactmath as em

__all__ = ["band", "bbox", "ellipse_d", "gauss", "mix", "smooth"]


def smooth(d: np.ndarray, aa: float) -> np.ndarray:
    """Coverage of a shape from its signed distance `d` (negative inside), anti-aliased."""
    return np.clip(0.5 - d / aa, 0.0, 1.0)


def ellipse_d(u: np.ndarray, v: np.ndarray, cu: float, cv: float, a: float, b: float) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse, canonical units."""
    r = np.sqrt(((u - cu) / a) ** 2 + ((v - cv) / b) ** 2)
    return (r - 1.0) * min(a, b)


def gauss(u: np.ndarray, v: np.ndarray, cu: float, cv: float, su: float, sv: float) -> np.ndarray:
    return em.exp(-0.5 * (((u - cu) / su) ** 2 + ((v - cv) / sv) ** 2))


def bbox(mask: np.ndarray, pad: int = 0) -> tuple[slice, slice] | None:
    """Row and column slices around the non-zero part of `mask`, or None if it is empty."""
    rows = np.flatnonzero(mask.max(axis=1) > 0)
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].max(axis=0) > 0)
    h, w = mask.shape
    return (
        slice(max(rows[0] - pad, 0), min(rows[-1] + 1 + pad, h)),
        slice(max(cols[0] - pad, 0), min(cols[-1] + 1 + pad, w)),
    )


def mix(image: np.ndarray, color: tuple[float, float, float] | np.ndarray, alpha: np.ndarray) -> None:
    """Alpha-blend `color` (RGB, or per pixel) over `image` in place; alpha is (H, W).

    Only the rows and columns where alpha is non-zero are touched: most layers (an eye,
    a mole) cover a few hundred pixels, and blending the whole frame dominated run time.
    """
    win = bbox(alpha)
    if win is None:
        return
    a = alpha[win][..., None].astype(np.float32)
    color = np.asarray(color, dtype=np.float32)
    if color.ndim == 3:
        color = color[win]
    region = image[win]
    region *= 1.0 - a
    region += a * color


def band(u: np.ndarray, v: np.ndarray, curve_v: np.ndarray, half: float, u0: float, u1: float, aa: float) -> np.ndarray:
    """Coverage of a thick curve v = curve_v(u) between u0 and u1 (tapered ends)."""
    t = np.clip((u - u0) / (u1 - u0), 0.0, 1.0)
    taper = np.sqrt(np.clip(em.sin(np.pi * t), 0.0, None))  # sin(float32 pi) < 0
    inside_u = smooth(np.maximum(u0 - u, u - u1), aa)
    return smooth(np.abs(v - curve_v) - half * taper, aa) * inside_u
