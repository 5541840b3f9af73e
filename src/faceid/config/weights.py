"""Schema of params.yaml's `weights` section: where pretrained files are looked for.

What each backbone's weight sets are (URL, file name, sha256) is part of the backbone's
registry entry (faceid.backbones.BackboneSpec.weights), not a param.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from faceid.config.engine import ParamsError, check_at_least

__all__ = ["WeightsParams"]


@dataclass(frozen=True)
class WeightsParams:
    """Pretrained backbone weights: where to find or fetch them."""

    SECTION: ClassVar[str] = "weights"

    # a folder holding the files by name, searched before $TORCH_HOME/checkpoints
    local_dir: str | None = None
    offline: bool = False  # never use the network; a missing file is an error
    download_timeout_s: float = 60.0
    download_retries: int = 3

    def __post_init__(self) -> None:
        if not self.download_timeout_s > 0:
            raise ParamsError(f"weights.download_timeout_s: expected seconds > 0, got {self.download_timeout_s}")
        check_at_least("weights.download_retries", self.download_retries, 0)
