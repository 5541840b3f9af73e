"""The renderer's shortcuts give the bits of the straightforward computation they replace.

Each shortcut (a scalar path, a cached kernel, work restricted to where it can matter) is
checked against the plain code it replaced, written out here, on photos built in the
test: equal arrays, zeros' signs included, not merely close ones.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceid.config.dataset import SyntheticParams
from faceid.data.synthetic import exactmath as em
from faceid.data.synthetic import render as rd
from faceid.data.synthetic.generate import ALIGNED_CENTER, ALIGNED_SCALE, person, plan_photos
from faceid.data.synthetic.shapes import smooth
from tests._params import section


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _photos(n: int = 8) -> list[tuple[rd.Identity, rd.Appearance, int, int]]:
    """Render parameters of n photos of params.yaml's dataset, aligned and wild sizes mixed."""
    params = section(SyntheticParams, n_identities=6, min_images_per_identity=2, max_images_per_identity=2)
    jobs, _ = plan_photos(params, "aligned")
    out = []
    for k, job in enumerate(jobs[:n]):
        rng = np.random.default_rng(np.random.SeedSequence([job.seed, job.identity, job.photo, 1]))
        width, height, scale = (178, 218, ALIGNED_SCALE) if k % 2 else (241, 187, ALIGNED_SCALE * 1.3)
        who = person(job.seed, job.identity, params)
        appearance, _ = who.photo(rng, width, height, scale, ALIGNED_CENTER)
        if k % 4 == 3:  # a head turned far, so the back of the cylinder shows on one side
            appearance = type(appearance)(**{**vars(appearance), "yaw": 0.55, "roll": -0.2})
        out.append((who.identity, appearance, width, height))
    return out


# --------------------------------------------------------------------------- exactmath


@pytest.mark.parametrize("f", [em.exp, em.sin, em.cos, em.arcsin])
def test_scalar_path_gives_the_array_paths_bits(f):
    rng = np.random.default_rng(0)
    special = [0.0, -0.0, 0.5, -0.5, 1.0, -1.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4, -746.0, 710.0]
    xs = np.concatenate([rng.uniform(-1, 1, 3000), rng.uniform(-30, 30, 3000), rng.normal(0, 1e-6, 200), special])
    if f is em.arcsin:
        xs = np.clip(xs, -1.1, 1.1)
    array_path = f(xs)  # an array goes through the numpy code
    scalar_path = np.array([f(x) for x in xs.tolist()])
    assert all(isinstance(f(x), float) for x in (0.3, np.float64(0.3)))
    assert _same_bits(array_path, scalar_path)


def _gaussian_filter_plain(image, sigma, truncate=4.0):
    """exactmath.gaussian_filter as first written: np.pad, a fresh kernel per axis."""
    out = np.asarray(image, dtype=np.float64)
    for axis, s in enumerate(sigma):
        if s <= 0:
            continue
        weights = em._kernel(s, truncate)
        radius = len(weights) // 2
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="symmetric")
        acc = np.zeros_like(out)
        n = out.shape[axis]
        window = [slice(None)] * out.ndim
        for i, w in enumerate(weights.tolist()):
            window[axis] = slice(i, i + n)
            acc = np.add(acc, np.multiply(padded[tuple(window)], w))
        out = acc
    return out.astype(image.dtype, copy=False)


@pytest.mark.parametrize(
    "shape, sigma",
    [((218, 178), (3.0, 0.8)), ((218, 178, 3), (0.5, 0.5, 0)), ((60, 50, 3), (2.7, 2.7, 0)), ((5, 9), (3.0, 0.8))],
)
def test_gaussian_filter_matches_the_np_pad_version(shape, sigma):
    """(5, 9) with sigma 3: a radius beyond the image, where the reflection wraps (np.pad's case)."""
    image = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    assert _same_bits(em.gaussian_filter(image, sigma), _gaussian_filter_plain(image, sigma))
    assert _same_bits(em.gaussian_filter(image, sigma), em.gaussian_filter(image, sigma))  # the cache


# --------------------------------------------------------------------------- render


def _to_canonical_plain(view, width, height):
    """render._to_canonical as first written: every function on every pixel."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    dx = (x + 0.5 - view.cx) / view.scale
    dy = (y + 0.5 - view.cy) / view.scale
    c, s = em.cos(view.roll), em.sin(view.roll)
    xr = c * dx + s * dy
    yr = -s * dx + c * dy
    ratio = xr / view.radius
    front = np.abs(ratio) < 1.0
    psi = em.arcsin(np.clip(ratio, -1.0, 1.0))
    phi = psi - view.yaw
    u = view.radius * em.sin(np.clip(phi, -np.pi / 2, np.pi / 2))
    u = u + np.sign(phi) * np.maximum(np.abs(phi) - np.pi / 2, 0.0) * view.radius
    u = np.where(front, u, xr)
    v = yr - view.pitch * em.cos(np.clip(phi, -np.pi / 2, np.pi / 2)) * 0.3
    return u, v, front


def test_view_on_the_front_half_only_gives_every_pixels_bits():
    seen_back = 0
    for identity, appearance, width, height in _photos():
        view = rd._view(identity, appearance)
        fast, plain = rd._to_canonical(view, width, height), _to_canonical_plain(view, width, height)
        for a, b in zip(fast, plain, strict=True):
            assert _same_bits(a, b)
        seen_back += int((~fast[2]).sum())
    assert seen_back > 0  # the shortcut's other branch ran


def test_shoulders_slope_only_where_it_can_show():
    computed = 0
    for identity, appearance, width, height in _photos():
        u, v, _ = rd._to_canonical(rd._view(identity, appearance), width, height)
        aa = 1.2 / appearance.scale
        neck_half = identity.face_width * 0.52
        collar_v = identity.face_length + 0.75 - 0.35 * np.clip(1 - (u / (neck_half * 1.4)) ** 2, 0, 1)
        slope = rd._shoulder_slope(collar_v, u, v, aa)
        plain = smooth(collar_v + 0.1 * em.power(np.abs(u), 1.5) - v, aa)
        assert _same_bits(smooth(collar_v + 0.1 * slope - v, aa), plain)
        computed += np.count_nonzero(slope)
    assert computed > 0  # the shoulders showed: both sides of the cut were checked


def test_pixel_grid_is_mgrid_and_cannot_be_changed():
    y, x = rd.pixel_grid(7, 5)
    expected = np.mgrid[0:5, 0:7].astype(np.float32)
    assert _same_bits(y, expected[0]) and _same_bits(x, expected[1])
    with pytest.raises(ValueError, match="read-only"):
        x += 1
