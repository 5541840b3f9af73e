"""Every section the pipeline stages read, in one object (the demo's is not among them).

A stage that reads one or two sections is better served by
`faceid.config.engine.load_sections(path, CropParams, DatasetParams)`: it then depends
on (and validates) only those schemas.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from faceid.config.crop import CropParams
from faceid.config.dataset import DatasetParams
from faceid.config.engine import load_all
from faceid.config.evaluate import EvaluateParams
from faceid.config.pairs import PairsParams
from faceid.config.train import TrainParams
from faceid.config.weights import WeightsParams

__all__ = ["PipelineParams", "load_pipeline_params"]


@dataclass(frozen=True)
class PipelineParams:
    dataset: DatasetParams
    crop: CropParams
    pairs: PairsParams
    weights: WeightsParams
    train: TrainParams
    evaluate: EvaluateParams


def load_pipeline_params(path: str | Path = "params.yaml") -> PipelineParams:
    """Read and validate the pipeline's sections of params.yaml (others are not read)."""
    return load_all(path, PipelineParams, only_these=False)
