"""Pretrained backbone weights: find or download, verify, convert to data/weights/<backbone>.pt.

Lookup order for the original file (e.g. 20180402-114759-vggface2.pt):
weights.local_dir, $TORCH_HOME/checkpoints (facenet-pytorch's cache),
$TORCH_HOME/hub/checkpoints (torchvision's cache), then the network unless
weights.offline. The file is checked against its sha256 (or the hash prefix that
torchvision puts in its file names), stripped of its classifier, and saved as the state
dict of the backbone's `net`. For init: none the output is an empty dict (a marker, so
the stage still has an output and the train stage a fixed dependency).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import requests
import torch

from faceid.backbones import get_spec
from faceid.config.weights import WeightSource, WeightsParams
from faceid.errors import FaceidError
from faceid.fileio import file_digest, save_torch_atomic
from faceid.transfer import DownloadError, download_file

__all__ = ["WeightsError", "find_weights", "prepare_weights", "torch_home"]

log = logging.getLogger(__name__)


class WeightsError(FaceidError, RuntimeError):
    """Pretrained weights that cannot be found, fetched or verified."""


def torch_home() -> Path:
    """$TORCH_HOME, else $XDG_CACHE_HOME/torch, else ~/.cache/torch (torch's own rule)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "torch"
    return Path(os.environ.get("TORCH_HOME", default)).expanduser()


def _candidates(source: WeightSource, params: WeightsParams) -> list[Path]:
    dirs = [Path(params.local_dir)] if params.local_dir else []
    dirs += [torch_home() / "checkpoints", torch_home() / "hub" / "checkpoints"]
    return [d / source.file for d in dirs]


def _verify(path: Path, source: WeightSource) -> None:
    digest = file_digest(path)
    if source.sha256 is None:
        log.warning("%s: sha256 %s not pinned; pin it in the backbone's BACKBONES entry or weights.sources", path, digest)
    elif not digest.startswith(source.sha256.lower()):
        raise WeightsError(
            f"{path}: sha256 {digest} does not match the expected {source.sha256}; the file is "
            "corrupt or a different release: delete it and run the weights stage again"
        )


def _download(source: WeightSource, dest: Path, params: WeightsParams) -> None:
    """Fetch `source` into `dest` by the project's one download path (faceid.transfer:
    retries, resume, progress, free-disk check, an HTML page refused); verified after."""
    hint = (
        f"put {source.file} in $TORCH_HOME/checkpoints ({torch_home() / 'checkpoints'}) or "
        "weights.local_dir, or set the backbone's init: none"
    )
    with requests.Session() as session:
        try:
            download_file(
                dest,
                url=source.url,
                session=session,
                retries=params.download_retries,
                backoff_s=params.download_backoff_s,
                timeout_s=params.download_timeout_s,
                hint=hint,
            )
        except DownloadError as exc:
            raise WeightsError(str(exc)) from exc


def find_weights(source: WeightSource, params: WeightsParams, workdir: Path) -> Path:
    """Path of the verified original file of `source`, downloading into `workdir` if needed."""
    for path in _candidates(source, params):
        if path.is_file():
            log.info("using %s", path)
            _verify(path, source)
            return path
    if params.offline:
        places = ", ".join(str(p.parent) for p in _candidates(source, params))
        raise WeightsError(
            f"{source.file}: not found and weights.offline is true; download {source.url} "
            f"into one of: {places}; or set train.backbone.<name>.init: none"
        )
    dest = workdir / source.file
    log.info("downloading %s", source.url)
    _download(source, dest, params)
    _verify(dest, source)
    return dest


def prepare_weights(backbone: str, init: str, params: WeightsParams, out: Path) -> Path:
    """Write data/weights/<backbone>.pt: the backbone's state dict, or {} for init none."""
    spec = get_spec(backbone)
    if init != "none" and init not in spec.inits:
        raise WeightsError(
            f"train.backbone.{backbone}.init: {init!r} is not a weight set of {backbone}; "
            f"valid: {', '.join((*spec.inits, 'none'))}"
        )
    out = Path(out)
    # a download lands here and is removed once converted; an interrupted one stays, so the
    # next run resumes it (one folder per output: parallel weights stages never share one)
    downloads = out.parent / f".{out.name}.download"
    if init == "none":
        state: dict[str, torch.Tensor] = {}
    else:
        source = params.sources.get(init, spec.weights[init])  # a mirror in params, else the registry's
        original = find_weights(source, params, downloads)
        raw = torch.load(original, map_location="cpu", weights_only=True)
        state = spec.adapt_weights(raw)
    save_torch_atomic(state, out)
    shutil.rmtree(downloads, ignore_errors=True)
    log.info("wrote %s (%d tensors)", out, len(state))
    return out
