"""Real CelebA from Google Drive (or an HTTP mirror of the same files) into data/celeba.

`fetch_celeba` downloads the aligned layout's six official files, the ones torchvision's
`CelebA.file_list` names, with their Drive ids and MD5s kept in `CELEBA_FILES`. Each file
streams into `<name>.part`, resumes with an HTTP Range request after a dropped
connection, is checked against its MD5 and only then renamed to its final name, so a
partial or corrupt file never sits where `faceid.data.celeba` would read it.

Google Drive answers large files with a "can't scan for viruses" page (a form carrying
a confirm token and uuid) which is followed; any other HTML answer (quota exceeded, file
not found) is an error pointing to `dataset.mirror_url` and `dataset.source: local`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

from faceid.common.fileio import file_digest
from faceid.common.transfer import ChecksumError, DownloadError, DriveError, download_file
from faceid.config.dataset import DatasetParams
from faceid.data.celeba import (
    ALIGNED_ZIP,
    ATTR_FILE,
    BBOX_FILE,
    IDENTITY_FILE,
    LANDMARKS_ALIGN_FILE,
    LANDMARKS_WILD_FILE,
    PARTITION_FILE,
    WILD_DIR,
)

__all__ = [
    "CELEBA_FILES",
    "DRIVE_URL",
    "ChecksumError",
    "DownloadError",
    "DriveError",
    "OfficialFile",
    "download_file",
    "fetch_celeba",
    "required_files",
]

log = logging.getLogger(__name__)

DRIVE_URL = "https://drive.google.com/uc"

_FALLBACK_HINT = (
    "set dataset.mirror_url to an HTTP(S) mirror serving the same file names, or fetch "
    "the files yourself and use `dataset.source: local` with dataset.local_dir "
    "(see docs/celeba.md)"
)
_MIRROR_HINT = (
    "check that dataset.mirror_url serves CelebA's files under their official names, or use "
    "`dataset.source: local` (see docs/celeba.md)"
)


@dataclass(frozen=True)
class OfficialFile:
    """One file of CelebA's official distribution."""

    name: str
    drive_id: str
    md5: str


# The ids and MD5s of torchvision.datasets.CelebA.file_list (torchvision 0.29), plus the
# in-the-wild landmarks it lists commented out. The in-the-wild images are a 14-part 7z
# on Drive, not a file torchvision (or we) can fetch and read.
CELEBA_FILES: dict[str, OfficialFile] = {
    f.name: f
    for f in (
        OfficialFile(ALIGNED_ZIP, "0B7EVK8r0v71pZjFTYXZWM3FlRnM", "00d2c5bc6d35e252742224ab0c1e8fcb"),
        OfficialFile(ATTR_FILE, "0B7EVK8r0v71pblRyaVFSWGxPY0U", "75e246fa4810816ffd6ee81facbd244c"),
        OfficialFile(IDENTITY_FILE, "1_ee_0u7vcNLOfNLegJRHmolfH5ICW-XS", "32bd1bd63d3c78cd57e08160ec5ed1e2"),
        OfficialFile(BBOX_FILE, "0B7EVK8r0v71pbThiMVRxWXZ4dU0", "00566efa6fedff7a56946cd1c10f1c16"),
        OfficialFile(LANDMARKS_ALIGN_FILE, "0B7EVK8r0v71pd0FJY3Blby1HUTQ", "cc24ecafdb5b50baae59b03474781f8c"),
        OfficialFile(LANDMARKS_WILD_FILE, "0B7EVK8r0v71pTzJIdlJWdHczRlU", "063ee6ddb681f96bc9ca28c6febb9d1a"),
        OfficialFile(PARTITION_FILE, "0B7EVK8r0v71pY0NSMzRuSXJEVkk", "d32c9cbf5e040fd4025c592c306e6668"),
    )
}  # fmt: skip

_ALIGNED_FILES = (
    ALIGNED_ZIP,
    ATTR_FILE,
    IDENTITY_FILE,
    PARTITION_FILE,
    LANDMARKS_ALIGN_FILE,
    BBOX_FILE,
)


# --------------------------------------------------------------------------- public


def required_files(layout: str) -> tuple[str, ...]:
    """The official files `fetch_celeba` puts in data/celeba for `layout`."""
    if layout != "aligned":
        raise DownloadError(
            f"dataset.layout: {layout!r} cannot be downloaded automatically: CelebA's "
            f"in-the-wild images are a 14-part 7z archive on Google Drive. Download and "
            f"extract it yourself, then set `dataset.source: local` and dataset.local_dir "
            f"to the folder holding {WILD_DIR}/ and the annotation files "
            f"(including {LANDMARKS_WILD_FILE}); see docs/celeba.md"
        )
    return _ALIGNED_FILES


def fetch_celeba(
    dest: Path,
    params: DatasetParams,
    *,
    drive_url: str = DRIVE_URL,
    files: Mapping[str, OfficialFile] = CELEBA_FILES,
    session: requests.Session | None = None,
) -> None:
    """Download the official files of `params.layout` into `dest` (data/celeba).

    Files already there with the right MD5 (or at all, when `verify_md5` is false) are
    kept. From `params.mirror_url` when set, else from Google Drive at `drive_url`.
    """
    dest = Path(dest)
    names = required_files(params.layout)
    mirror = _check_mirror(params.mirror_url)
    dest.mkdir(parents=True, exist_ok=True)
    own_session = session is None
    session = session or requests.Session()
    try:
        for name in names:
            entry = files[name]
            md5 = entry.md5 if params.verify_md5 else None
            target = dest / name
            if _already_there(target, md5):
                log.info(
                    "%s: present%s, not downloaded again",
                    target,
                    " with the right MD5" if md5 else "",
                )
                continue
            if mirror is not None:
                url, query, drive, hint = f"{mirror}/{name}", None, False, _MIRROR_HINT
            else:
                url, query, drive = drive_url, {"id": entry.drive_id, "export": "download"}, True
                hint = _FALLBACK_HINT
            download_file(
                target,
                url=url,
                query=query,
                drive=drive,
                digest=None if md5 is None else ("md5", md5),
                hint=hint,
                session=session,
                retries=params.download_retries,
                backoff_s=params.download_backoff_s,
                timeout_s=params.download_timeout_s,
            )
    finally:
        if own_session:
            session.close()


# --------------------------------------------------------------------------- transfer


def _check_mirror(mirror_url: str | None) -> str | None:
    if mirror_url is None:
        return None
    if not mirror_url.startswith(("http://", "https://")):
        raise DownloadError(
            f"dataset.mirror_url: expected an http:// or https:// URL, got {mirror_url!r}"
        )
    return mirror_url.rstrip("/")


def _already_there(target: Path, md5: str | None) -> bool:
    if not target.is_file():
        return False
    if md5 is None:
        return True
    found = file_digest(target, "md5")
    if found == md5:
        return True
    log.warning("%s: MD5 %s, expected %s; downloading it again", target, found, md5)
    target.unlink()
    return False


