"""Render a face: shaded head, eyes, brows, nose, lips, hair and accessories, in numpy.

Geometry lives in a canonical face frame: u to the image's right, v down, the origin
between the eyes, one unit ≈ half the face width (the eyes sit at u ≈ ±0.38, the mouth
corners at v ≈ 0.75). An image is a view of that frame: roll, yaw (the head is a
cylinder around the vertical axis, so turning it foreshortens one side and shows hair
on the other), scale and position. Surfaces are shaded from a height field with a
Lambert model, because MTCNN keys on the shading of eye sockets, nose and mouth: flat
cartoon faces are found in about half the images, shaded ones in nearly all.

`render` is pure: the same `Identity`, `Appearance` and noise seed give the same pixels.
Here: the parameters, the view geometry, relief and shading, and the layer order; the
drawing primitives are in `faceid.data.synthetic.shapes`, the painted features (eyes, lips,
facial hair, glasses, hats) in `faceid.data.synthetic.paint`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from faceid.data.synthetic import exactmath as em
from faceid.data.synthetic.paint import accessories, face_albedo, mouth_shape
from faceid.data.synthetic.shapes import bbox, ellipse_d, gauss, mix, smooth

# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Identity:
    """What stays the same across a person's photos."""

    face_width: float  # half width of the head, canonical units (≈1)
    face_length: float  # half height of the head ellipse
    jaw_taper: float  # 0 = round, 0.3 = narrow chin
    eye_spacing: float  # half distance between eye centres
    eye_width: float
    eye_height: float
    iris_color: tuple[float, float, float]
    brow_height: float  # above the eye centre
    brow_thickness: float
    brow_arch: float
    nose_length: float  # v of the nose tip
    nose_width: float
    mouth_width: float  # half width
    mouth_height: float  # v of the mouth line
    lip_thickness: float
    skin: tuple[float, float, float]  # RGB 0-1
    hair: tuple[float, float, float]
    hairline: float  # v of the hairline (negative: above the eyes)
    hair_length: float  # how far down the sides the hair falls (v)
    hair_volume: float  # how far the hair stands out of the head outline
    hair_part: float  # u of the parting
    bangs: bool
    bald: bool
    male: bool
    beard: float  # 0..1 density of beard over the jaw
    mustache: bool
    goatee: bool
    moles: tuple[tuple[float, float, float], ...]  # (u, v, radius)
    ear_size: float
    cheek_fullness: float


@dataclass(frozen=True)
class Appearance:
    """What changes from one photo of a person to the next."""

    center: tuple[float, float]  # pixel position of the point between the eyes
    scale: float  # pixels per canonical unit
    roll: float  # radians, positive = clockwise in the image
    yaw: float  # radians, positive = head turned toward the image's right
    pitch: float  # -0.2..0.2, positive = chin down (features move down)
    light: tuple[float, float, float]  # direction toward the light (x right, y down, z to camera)
    ambient: float
    light_color: tuple[float, float, float]
    smile: float  # 0..1
    mouth_open: float  # 0..1
    gaze: tuple[float, float]  # iris offset, canonical units
    background: tuple[tuple[float, float, float], tuple[float, float, float]]
    background_angle: float
    clothes: tuple[float, float, float]
    eyeglasses: bool
    sunglasses: bool
    glasses_color: tuple[float, float, float]
    glasses_shape: float  # 0 = round, 1 = rectangular
    hat: bool
    hat_color: tuple[float, float, float]
    hat_style: int  # 0 cap, 1 beanie, 2 brimmed
    blur: float  # gaussian sigma in pixels, 0 = sharp
    lipstick: tuple[float, float, float] | None
    makeup: float  # 0..1 eye shadow, liner and blush
    eyeshadow_color: tuple[float, float, float]
    hair_color: tuple[float, float, float]  # this photo's hair (dyed, light)
    earrings: bool
    necklace: bool
    necktie: bool
    noise_seed: int


FIVE_POINTS = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _View:
    cx: float
    cy: float
    scale: float
    roll: float
    yaw: float
    pitch: float
    radius: float


def _view(identity: Identity, appearance: Appearance) -> _View:
    return _View(
        cx=appearance.center[0], cy=appearance.center[1], scale=appearance.scale,
        roll=appearance.roll, yaw=appearance.yaw, pitch=appearance.pitch,
        radius=identity.face_width * 1.02,
    )  # fmt: skip


@functools.lru_cache(maxsize=8)
def pixel_grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column index of every pixel, float32 (height, width), read-only: built once per frame size."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y.flags.writeable = x.flags.writeable = False
    return y, x


def _to_canonical(view: _View, width: int, height: int) -> tuple[np.ndarray, ...]:
    """Canonical (u, v) of every pixel, and `front`: whether it lies on the visible half cylinder."""
    y, x = pixel_grid(width, height)
    dx = (x + 0.5 - view.cx) / view.scale
    dy = (y + 0.5 - view.cy) / view.scale
    c, s = em.cos(view.roll), em.sin(view.roll)
    xr = c * dx + s * dy
    yr = -s * dx + c * dy
    ratio = xr / view.radius
    front = np.abs(ratio) < 1.0
    # off the front half cylinder (≈ 40% of the frame) the clipped ratio is ±1, so psi, phi
    # and the cosine below take one of two values there, and u is xr: the transcendental
    # functions run on the front pixels only (elementwise: the same values as on all of them)
    back, right = ~front, ratio > 0
    psi = np.empty_like(ratio)
    psi[front] = em.arcsin(ratio[front])  # |ratio| < 1 there: the clip changes nothing
    edge_psi = em.arcsin(np.array([1.0, -1.0], dtype=np.float32))  # the clipped ratio at the back
    psi[back] = np.where(right[back], edge_psi[0], edge_psi[1])
    phi = psi - view.yaw
    edge_phi = np.clip(edge_psi - view.yaw, -np.pi / 2, np.pi / 2)
    phi_front = np.clip(phi[front], -np.pi / 2, np.pi / 2)
    u = xr.copy()
    u[front] = view.radius * em.sin(phi_front)
    # past the cylinder's silhouette the surface turns away: push u outward so those
    # pixels read as the side of the head (hair, ear), not as the face
    u[front] += np.sign(phi[front]) * np.maximum(np.abs(phi[front]) - np.pi / 2, 0.0) * view.radius
    cos_phi = np.empty_like(phi)
    cos_phi[front] = em.cos(phi_front)
    edge_cos = em.cos(edge_phi)
    cos_phi[back] = np.where(right[back], edge_cos[0], edge_cos[1])
    v = yr - view.pitch * cos_phi * 0.3
    return u, v, front


def _to_image(view: _View, u: float, v: float) -> tuple[float, float]:
    """Pixel position of the canonical surface point (u, v): the inverse of `_to_canonical`."""
    phi = em.arcsin(min(max(u / view.radius, -1.0), 1.0))
    psi = phi + view.yaw
    xr = view.radius * em.sin(psi)
    yr = v + view.pitch * em.cos(phi) * 0.3
    c, s = em.cos(view.roll), em.sin(view.roll)
    dx = c * xr - s * yr
    dy = s * xr + c * yr
    return float(view.cx + dx * view.scale), float(view.cy + dy * view.scale)


def five_points(identity: Identity, appearance: Appearance) -> np.ndarray:
    """The five CelebA landmarks (left eye, right eye, nose, left/right mouth corner), (5, 2) pixels."""
    view = _view(identity, appearance)
    mouth_v, mouth_w = mouth_shape(identity, appearance)
    points = [
        (-identity.eye_spacing, 0.0),
        (identity.eye_spacing, 0.0),
        (0.0, identity.nose_length),
        (-mouth_w, mouth_v - 0.06 * appearance.smile),
        (mouth_w, mouth_v - 0.06 * appearance.smile),
    ]
    return np.array([_to_image(view, u, v) for u, v in points], dtype=np.float32)


def face_box(identity: Identity, appearance: Appearance) -> tuple[float, float, float, float]:
    """Tight box (x1, y1, x2, y2) around brow-to-chin and cheek-to-cheek, in pixels."""
    view = _view(identity, appearance)
    w = identity.face_width * 0.95
    pts = [
        _to_image(view, u, v)
        for u in (-w, 0.0, w)
        for v in (identity.brow_height * -1.0 - 0.25, 0.3, identity.face_length * 0.98)
    ]
    xs, ys = zip(*pts, strict=True)
    return min(xs), min(ys), max(xs), max(ys)


# --------------------------------------------------------------------------- layers


def _face_mask(identity: Identity, u: np.ndarray, v: np.ndarray, aa: float) -> np.ndarray:
    """Coverage of the head's skin: an ellipse narrowing toward the chin."""
    b = identity.face_length
    vc = 0.05
    t = np.clip((v - vc) / b, 0.0, 1.0)
    half_w = identity.face_width * (1.0 - identity.jaw_taper * t**2) * (1.0 + 0.06 * identity.cheek_fullness)
    r = np.sqrt((u / half_w) ** 2 + ((v - vc) / b) ** 2)
    d = (r - 1.0) * identity.face_width
    return smooth(d, aa)


def _height_field(identity: Identity, appearance: Appearance, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Relief of the face (bigger = closer to the camera), canonical units."""
    head_r = np.clip(
        1.0 - (u / (identity.face_width * 1.05)) ** 2 - ((v - 0.05) / (identity.face_length * 1.1)) ** 2, 0.0, None
    )
    h = 0.9 * np.sqrt(head_r)
    e, nl, nw = identity.eye_spacing, identity.nose_length, identity.nose_width
    # eye sockets, brow ridge, cheeks
    for side in (-1.0, 1.0):
        h -= 0.11 * gauss(u, v, side * e, 0.0, 0.16, 0.11)
        h += 0.05 * gauss(u, v, side * e, -identity.brow_height - 0.04, 0.2, 0.06)
        h += 0.06 * identity.cheek_fullness * gauss(u, v, side * (e + 0.12), 0.42, 0.18, 0.14)
        h += 0.03 * gauss(u, v, side * nw * 1.2, nl - 0.02, 0.05, 0.05)  # nostril wings
    # nose: a ridge that rises toward the tip
    ramp = np.clip((v + 0.05) / (nl + 0.05), 0.0, 1.0)
    h += 0.16 * ramp * em.exp(-0.5 * (u / (0.45 * nw + 0.02)) ** 2) * (v < nl + 0.02)
    h += 0.12 * gauss(u, v, 0.0, nl - 0.03, nw * 0.8, 0.06)
    # lips and chin
    mouth_v, mouth_w = mouth_shape(identity, appearance)
    h += 0.04 * gauss(u, v, 0.0, mouth_v, mouth_w, 0.06)
    h -= 0.03 * gauss(u, v, 0.0, mouth_v + 0.16, mouth_w * 0.8, 0.04)
    h += 0.05 * gauss(u, v, 0.0, identity.face_length * 0.9, 0.25, 0.12)
    return h.astype(np.float32)


def _shade(height: np.ndarray, appearance: Appearance, scale: float) -> np.ndarray:
    """Lambert shading of a height field, in [0, ~1.3]."""
    gy, gx = np.gradient(height * scale)
    n = np.stack([-gx, -gy, np.ones_like(gx)], axis=-1)
    # norms and the dot product written out: BLAS and numpy's reductions sum in an order
    # of their choosing per CPU, these in one fixed order
    n /= np.sqrt(n[..., 0:1] * n[..., 0:1] + n[..., 1:2] * n[..., 1:2] + n[..., 2:3] * n[..., 2:3])
    lx, ly, lz = (float(c) for c in np.asarray(appearance.light, dtype=np.float32))
    norm = float(np.sqrt(lx * lx + ly * ly + lz * lz))
    lx, ly, lz = (np.float32(c / norm) for c in (lx, ly, lz))
    diffuse = np.clip(n[..., 0] * lx + n[..., 1] * ly + n[..., 2] * lz, 0.0, None)
    return appearance.ambient + (1.0 - appearance.ambient) * diffuse * 1.15


def _hair_masks(identity: Identity, u, v, aa) -> tuple[np.ndarray, np.ndarray]:
    """Coverage of (the hair's silhouette behind the face, the hair over the forehead)."""
    if identity.bald:
        zero = np.zeros_like(u)
        return zero, zero
    vol = identity.hair_volume
    outer = smooth(ellipse_d(u, v, 0.0, 0.0, identity.face_width + vol, identity.face_length + vol * 0.6), aa)
    outer *= smooth(v - max(identity.hair_length, 0.1), aa * 2)
    if identity.hair_length > 0.6:
        # long hair falls beside the face down to the shoulders, widening a little
        half = identity.face_width + vol * (1.0 + 0.4 * np.clip(v, 0, None))
        fall = smooth(np.abs(u) - half, aa) * smooth(v - identity.hair_length, aa * 3) * (v > 0.0)
        outer = np.maximum(outer, fall)
    line = identity.hairline + (0.38 if identity.bangs else 0.0)
    # the hairline curves down at the temples; a parting makes it uneven
    line = line + 0.12 * (np.abs(u) / identity.face_width) ** 2 - 0.03 * em.exp(-((u - identity.hair_part) / 0.08) ** 2)
    top = smooth(v - line, aa * 1.5)
    return outer, top


def render(identity: Identity, appearance: Appearance, width: int, height: int) -> np.ndarray:
    """The photo as uint8 (height, width, 3) RGB, before noise and JPEG."""
    view = _view(identity, appearance)
    aa = 1.2 / appearance.scale
    u, v, front = _to_canonical(view, width, height)
    rng = np.random.default_rng(appearance.noise_seed)

    image = _background(appearance, width, height, rng)
    light = np.asarray(appearance.light_color, dtype=np.float32)

    skin = np.asarray(identity.skin, dtype=np.float32)
    hair_back, hair_top = _hair_masks(identity, u, v, aa)
    hair_color = np.asarray(appearance.hair_color, dtype=np.float32)
    streaks = 0.8 + 0.35 * em.gaussian_filter(rng.standard_normal((height, width)).astype(np.float32), (3.0, 0.8))
    hair_rgb = np.clip(streaks[..., None] * hair_color * light, 0, 1)
    mix(image, hair_rgb, hair_back)
    _neck_and_clothes(identity, appearance, u, v, aa, image, light)
    _ears(identity, appearance, u, v, aa, image, front, light)

    face = _face_mask(identity, u, v, aa) * front
    # relief, shading and features only inside the face's bounding box (≈ a third of the
    # frame): the per-pixel work there is most of the render time
    win = bbox(face, pad=2)
    if win is not None:
        uw, vw, face_w = u[win], v[win], face[win]
        shading = _shade(_height_field(identity, appearance, uw, vw), appearance, appearance.scale)
        albedo = np.broadcast_to(skin, (*uw.shape, 3)).copy()
        face_albedo(identity, appearance, uw, vw, aa, albedo, rng)
        skin_rgb = albedo * shading[..., None] * light
        # specular highlight on forehead and nose tip
        skin_rgb += (np.clip(shading - 1.05, 0, None) * 0.6)[..., None]
        mix(image[win], skin_rgb, face_w)
        # hair over the forehead, shaded like the skull beneath it
        front_hair = hair_top[win] * np.maximum(face_w, hair_back[win])
        mix(image[win], hair_rgb[win] * shading[..., None].clip(0.5, 1.1), front_hair)

    accessories(identity, appearance, u, v, aa, image, front)
    image = np.clip(image, 0.0, 1.0)
    if appearance.blur > 0:
        image = em.gaussian_filter(image, (appearance.blur, appearance.blur, 0))
    else:
        image = em.gaussian_filter(image, (0.5, 0.5, 0))  # a lens is never perfectly sharp
    return (image * 255.0 + 0.5).astype(np.uint8)


def _background(appearance: Appearance, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    y, x = pixel_grid(width, height)
    t = (em.cos(appearance.background_angle) * x / width + em.sin(appearance.background_angle) * y / height)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c0, c1 = (np.asarray(c, dtype=np.float32) for c in appearance.background)
    image = c0 * (1 - t[..., None]) + c1 * t[..., None]
    # soft blotches: coarse noise upsampled (a wide gaussian filter cost more than the face)
    coarse = rng.standard_normal((height // 12 + 2, width // 12 + 2)).astype(np.float32) * 0.35
    blobs = em.upsample_cubic(coarse, (height, width))
    image *= 1.0 + 1.5 * blobs[..., None]
    return image


def _neck_and_clothes(identity: Identity, appearance: Appearance, u, v, aa, image, light) -> None:
    """Neck, then clothes with a round neckline over it, necktie and necklace."""
    neck_half = identity.face_width * 0.52
    skin = np.asarray(identity.skin, dtype=np.float32)
    neck = smooth(np.abs(u) - neck_half, aa) * (v > 0.3)
    neck_shade = 0.55 + 0.25 * np.clip(1 - np.abs(u) / neck_half, 0, 1)
    mix(image, skin * light * neck_shade[..., None], neck)
    collar_v = identity.face_length + 0.75 - 0.35 * np.clip(1 - (u / (neck_half * 1.4)) ** 2, 0, 1)
    shoulders = smooth(collar_v + 0.1 * _shoulder_slope(collar_v, u, v, aa) - v, aa)
    shoulders *= smooth(np.abs(u) - identity.face_width * 2.6, aa)
    mix(image, np.asarray(appearance.clothes) * light * 0.9, shoulders)
    if appearance.necktie:
        tie = smooth(np.abs(u) - (0.09 + 0.12 * np.clip(v - identity.face_length - 0.6, 0, 1)), aa)
        tie *= v > identity.face_length + 0.55
        mix(image, (0.55, 0.08, 0.12), tie * shoulders)
    if appearance.necklace:
        chain_v = identity.face_length + 0.45 + 0.35 * (1 - (u / neck_half) ** 2)
        mix(image, (0.85, 0.75, 0.35), smooth(np.abs(v - chain_v) - 0.018, aa) * neck)


def _shoulder_slope(collar_v: np.ndarray, u: np.ndarray, v: np.ndarray, aa: float) -> np.ndarray:
    """|u| ** 1.5, computed only where the shoulders' coverage smooth(collar_v + 0.1 |u|**1.5 - v)
    can be non-zero, and 0 elsewhere (the frame's upper ≈ 80%, where that coverage is 0 either way).

    Float rounding is monotone and the slope is >= 0, so collar_v + 0.1 s - v >= collar_v - v
    as computed: where smooth(collar_v - v) is 0, the coverage is 0 whatever s is.
    """
    slope = np.zeros_like(u)
    reach = smooth(collar_v - v, aa) > 0
    slope[reach] = em.power(np.abs(u[reach]), 1.5)
    return slope


def _ears(identity: Identity, appearance: Appearance, u, v, aa, image, front, light) -> None:
    """Ears (behind the face outline, at eye-to-nose height) and earrings."""
    skin = np.asarray(identity.skin, dtype=np.float32)
    for side in (-1.0, 1.0):
        ear = smooth(
            ellipse_d(u, v, side * identity.face_width * 1.0, 0.22, 0.12 * identity.ear_size, 0.26 * identity.ear_size),
            aa,
        )
        mix(image, skin * 0.8 * light, ear * front)
        if appearance.earrings:
            ring = smooth(ellipse_d(u, v, side * identity.face_width * 1.02, 0.5, 0.035, 0.035), aa)
            mix(image, (0.9, 0.8, 0.4), ring * front)
