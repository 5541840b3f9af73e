"""Schema of params.yaml's `weights` section: where pretrained files are looked for.

What each backbone's weight sets are (URL, file name, sha256) is part of the backbone's
registry entry (faceid.backbones.registry.BackboneSpec.weights); `weights.sources` only replaces
one, e.g. with a mirror.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from faceid.config.engine import ParamsError, check_at_least

__all__ = ["WeightSource", "WeightsParams"]


@dataclass(frozen=True)
class WeightSource:
    """Where one set of pretrained weights comes from."""

    url: str  # HTTP(S) address of the original file
    file: str  # its file name, as found in $TORCH_HOME/checkpoints or weights.local_dir
    # full sha256 hex digest or a prefix of it (torchvision names files by the first 8
    # hex digits); None = not verified, the computed digest is logged so it can be pinned.
    # It keeps a default (not a tunable value: "no digest known"): the backbone registry
    # (faceid.backbones.registry) builds its entries from code, most without a digest
    sha256: str | None = None


@dataclass(frozen=True)
class WeightsParams:
    """Pretrained backbone weights: where to find or fetch them."""

    SECTION: ClassVar[str] = "weights"

    # init name -> a source replacing the backbone registry's (a mirror); {} = the registry's
    sources: dict[str, WeightSource]
    # a folder holding the files by name, searched before $TORCH_HOME/checkpoints
    local_dir: str | None
    offline: bool  # never use the network; a missing file is an error
    download_timeout_s: float  # connect/read timeout of one HTTP request
    download_retries: int  # network errors retried this many times (after the first try)
    download_backoff_s: float  # wait before retry k (k = 0, 1, …): download_backoff_s * 2**k

    def __post_init__(self) -> None:
        if not self.download_timeout_s > 0:
            raise ParamsError(f"weights.download_timeout_s: expected seconds > 0, got {self.download_timeout_s}")
        check_at_least("weights.download_retries", self.download_retries, 0)
        if not self.download_backoff_s >= 0:
            raise ParamsError(f"weights.download_backoff_s: expected seconds >= 0, got {self.download_backoff_s}")
