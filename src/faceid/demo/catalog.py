"""Where the demo finds models, galleries and evaluations, and how it opens them.

A model is named by its folder under the models directory (`data/models/<task>-<backbone>/
model.pt`); its gallery is `<galleries>/<name>.npz` and its evaluation (which sets the
"unknown" threshold) `<eval>/<name>.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from faceid.config.whole import Params
from faceid.demo.faces import load_embedder
from faceid.demo.gallery import load_gallery
from faceid.demo.identify import Identifier, Threshold, threshold_from_evaluation
from faceid.errors import MissingInputError

__all__ = ["DemoPaths", "ModelEntry", "list_models", "open_identifier", "resolve_model"]

MODEL_FILE = "model.pt"


@dataclass(frozen=True)
class DemoPaths:
    models_dir: Path = Path("data/models")
    galleries_dir: Path = Path("data/galleries")
    eval_dir: Path = Path("metrics/eval")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    model_path: Path
    gallery_path: Path
    eval_path: Path

    @property
    def has_gallery(self) -> bool:
        return self.gallery_path.is_file()

    @property
    def has_evaluation(self) -> bool:
        return self.eval_path.is_file()


def resolve_model(model: str, paths: DemoPaths) -> ModelEntry:
    """A model given as a model.pt path, its folder, or a name under `paths.models_dir`."""
    given = Path(model)
    if given.suffix == ".pt":
        model_path = given
    elif given.is_dir():
        model_path = given / MODEL_FILE
    else:
        model_path = paths.models_dir / model / MODEL_FILE
    if not model_path.is_file():
        known = ", ".join(e.name for e in list_models(paths)) or "none yet: run `dvc repro`"
        raise MissingInputError(f"model {model!r}: {model_path} does not exist; models in {paths.models_dir}: {known}")
    name = model_path.parent.name
    return ModelEntry(name, model_path, paths.galleries_dir / f"{name}.npz", paths.eval_dir / f"{name}.json")


def list_models(paths: DemoPaths) -> list[ModelEntry]:
    """Every data/models/*/model.pt, by name."""
    if not paths.models_dir.is_dir():
        return []
    return [
        ModelEntry(
            p.parent.name, p, paths.galleries_dir / f"{p.parent.name}.npz", paths.eval_dir / f"{p.parent.name}.json"
        )
        for p in sorted(paths.models_dir.glob(f"*/{MODEL_FILE}"))
    ]


def open_identifier(
    entry: ModelEntry, params: Params, *, gallery_path: Path | None = None,
    threshold: float | None = None, top_k: int | None = None,
) -> Identifier:
    """The model's Identifier: its gallery, and `threshold` or the evaluation's at demo.fmr."""
    demo = params.demo
    gallery_path = gallery_path or entry.gallery_path
    gallery = load_gallery(gallery_path)  # first: the cheapest file to be missing
    chosen = (
        Threshold(threshold, "--threshold") if threshold is not None
        else threshold_from_evaluation(entry.eval_path, demo.fmr)
    )  # fmt: skip
    embedder = load_embedder(entry.model_path, params.crop, params.evaluate.flip_average, demo.device)
    return Identifier(
        embedder, gallery, chosen, top_k=top_k or demo.top_k, score=demo.score,
        max_side=demo.detect_max_side, min_probability=demo.min_face_probability,
        max_faces=demo.max_faces, batch_size=demo.batch_size, gallery_path=str(gallery_path),
    )  # fmt: skip
