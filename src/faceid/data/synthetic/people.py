"""Sample synthetic people and their photos: CelebA's 40 attributes → render parameters.

Attributes come in two kinds, as in real CelebA:
- stable ones belong to the person (Male, Big_Nose, hair colour, beard …), drawn once per
  identity from CelebA's base rates;
- varying ones change from photo to photo (Eyeglasses, Wearing_Hat, Blurry, Smiling,
  make-up …). Each identity gets its own propensity, drawn from a Beta distribution
  whose mean is the base rate, so some people often wear glasses and most never do,
  and a glasses-wearer has photos both with and without them: the within-identity A/¬A
  pairs the study needs. Lipstick, make-up and earrings follow sex as in CelebA, which
  reproduces the confound an expert must control for.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from faceid.data.celeba import ATTRIBUTE_NAMES, CELEBA_BASE_RATES
from faceid.data.synthetic.render import Appearance, Identity

# attributes that vary from photo to photo; the rest are fixed per identity
VARYING = (
    "Eyeglasses", "Wearing_Hat", "Blurry", "Smiling", "Mouth_Slightly_Open",
    "Wearing_Lipstick", "Heavy_Makeup", "Wearing_Earrings", "Wearing_Necklace",
    "Wearing_Necktie", "Rosy_Cheeks", "Blond_Hair",
)  # fmt: skip

# Beta concentration of per-identity propensities: small = strongly clustered by person
_CONCENTRATION = {"Eyeglasses": 0.8, "Wearing_Hat": 1.0, "Blurry": 4.0, "Smiling": 3.0}
# share of women among photos with the attribute, to keep gender-linked rates realistic
_FEMALE_LINKED = {"Wearing_Lipstick": 0.97, "Heavy_Makeup": 0.98, "Wearing_Earrings": 0.93,
                  "Wearing_Necklace": 0.9, "Rosy_Cheeks": 0.9}  # fmt: skip
_MALE_LINKED = {"Wearing_Necktie": 0.97}

# Labels with no pixels behind them, as annotators' noise gives real CelebA (only 12 of its
# 40 attributes reach 95% agreement): drawn afresh for every photo by `_label_noise`, which
# reads nothing but a seed of the photo and the base rates, after the render parameters are
# fixed. They are true nulls for any evaluation: the known-truth check
# (benchmarks/known_truth.py) counts how often the robustness map flags them.
LABEL_NOISE = ("Attractive", "Bags_Under_Eyes", "Straight_Hair")

_HAIR_COLORS = {
    "Black_Hair": ((0.06, 0.05, 0.05), (0.14, 0.11, 0.09)),
    "Brown_Hair": ((0.28, 0.17, 0.09), (0.45, 0.3, 0.17)),
    "Blond_Hair": ((0.78, 0.64, 0.38), (0.93, 0.83, 0.58)),
    "Gray_Hair": ((0.55, 0.55, 0.55), (0.78, 0.77, 0.75)),
    "Other": ((0.35, 0.12, 0.05), (0.55, 0.22, 0.1)),  # red / auburn: none of the four labels
}
_SKIN_TONES = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.91, 0.72, 0.60],
        [0.82, 0.62, 0.48],
        [0.68, 0.48, 0.35],
        [0.48, 0.33, 0.23],
        [0.36, 0.24, 0.17],
    ],
    dtype=np.float32,
)


def _label_noise(seed: int, rates: Mapping[str, float]) -> dict[str, bool]:
    """Per-photo labels of LABEL_NOISE from their own stream: independent of every other
    label and of the photo's pixels by construction."""
    rng = np.random.default_rng([seed, 0x1ABE1])
    return {name: bool(rng.random() < rates[name]) for name in LABEL_NOISE}


def base_rates(overrides: Mapping[str, float]) -> dict[str, float]:
    rates = dict(CELEBA_BASE_RATES)
    rates.update(overrides)
    return rates


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _color(rng: np.random.Generator, lo, hi) -> tuple[float, float, float]:
    t = rng.uniform(0, 1)
    return tuple(float(a + t * (b - a) + rng.normal(0, 0.015)) for a, b in zip(lo, hi, strict=True))


class Person:
    """One synthetic identity: its stable attributes, render identity and propensities."""

    def __init__(self, rng: np.random.Generator, rates: Mapping[str, float]):
        r = rates
        self.rates = dict(rates)
        self.labels: dict[str, bool] = {}
        male = rng.random() < r["Male"]
        self.labels["Male"] = bool(male)
        for name in ATTRIBUTE_NAMES:
            if name in VARYING or name in self.labels:
                continue
            self.labels[name] = bool(rng.random() < r[name])
        lab = self.labels
        # facial hair only on men; keep No_Beard consistent with beard
        if not male:
            for name in ("Mustache", "Goatee", "Sideburns", "5_o_Clock_Shadow", "Bald"):
                lab[name] = False
            lab["No_Beard"] = True
        else:
            beard_rate = (1 - r["No_Beard"]) / max(r["Male"], 1e-6)
            lab["No_Beard"] = not (rng.random() < min(beard_rate, 0.9))
            lab["Mustache"] = lab["Mustache"] or (not lab["No_Beard"] and rng.random() < 0.3)
        # one base hair colour class
        hair_rates = {k: r[k] for k in ("Black_Hair", "Brown_Hair", "Blond_Hair", "Gray_Hair")}
        if not male:
            hair_rates["Blond_Hair"] *= 1.6
        if lab["Young"]:
            hair_rates["Gray_Hair"] *= 0.2
        names = [*hair_rates, "Other"]
        p = np.array([*hair_rates.values(), max(0.05, 1 - sum(hair_rates.values()))])
        self.hair_class = names[int(rng.choice(len(names), p=p / p.sum()))]
        for k in ("Black_Hair", "Brown_Hair", "Gray_Hair"):
            lab[k] = self.hair_class == k
        self.hair_color = _color(rng, *_HAIR_COLORS[self.hair_class])

        # per-identity propensities of the varying attributes
        self.propensity: dict[str, float] = {}
        for name in VARYING:
            mean = r[name]
            if name in _FEMALE_LINKED:
                share = _FEMALE_LINKED[name]
                mean = mean * (share / (1 - r["Male"]) if not male else (1 - share) / r["Male"])
            if name in _MALE_LINKED:
                share = _MALE_LINKED[name]
                mean = mean * (share / r["Male"] if male else (1 - share) / (1 - r["Male"]))
            mean = float(np.clip(mean, 0.001, 0.98))
            k = _CONCENTRATION.get(name, 2.0)
            self.propensity[name] = float(rng.beta(mean * k, (1 - mean) * k))
        # blond hair: blond people are blond in most photos, others sometimes look blond
        self.propensity["Blond_Hair"] = (
            _u(rng, 0.7, 0.95) if self.hair_class == "Blond_Hair" else float(rng.beta(0.3, 8.0))
        )
        self.identity = self._render_identity(rng)

    def _render_identity(self, rng: np.random.Generator) -> Identity:
        lab = self.labels
        male = lab["Male"]
        tone = _SKIN_TONES[min(int(rng.beta(1.3, 2.6) * len(_SKIN_TONES)), len(_SKIN_TONES) - 1)]
        if lab["Pale_Skin"]:
            tone = np.minimum(tone * 1.0 + 0.12, 1.0)
        skin = tuple(float(c) for c in np.clip(tone + rng.normal(0, 0.02, 3), 0, 1))
        face_width = _u(rng, 0.92, 1.08) * (1.07 if lab["Chubby"] else 1.0)
        long_hair = (not male and rng.random() < 0.8) or (male and rng.random() < 0.08)
        moles = tuple(
            (_u(rng, -0.7, 0.7), _u(rng, -0.4, 1.1), _u(rng, 0.012, 0.025)) for _ in range(int(rng.integers(0, 4)))
        )
        return Identity(
            face_width=face_width,
            face_length=_u(rng, 1.25, 1.45) * (1.05 if lab["Oval_Face"] else 1.0),
            jaw_taper=_u(rng, 0.12, 0.38) - (0.08 if lab["Double_Chin"] else 0.0),
            eye_spacing=_u(rng, 0.34, 0.42),
            eye_width=_u(rng, 0.12, 0.16),
            eye_height=_u(rng, 0.05, 0.07) * (0.7 if lab["Narrow_Eyes"] else 1.0),
            iris_color=_color(rng, (0.15, 0.08, 0.03), (0.3, 0.45, 0.6))
            if rng.random() < 0.35
            else _color(rng, (0.12, 0.07, 0.03), (0.3, 0.18, 0.08)),
            brow_height=_u(rng, 0.17, 0.25),
            brow_thickness=_u(rng, 0.018, 0.03) * (1.5 if lab["Bushy_Eyebrows"] else 1.0) * (1.15 if male else 0.9),
            brow_arch=_u(rng, 0.0, 0.03) + (0.035 if lab["Arched_Eyebrows"] else 0.0),
            nose_length=_u(rng, 0.38, 0.47) * (1.08 if lab["Big_Nose"] else 1.0),
            nose_width=_u(rng, 0.1, 0.14) * (1.2 if lab["Big_Nose"] else 1.0) * (0.85 if lab["Pointy_Nose"] else 1.0),
            mouth_width=_u(rng, 0.24, 0.32),
            mouth_height=_u(rng, 0.7, 0.8),
            lip_thickness=_u(rng, 0.03, 0.05) * (1.35 if lab["Big_Lips"] else 1.0),
            skin=skin,
            hair=self.hair_color,
            hairline=_u(rng, -0.75, -0.6) + (0.15 if lab["Receding_Hairline"] else 0.0),
            hair_length=_u(rng, 1.6, 2.6) if long_hair else _u(rng, -0.2, 0.3),
            hair_volume=_u(rng, 0.08, 0.25) * (1.3 if lab["Wavy_Hair"] else 1.0),
            hair_part=_u(rng, -0.3, 0.3),
            bangs=lab["Bangs"],
            bald=lab["Bald"],
            male=male,
            beard=0.0 if lab["No_Beard"] else _u(rng, 0.4, 0.9),
            mustache=lab["Mustache"],
            goatee=lab["Goatee"],
            moles=moles,
            ear_size=_u(rng, 0.85, 1.15),
            cheek_fullness=_u(rng, 0.3, 1.0) + (0.4 if lab["High_Cheekbones"] else 0.0),
        )

    def photo(self, rng: np.random.Generator, width: int, height: int, face_scale: float,
              center: tuple[float, float]) -> tuple[Appearance, dict[str, bool]]:
        """One photo: its render parameters and its 40 labels."""
        labels = dict(self.labels)
        for name in VARYING:
            labels[name] = bool(rng.random() < self.propensity[name])
        if labels["Heavy_Makeup"]:
            labels["Wearing_Lipstick"] = labels["Wearing_Lipstick"] or rng.random() < 0.9
        labels["Mouth_Slightly_Open"] = labels["Mouth_Slightly_Open"] or (labels["Smiling"] and rng.random() < 0.6)
        if labels["Blond_Hair"]:
            labels["Black_Hair"] = labels["Brown_Hair"] = labels["Gray_Hair"] = False
        hair_color = self.hair_color
        if labels["Blond_Hair"] and self.hair_class != "Blond_Hair":
            hair_color = _color(rng, *_HAIR_COLORS["Blond_Hair"])
        elif not labels["Blond_Hair"] and self.hair_class == "Blond_Hair":
            hair_color = _color(rng, *_HAIR_COLORS["Brown_Hair"])  # darker roots, shade, dye
        sunglasses = labels["Eyeglasses"] and rng.random() < 0.3
        light_dir = (_u(rng, -0.7, 0.7), _u(rng, -0.6, 0.3), 1.0)
        warm = _u(rng, -0.08, 0.08)
        lipstick = None
        if labels["Wearing_Lipstick"]:
            lipstick = _color(rng, (0.55, 0.05, 0.12), (0.85, 0.3, 0.4))
        appearance = Appearance(
            center=center,
            scale=face_scale * _u(rng, 0.93, 1.07),
            roll=float(rng.normal(0, 0.07)),
            yaw=float(np.clip(rng.normal(0, 0.22), -0.55, 0.55)),
            pitch=float(rng.normal(0, 0.08)),
            light=light_dir,
            ambient=_u(rng, 0.35, 0.6),
            light_color=(1.0 + warm, 1.0, 1.0 - warm),
            smile=_u(rng, 0.5, 1.0) if labels["Smiling"] else _u(rng, 0.0, 0.15),
            mouth_open=_u(rng, 0.4, 1.0) if labels["Mouth_Slightly_Open"] else 0.0,
            gaze=(float(rng.normal(0, 0.012)), float(rng.normal(0, 0.006))),
            background=(_color(rng, (0.1, 0.1, 0.1), (0.9, 0.9, 0.9)), _color(rng, (0.05, 0.2, 0.3), (0.8, 0.7, 0.9))),
            background_angle=_u(rng, 0, 2 * np.pi),
            clothes=_color(rng, (0.05, 0.05, 0.1), (0.8, 0.7, 0.6)),
            eyeglasses=labels["Eyeglasses"],
            sunglasses=sunglasses,
            glasses_color=_color(rng, (0.02, 0.02, 0.02), (0.35, 0.2, 0.1)),
            glasses_shape=_u(rng, 0, 1),
            hat=labels["Wearing_Hat"],
            hat_color=_color(rng, (0.1, 0.1, 0.2), (0.9, 0.5, 0.3)),
            hat_style=int(rng.integers(0, 3)),
            blur=_u(rng, 1.6, 3.2) if labels["Blurry"] else 0.0,
            lipstick=lipstick,
            makeup=_u(rng, 0.6, 1.0) if labels["Heavy_Makeup"] else 0.0,
            eyeshadow_color=_color(rng, (0.3, 0.2, 0.3), (0.6, 0.4, 0.5)),
            hair_color=hair_color,
            earrings=labels["Wearing_Earrings"],
            necklace=labels["Wearing_Necklace"],
            necktie=labels["Wearing_Necktie"],
            noise_seed=int(rng.integers(0, 2**31)),
        )
        labels.update(_label_noise(appearance.noise_seed, self.rates))  # after the pixels are decided
        return appearance, labels
