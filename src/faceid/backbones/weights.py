"""Pretrained backbone weights: find or download, verify, convert to data/weights/<backbone>.pt.

Lookup order for the original file (e.g. 20180402-114759-vggface2.pt):
weights.local_dir, $TORCH_HOME/checkpoints (facenet-pytorch's cache),
$TORCH_HOME/hub/checkpoints (torchvision's cache), then the network unless
weights.offline. The file is checked against its sha256 (or the hash prefix that
torchvision puts in its file names), stripped of its classifier, and saved as the state
dict of the backbone's `net`. For init: none the output is an empty dict (a marker, so
the stage still has an output and the train stage a fixed dependency).

Two stages: pretrained@<backbone> (`locate_weights`) links the original file, verified,
into data/pretrained/<backbone>/ (or downloads it there); weights@<backbone>
(`convert_weights`) depends on that folder by content, so a replaced file re-runs it.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import requests
import torch

from faceid.backbones.registry import get_spec
from faceid.common.fileio import file_digest, save_torch_atomic
from faceid.common.transfer import DownloadError, download_file
from faceid.config.weights import WeightSource, WeightsParams
from faceid.errors import FaceidError

__all__ = ["WeightsError", "convert_weights", "find_weights", "locate_weights", "prepare_weights", "torch_home"]

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
        log.warning(
            "%s: sha256 %s not pinned; pin it in the backbone's BACKBONES entry or weights.sources", path, digest
        )
    elif not digest.startswith(source.sha256.lower()):
        raise WeightsError(
            f"{path}: sha256 {digest} does not match the expected {source.sha256}; the file is "
            "corrupt or a different release: delete it and run the weights stage again"
        )


def _download(source: WeightSource, dest: Path, params: WeightsParams) -> None:
    """Fetch `source` into `dest` by the project's one download path (faceid.common.transfer:
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


def _source_of(backbone: str, init: str, params: WeightsParams) -> WeightSource | None:
    """The weight set `init` of `backbone` (a mirror in params, else the registry's); None for none."""
    spec = get_spec(backbone)
    if init != "none" and init not in spec.inits:
        raise WeightsError(
            f"train.backbone.{backbone}.init: {init!r} is not a weight set of {backbone}; "
            f"valid: {', '.join((*spec.inits, 'none'))}"
        )
    return None if init == "none" else params.sources.get(init, spec.weights[init])


def locate_weights(backbone: str, init: str, params: WeightsParams, folder: Path) -> Path | None:
    """Make `folder` hold exactly the original file of the backbone's `init` weights: a
    symlink to the verified file found in weights.local_dir / $TORCH_HOME, or the file
    downloaded into it; empty for init none. The file, or None.

    `folder` is what the weights stage depends on: DVC hashes the file through the link,
    so replacing it where it was found re-runs the conversion. It is never DVC-cached, so
    DVC never links its cache to (or write-protects) the user's file.
    """
    folder = Path(folder)
    source = _source_of(backbone, init, params)
    folder.mkdir(parents=True, exist_ok=True)
    keep = set() if source is None else {source.file, f"{source.file}.part"}  # a download resumes
    for entry in folder.iterdir():
        if entry.name not in keep or entry.is_symlink():
            entry.unlink() if entry.is_symlink() or entry.is_file() else shutil.rmtree(entry)
    if source is None:
        return None
    link = folder / source.file
    found = next((path for path in _candidates(source, params) if path.is_file()), None)
    if found is not None:  # the user's file wins over an earlier download
        link.unlink(missing_ok=True)
        log.info("using %s", found)
        _verify(found, source)
        link.symlink_to(found.resolve())
    elif link.is_file():
        log.info("using %s, downloaded earlier", link)
        _verify(link, source)
    else:
        find_weights(source, params, folder)  # downloads into folder, or says where to put it
    return link


def convert_weights(backbone: str, init: str, params: WeightsParams, folder: Path, out: Path) -> Path:
    """Write data/weights/<backbone>.pt from `folder` (locate_weights'): the state dict of
    the backbone's `net` without its classifier, or {} for init none. The file is verified
    again: it may have been replaced since it was located (that is what re-runs this)."""
    source = _source_of(backbone, init, params)
    state: dict[str, torch.Tensor] = {}
    if source is not None:
        original = Path(folder) / source.file
        if not original.is_file():
            raise WeightsError(
                f"{original}: missing; run `dvc repro pretrained@{backbone}` (it links or downloads "
                f"{source.file} there)"
            )
        _verify(original, source)
        raw = torch.load(original, map_location="cpu", weights_only=True)
        state = get_spec(backbone).adapt_weights(raw)
    save_torch_atomic(state, Path(out))
    log.info("wrote %s (%d tensors)", out, len(state))
    return Path(out)


def prepare_weights(backbone: str, init: str, params: WeightsParams, out: Path, folder: Path | None = None) -> Path:
    """locate_weights then convert_weights: `out` from the backbone's `init` weights
    (`folder` defaults to <out>.pretrained beside it)."""
    out = Path(out)
    folder = out.with_name(f"{out.stem}.pretrained") if folder is None else Path(folder)
    locate_weights(backbone, init, params, folder)
    return convert_weights(backbone, init, params, folder, out)
