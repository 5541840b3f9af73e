"""The whole params file: every section, the demo's included (`faceid check-params`).

Pipeline stages import faceid.config.pipeline or single schema modules instead, so
that editing the demo's schema leaves them up to date.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from faceid.config.demo import DemoParams
from faceid.config.engine import load_all
from faceid.config.pipeline import PipelineParams

__all__ = ["Params", "load_all_params"]


@dataclass(frozen=True)
class Params(PipelineParams):
    demo: DemoParams


def load_all_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate every section of params.yaml; an unknown section is an error."""
    return load_all(path, Params, only_these=True)
