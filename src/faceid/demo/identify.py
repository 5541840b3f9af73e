"""Identify every face of a photo against a gallery.

Each detected face gets the `top_k` gallery identities with their cosine similarities;
the best is reported as the face's name when its similarity is above the threshold
(similarity > threshold, the evaluation's convention), else the face is "unknown".
The default threshold is the one the evaluation stage set at the demo's false-match
rate (`metrics/detail/<model>.json`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceid.config.demo import score_choice_error
from faceid.crop.detect import TOO_SMALL
from faceid.demo.faces import DemoInputError, Embedder, NoFaceError
from faceid.demo.gallery import Gallery
from faceid.errors import FaceidError
from faceid.evaluate.evaluation import rate_key
from faceid.project.naming import evaluate_stage

__all__ = [
    "IDENTITY_SCORES",
    "Candidate",
    "FaceResult",
    "Identifier",
    "NoEvaluationError",
    "PhotoResult",
    "Threshold",
    "failed_photo",
    "rank_identities",
    "threshold_from_evaluation",
]

UNKNOWN = "unknown"


class NoEvaluationError(FaceidError, RuntimeError):
    """No usable threshold: the model has not been evaluated (or not at that rate)."""


@dataclass(frozen=True)
class Threshold:
    value: float  # cosine similarity; a match needs similarity > value
    source: str  # where it came from, for people reading the output


def threshold_from_evaluation(path: str | Path, fmr: float) -> Threshold:
    """The threshold the evaluation of a model set at false-match rate `fmr`.

    `path` is its headline file `metrics/eval/<model>.json` (or directly its detail); the
    thresholds are in the detail, `metrics/detail/<model>.json` (docs/evaluation.md). The
    evaluation's global threshold when `fmr` is its rate, else the TAR@FAR threshold at
    `fmr` of its global task's all-conditions cell.
    """
    path = Path(path)
    detail = path if path.parent.name == "detail" else path.parent.parent / "detail" / path.name
    if not detail.is_file():
        raise NoEvaluationError(
            f"{detail if path.is_file() else path}: no evaluation of this model yet, so no threshold for 'unknown'; "
            f"run `dvc repro {evaluate_stage(path.stem)}` (or `dvc repro`), or pass --threshold"
        )
    try:
        evaluation = json.loads(detail.read_text())
        chosen = evaluation["global_threshold"]
    except (ValueError, KeyError, TypeError) as exc:
        raise NoEvaluationError(f"{detail}: not an evaluation detail file ({exc}); re-run the evaluate stage") from exc
    if math.isclose(float(chosen["fmr"]), fmr, rel_tol=1e-9):
        value, found = chosen.get("threshold"), f"global threshold at FMR {rate_key(fmr)}"
        reason = chosen.get("reason")
    else:
        task = chosen.get("task", "orig")
        cells = (evaluation.get("tasks") or {}).get(task) or {}
        cell = cells.get("pooled") or next(iter(cells.values()), {})
        points = {rate_key(float(p["far"])): p for p in cell.get("tar_at_far", [])}
        if rate_key(fmr) not in points:
            rates = sorted({rate_key(float(chosen["fmr"])), *points})
            raise NoEvaluationError(
                f"{detail}: the evaluation set no threshold at FMR {rate_key(fmr)} (it has {', '.join(rates)}); "
                "set demo.fmr to one of these, add the rate to evaluate.fars, or pass --threshold"
            )
        value, found = points[rate_key(fmr)].get("threshold"), f"{task} TAR@FAR {rate_key(fmr)} threshold"
        reason = points[rate_key(fmr)].get("reason")
    if value is None or not math.isfinite(float(value)):
        raise NoEvaluationError(
            f"{detail}: the {found} could not be measured ({reason or 'no value'}); "
            "evaluate on more impostor pairs, choose a larger demo.fmr, or pass --threshold"
        )
    return Threshold(float(value), f"{found} from {detail}")


def _best_face(embeddings: np.ndarray, gallery: Gallery) -> np.ndarray:
    """(F, M): each identity's best-matching enrolled face (a verification pair's cosine)."""
    per_face = embeddings @ gallery.embeddings.T  # (F, N) cosine
    scores = np.full((len(embeddings), len(gallery.identities)), -np.inf, np.float32)
    np.maximum.at(scores.T, gallery.labels, per_face.T)
    return scores


def _template(embeddings: np.ndarray, gallery: Gallery) -> np.ndarray:
    """(F, M): the cosine to each identity's template, its L2-normalised mean embedding
    (not the mean of the cosines: evaluate.identification.score's `mean`)."""
    return embeddings @ gallery.templates.T


# demo.score -> an identity's similarity to each face; faceid.config.demo.DEMO_SCORES names them
IDENTITY_SCORES: dict[str, Callable[[np.ndarray, Gallery], np.ndarray]] = {"max": _best_face, "template": _template}


def rank_identities(
    embeddings: np.ndarray, gallery: Gallery, score: str, top_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(F, k) identity indices and similarities, best first, of F L2-normalised embeddings.

    `score` (demo.score) picks the identity's similarity from IDENTITY_SCORES. k = min(top_k, identities).
    """
    if score not in IDENTITY_SCORES:
        raise FaceidError(score_choice_error(score))
    scores = IDENTITY_SCORES[score](embeddings, gallery)  # (F, M)
    k = min(top_k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


@dataclass(frozen=True)
class Candidate:
    name: str
    similarity: float


@dataclass(frozen=True)
class FaceResult:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the photo's pixels
    probability: float  # the detector's
    name: str  # best identity, or "unknown" at or below the threshold
    similarity: float  # of the best identity
    known: bool
    candidates: tuple[Candidate, ...]  # top-k, best first


@dataclass(frozen=True)
class PhotoResult:
    photo: str
    width: int
    height: int
    threshold: Threshold
    faces: tuple[FaceResult, ...]
    n_faces_not_shown: int  # beyond demo.max_faces, or whose crop failed

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["threshold"] = {"value": self.threshold.value, "source": self.threshold.source}
        out["error"] = None
        return out


def failed_photo(photo: str, error: str) -> dict[str, Any]:
    """A photo that could not be identified, in PhotoResult.to_dict's shape."""
    fields = {"photo": photo, "width": None, "height": None, "threshold": None, "faces": [],
              "n_faces_not_shown": 0}  # fmt: skip
    return {**fields, "error": error}


class Identifier:
    """A model, its gallery and a threshold: photos in, named faces out."""

    def __init__(self, embedder: Embedder, gallery: Gallery, threshold: Threshold, *,
                 top_k: int, score: str, max_side: int, min_probability: float, max_faces: int,
                 batch_size: int, gallery_path: str = "gallery"):  # fmt: skip
        gallery.check_compatible(embedder, gallery_path)
        self.embedder, self.gallery, self.threshold = embedder, gallery, threshold
        self.top_k, self.score, self.batch_size = top_k, score, batch_size
        self.max_side, self.min_probability, self.max_faces = max_side, min_probability, max_faces

    def identify(self, image: np.ndarray, photo: str) -> PhotoResult:
        """All faces of `image` named; NoFaceError (naming `photo`) when there is none."""
        found = self.embedder.find_faces(image, self.max_side, self.min_probability)
        faces = [result for result in found if result.face is not None]
        if not faces and found[0].reason == TOO_SMALL:
            height, width = image.shape[:2]
            raise NoFaceError(
                f"{photo}: no face found: the photo is {width}x{height} px, smaller than the "
                f"smallest face the detector searches ({self.embedder.crop.min_face_size} px, "
                "crop.min_face_size); use a larger photo"
            )
        if not faces:
            raise NoFaceError(
                f"{photo}: no face found (detector probability >= {self.min_probability}); "
                f"use a photo where faces are at least {self.embedder.crop.min_face_size} px wide "
                "(crop.min_face_size, the smallest face the detector searches), frontal and unobstructed"
            )
        usable = [result for result in faces[: self.max_faces] if result.crop is not None]
        if not usable:
            raise DemoInputError(f"{photo}: faces found but none could be cropped; try a larger photo")
        embeddings = self.embedder.embed(np.stack([result.crop for result in usable]), self.batch_size)
        order, similarity = rank_identities(embeddings, self.gallery, self.score, self.top_k)
        results = []
        for face, idx, sims in zip((result.face for result in usable), order, similarity, strict=True):
            candidates = tuple(
                Candidate(str(self.gallery.identities[i]), float(s)) for i, s in zip(idx, sims, strict=True)
            )
            known = candidates[0].similarity > self.threshold.value
            results.append(
                FaceResult(
                    box=tuple(round(float(v), 1) for v in face.box),
                    probability=float(face.probability),
                    name=candidates[0].name if known else UNKNOWN,
                    similarity=candidates[0].similarity,
                    known=bool(known),
                    candidates=candidates,
                )
            )
        results.sort(key=lambda r: (r.box[0], r.box[1]))  # reading order, left to right
        height, width = image.shape[:2]
        return PhotoResult(photo, width, height, self.threshold, tuple(results), len(faces) - len(results))
