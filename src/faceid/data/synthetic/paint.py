"""Painted layers of a face: the skin's albedo (eyes, brows, make-up, lips, facial hair,
moles, nostrils) and the accessories drawn over the photo (glasses, hats).

Every function paints in place, in the canonical face frame of `faceid.data.synthetic.render`.
"""

from __future__ import annotations

import numpy as np

from faceid.data.synthetic import exactmath as em
from faceid.data.synthetic.shapes import band, ellipse_d, gauss, mix, smooth

__all__ = ["accessories", "face_albedo"]


def face_albedo(identity, appearance, u, v, aa, albedo, rng) -> None:
    """Paint eyes, brows, lips, make-up, facial hair and moles onto the skin colour."""
    skin = np.asarray(identity.skin, dtype=np.float32)
    _eyes(identity, appearance, u, v, aa, albedo, skin)
    curve, within = _lips(identity, appearance, u, v, aa, albedo, skin)
    _facial_hair(identity, appearance, u, v, aa, albedo, rng, curve, within)
    for mu, mv, mr in identity.moles:
        mix(albedo, skin * 0.4, smooth(ellipse_d(u, v, mu, mv, mr, mr), aa) * 0.9)
    # nostrils
    for side in (-1.0, 1.0):
        nostril = smooth(
            ellipse_d(u, v, side * identity.nose_width * 0.55, identity.nose_length + 0.03, 0.035, 0.018), aa
        )
        mix(albedo, skin * 0.3, nostril)


def _eyes(identity, appearance, u, v, aa, albedo, skin) -> None:
    """Eye shadow and blush, then per eye: white, iris, pupil, lids and the eyebrow."""
    e, ew, eh = identity.eye_spacing, identity.eye_width, identity.eye_height
    brow_color = np.asarray(appearance.hair_color) * 0.45 + 0.02
    if appearance.makeup > 0:
        for side in (-1.0, 1.0):
            shadow = gauss(u, v, side * e, -eh * 1.2, ew * 1.1, eh * 1.4) * appearance.makeup * 0.7
            mix(albedo, appearance.eyeshadow_color, shadow)
            blush = gauss(u, v, side * (e + 0.12), 0.42, 0.14, 0.09) * appearance.makeup * 0.35
            mix(albedo, (0.85, 0.35, 0.4), blush)
    for side in (-1.0, 1.0):
        cu = side * e
        du = u - cu
        # almond-shaped opening
        opening = eh * em.power(np.clip(1.0 - (du / ew) ** 2, 0.0, None), 0.7)
        inside = smooth(np.abs(v) - opening, aa) * smooth(np.abs(du) - ew, aa)
        mix(albedo, (0.93, 0.91, 0.88), inside)
        iris_c = (cu + appearance.gaze[0], appearance.gaze[1])
        iris = smooth(ellipse_d(u, v, iris_c[0], iris_c[1], eh * 0.95, eh * 0.95), aa) * inside
        mix(albedo, identity.iris_color, iris)
        pupil = smooth(ellipse_d(u, v, iris_c[0], iris_c[1], eh * 0.42, eh * 0.42), aa) * inside
        mix(albedo, (0.03, 0.02, 0.02), pupil)
        lid_width = 0.012 + 0.02 * appearance.makeup + (0.006 if not identity.male else 0.0)
        lid = smooth(np.abs(v + opening) - lid_width, aa) * smooth(np.abs(du) - ew * 1.05, aa)
        mix(albedo, (0.08, 0.05, 0.04), lid * 0.9)
        lower = smooth(np.abs(v - opening) - 0.006, aa) * smooth(np.abs(du) - ew, aa)
        mix(albedo, skin * 0.55, lower * 0.6)
        # eyebrow
        t = du / (ew * 1.25)
        brow_v = -identity.brow_height - identity.brow_arch * (1 - t**2) + 0.02 * side * t
        brow = band(u, v, brow_v, identity.brow_thickness, cu - ew * 1.2, cu + ew * 1.3, aa)
        mix(albedo, brow_color, brow * 0.92)


def mouth_shape(identity, appearance) -> tuple[float, float]:
    """(v of the mouth line, half width): a smile widens the mouth."""
    return identity.mouth_height, identity.mouth_width * (1.0 + 0.15 * appearance.smile)


def _lips(identity, appearance, u, v, aa, albedo, skin) -> tuple[np.ndarray, np.ndarray]:
    """Lips, the mouth opening and teeth; returns (the mouth line's v per pixel, coverage
    of the mouth's width) for the facial hair around it."""
    mouth_v, mouth_w = mouth_shape(identity, appearance)
    t = u / mouth_w
    curve = mouth_v - 0.06 * appearance.smile * t**2
    gap = 0.012 + 0.05 * appearance.mouth_open
    upper = smooth(
        np.maximum(
            curve - gap * 0.5 - identity.lip_thickness * (1 - 0.5 * t**2) * np.sqrt(np.clip(1 - t**2, 0, 1)) - v,
            v - curve + gap * 0.5,
        ),
        aa,
    )
    lower = smooth(
        np.maximum(
            v - curve - gap * 0.5 - identity.lip_thickness * 1.35 * np.sqrt(np.clip(1 - t**2, 0, 1)),
            curve + gap * 0.5 - v,
        ),
        aa,
    )
    within = smooth(np.abs(u) - mouth_w, aa)
    lip_color = (
        np.asarray(appearance.lipstick) if appearance.lipstick is not None else skin * np.array([1.0, 0.72, 0.72])
    )
    mix(albedo, lip_color, np.maximum(upper, lower) * within)
    opening = smooth(np.abs(v - curve) - gap * 0.5, aa) * within
    mix(albedo, (0.15, 0.04, 0.04), opening)
    if appearance.mouth_open > 0.3 and appearance.smile > 0.4:
        teeth = opening * smooth(np.abs(u) - mouth_w * 0.7, aa) * (v < curve + gap * 0.2)
        mix(albedo, (0.92, 0.9, 0.85), teeth)
    return curve, within


def _facial_hair(identity, appearance, u, v, aa, albedo, rng, curve, within) -> None:
    """Beard (textured), mustache and goatee around the mouth line."""
    mouth_v, mouth_w = mouth_shape(identity, appearance)
    beard_color = np.asarray(identity.hair) * 0.6
    if identity.beard > 0:
        jaw = smooth(-(v - mouth_v + 0.05), aa * 3) * (1 - within * smooth(np.abs(v - curve) - 0.08, aa))
        texture = 0.7 + 0.3 * rng.random(u.shape)
        mix(albedo, beard_color, jaw * identity.beard * texture * 0.85)
    if identity.mustache:
        stache = band(u, v, curve - identity.lip_thickness - 0.05, 0.03, -mouth_w * 1.05, mouth_w * 1.05, aa)
        mix(albedo, beard_color, stache * 0.9)
    if identity.goatee:
        goat = smooth(ellipse_d(u, v, 0.0, mouth_v + 0.22, 0.13, 0.12), aa)
        mix(albedo, beard_color, goat * 0.85)


def accessories(identity, appearance, u, v, aa, image, front) -> None:
    e = identity.eye_spacing
    if appearance.eyeglasses:
        rim = 0.028
        lens_w, lens_h = identity.eye_width * 1.55, identity.eye_height * 2.6
        frames = np.zeros_like(u)
        lenses = np.zeros_like(u)
        for side in (-1.0, 1.0):
            du, dv = np.abs(u - side * e), np.abs(v - 0.01)
            p = 2.0 + 4.0 * appearance.glasses_shape  # superellipse: round → rectangular
            # the lens's superellipse norm, computed near the lens only: beyond twice its half
            # sizes r >= 2 (a p-norm is at least the max-norm), and r = 2 there draws the same nothing
            near = (du < 2 * lens_w) & (dv < 2 * lens_h)
            r = np.full_like(du, 2.0)
            r[near] = em.power(em.power(du[near] / lens_w, p) + em.power(dv[near] / lens_h, p), 1.0 / p)
            d = (r - 1.0) * lens_h
            lenses = np.maximum(lenses, smooth(d, aa))
            frames = np.maximum(frames, smooth(np.abs(d) - rim, aa))
            temple = (
                smooth(np.abs(v + lens_h * 0.5) - rim * 0.7, aa)
                * (np.abs(u) > e + lens_w)
                * (np.abs(u) < identity.face_width * 1.02)
            )
            frames = np.maximum(frames, temple * (np.sign(u) == side))
        bridge = smooth(np.abs(v + 0.01 + 0.03 * (1 - (u / (e - lens_w + 1e-3)) ** 2)) - rim * 0.8, aa) * (
            np.abs(u) < e - lens_w * 0.9
        )
        frames = np.maximum(frames, bridge)
        if appearance.sunglasses:
            mix(image, (0.05, 0.05, 0.07), lenses * 0.88)
        else:
            mix(image, (0.85, 0.9, 0.95), lenses * 0.12)
        mix(image, appearance.glasses_color, frames * front)
    if appearance.hat:
        color = np.asarray(appearance.hat_color) * np.asarray(appearance.light_color)
        top = identity.hairline - 0.05 if appearance.hat_style != 1 else identity.hairline + 0.1
        crown = smooth(ellipse_d(u, v, 0.0, top - 0.1, identity.face_width * 1.12, identity.face_length * 0.95), aa)
        crown *= smooth(v - top, aa)
        shade = 0.75 + 0.35 * np.clip(-(v - top) / identity.face_length, 0, 1)
        mix(image, color[None, None, :] * shade[..., None], crown)
        if appearance.hat_style == 0:  # cap with a visor over the forehead
            visor = smooth(ellipse_d(u, v, 0.0, top, identity.face_width * 0.95, 0.16), aa) * (v > top - 0.02)
            mix(image, color * 0.7, visor)
        elif appearance.hat_style == 2:  # brimmed hat
            brim = smooth(ellipse_d(u, v, 0.0, top, identity.face_width * 1.7, 0.13), aa)
            mix(image, color * 0.85, brim)
        else:  # beanie: a folded band
            band = smooth(np.abs(v - top + 0.08) - 0.08, aa) * crown
            mix(image, color * 0.8, band)
