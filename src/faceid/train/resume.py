"""Resume state of a training run: kept outside the DVC output, valid only for the same run.

DVC deletes a stage's outputs before running it (unless `persist`, which also disables the
run cache), so the state an interrupted run resumes from lives in its own folder beside the
outputs (`data/resume/<model>/`, git-ignored and not a DVC output). A state is used only
when its fingerprint matches: the run's params plus the content hashes of every input that
determines the result (crop manifest and shards, crop geometry, training subsets, pairs,
pretrained weights, the orig model a task starts from). Anything else (an upstream model retrained, new pairs, a changed
param) starts afresh. The folder is removed once the run has written its model, so a
forced re-run (`dvc repro -f`) trains again instead of re-emitting the old result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from faceid.common.fileio import file_digest, save_torch_atomic

__all__ = ["ResumeState", "run_fingerprint"]

log = logging.getLogger(__name__)

_STATE = "state.pt"
# the cached trunk features: written once per run, beside the state saved every epoch
_FEATURES = "features.pt"


def run_fingerprint(params: dict[str, Any], inputs: dict[str, Path | None]) -> str:
    """sha256 of the params (as JSON) and of each named input file's content (None = absent)."""
    described = {
        "params": params,
        "inputs": {
            name: (file_digest(path) if path is not None and Path(path).exists() else None)
            for name, path in sorted(inputs.items())
        },
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


class ResumeState:
    """One run's resume folder: `load()` the state if it belongs to this run, `save()`, `clear()`."""

    def __init__(self, folder: Path, fingerprint: str):
        self.folder = Path(folder)
        self.fingerprint = fingerprint

    def load(self) -> dict[str, Any] | None:
        path = self.folder / _STATE
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a state we cannot read is worth nothing: start afresh
            log.warning("%s: unreadable resume state (%s); starting afresh", path, exc)
            self.clear()
            return None
        if state.get("fingerprint") != self.fingerprint:
            log.warning("%s: from other params or inputs; starting afresh", path)
            self.clear()
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        save_torch_atomic({**state, "fingerprint": self.fingerprint}, self.folder / _STATE)

    def save_features(self, features: dict[str, Any]) -> None:
        """The trunk features a cached phase trains on: large, and the same all run long."""
        self.folder.mkdir(parents=True, exist_ok=True)
        save_torch_atomic({"features": features, "fingerprint": self.fingerprint}, self.folder / _FEATURES)

    def load_features(self) -> dict[str, Any] | None:
        """The saved features of this run, or None (absent, unreadable or another run's)."""
        path = self.folder / _FEATURES
        try:
            saved = torch.load(path, map_location="cpu", weights_only=False) if path.exists() else {}
        except Exception as exc:  # recomputed instead
            log.warning("%s: unreadable (%s); the features are computed again", path, exc)
            return None
        return saved["features"] if saved.get("fingerprint") == self.fingerprint else None

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
