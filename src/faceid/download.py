"""Real CelebA from Google Drive (or an HTTP mirror of the same files) into data/celeba.

`fetch_celeba` downloads the aligned layout's six official files, the ones torchvision's
`CelebA.file_list` names, with their Drive ids and MD5s kept in `CELEBA_FILES`. Each file
streams into `<name>.part`, resumes with an HTTP Range request after a dropped
connection, is checked against its MD5 and only then renamed to its final name, so a
partial or corrupt file never sits where `faceid.celeba` would read it.

Google Drive answers large files with a "can't scan for viruses" page (a form carrying
a confirm token and uuid) which is followed; any other HTML answer (quota exceeded, file
not found) is an error pointing to `dataset.mirror_url` and `dataset.source: local`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

from faceid.celeba import (
    ALIGNED_ZIP,
    ATTR_FILE,
    BBOX_FILE,
    IDENTITY_FILE,
    LANDMARKS_ALIGN_FILE,
    LANDMARKS_WILD_FILE,
    PARTITION_FILE,
    WILD_DIR,
)
from faceid.config.dataset import DatasetParams
from faceid.drive_pages import confirmation, explain_drive_page
from faceid.errors import FaceidError
from faceid.progress import progress

__all__ = [
    "CELEBA_FILES",
    "DRIVE_URL",
    "ChecksumError",
    "DownloadError",
    "DriveError",
    "OfficialFile",
    "download_file",
    "fetch_celeba",
    "file_md5",
    "required_files",
]

log = logging.getLogger(__name__)

DRIVE_URL = "https://drive.google.com/uc"

# Bytes per read from the socket and from disk while hashing.
_CHUNK_BYTES = 1 << 20
# Drive shows at most one confirmation page; more means it is looping.
_MAX_CONFIRM_PAGES = 2
_FALLBACK_HINT = (
    "set dataset.mirror_url to an HTTP(S) mirror serving the same file names, or fetch "
    "the files yourself and use `dataset.source: local` with dataset.local_dir "
    "(see docs/celeba.md)"
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


class DownloadError(FaceidError, RuntimeError):
    """A CelebA file that could not be fetched; the message says why and what to do."""


class ChecksumError(DownloadError):
    """A fetched file whose MD5 is not the official one."""


class DriveError(DownloadError):
    """Google Drive answered with a page (quota, not found, …) instead of the file."""


class _TransientError(Exception):
    """A failure worth retrying: server error or a transfer cut short."""


_RETRIABLE = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    _TransientError,
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
                url, query, drive = f"{mirror}/{name}", None, False
            else:
                url, query, drive = drive_url, {"id": entry.drive_id, "export": "download"}, True
            download_file(
                target,
                url=url,
                query=query,
                drive=drive,
                md5=md5,
                session=session,
                retries=params.download_retries,
                backoff_s=params.download_backoff_s,
                timeout_s=params.download_timeout_s,
            )
    finally:
        if own_session:
            session.close()


def download_file(
    target: Path,
    *,
    url: str,
    query: Mapping[str, str] | None = None,
    drive: bool = False,
    md5: str | None = None,
    session: requests.Session,
    retries: int,
    backoff_s: float,
    timeout_s: float,
) -> None:
    """Fetch `url` into `target` via `<target>.part`: resume, retry, verify, then rename.

    `drive`: follow Google Drive's confirmation page and explain its error pages.
    Network errors are retried `retries` times, waiting `backoff_s * 2**k` before retry
    k; the partial file is kept, so re-running resumes too.
    """
    target = Path(target)
    part = target.with_name(target.name + ".part")
    for attempt in range(retries + 1):
        try:
            _transfer(session, url, query, drive, part, target.name, timeout_s)
            break
        except _RETRIABLE as exc:
            if attempt == retries:
                have = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"{target.name}: download from {url} failed after {retries + 1} attempts "
                    f"({type(exc).__name__}: {exc}). Check the network (or "
                    f"dataset.mirror_url) and re-run: the {have:,} bytes already in {part} "
                    f"are kept and the download resumes from there"
                ) from exc
            wait = backoff_s * 2**attempt
            log.warning(
                "%s: %s; retry %d/%d in %.1f s", target.name, exc, attempt + 1, retries, wait
            )
            time.sleep(wait)
    if md5 is not None:
        found = file_md5(part)
        if found != md5:
            part.unlink()
            raise ChecksumError(
                f"{target.name}: MD5 mismatch, expected {md5}, found {found} (from {url}); "
                f"the corrupt download was deleted, re-run to fetch it again"
            )
    os.replace(part, target)
    log.info("%s: downloaded%s", target, " and verified" if md5 else "")


def file_md5(path: Path) -> str:
    """Hex MD5 of a file, with a progress bar for large ones."""
    path = Path(path)
    digest = hashlib.md5()
    size = path.stat().st_size
    with (
        path.open("rb") as handle,
        progress(
            total=size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"md5 {path.name}",
            leave=False,
            disable=size < 64 * _CHUNK_BYTES,
        ) as bar,
    ):
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


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
    found = file_md5(target)
    if found == md5:
        return True
    log.warning("%s: MD5 %s, expected %s; downloading it again", target, found, md5)
    target.unlink()
    return False


def _transfer(
    session: requests.Session,
    url: str,
    query: Mapping[str, str] | None,
    drive: bool,
    part: Path,
    name: str,
    timeout_s: float,
) -> None:
    """One attempt: append to (or start) `part` from where it stops."""
    offset = part.stat().st_size if part.exists() else 0
    # identity: byte ranges and Content-Length must refer to the stored bytes, not gzip
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    response = _open(session, url, query, headers, drive, name, timeout_s)
    with response:
        if response.status_code == 416:
            # nothing past `offset`: complete if the file is `offset` bytes long (416
            # answers carry `Content-Range: bytes */<size>`), else a stale part
            size = response.headers.get("Content-Range", "").rpartition("/")[2]
            if size.isdigit() and int(size) != offset:
                part.unlink()
                raise _TransientError(f"{part} holds {offset:,} bytes, the file {size}; restarting")
            return
        if response.status_code == 206:
            start = _range_start(response)
            if start != offset:
                part.unlink()
                raise _TransientError(
                    f"server sent bytes from {start}, asked from {offset}; restarting"
                )
            mode = "ab"
        else:
            if offset:
                log.info("%s: server ignored the Range request; starting over", name)
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None else None
        _check_space(part.parent, remaining, name)
        total = offset + remaining if remaining is not None else None
        # urllib3 raises IncompleteRead on a cut connection and drops the bytes of that
        # last read; without the check they reach the part file and the size check below
        # turns the cut into a retry that resumes after them
        response.raw.enforce_content_length = False
        with (
            part.open(mode) as out,
            progress(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=name
            ) as bar,
        ):
            for chunk in response.iter_content(_CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:
        raise _TransientError(f"connection closed after {size:,} of {total:,} bytes")


def _open(
    session: requests.Session,
    url: str,
    query: Mapping[str, str] | None,
    headers: dict[str, str],
    drive: bool,
    name: str,
    timeout_s: float,
) -> requests.Response:
    """A streaming response carrying the file's bytes (or 416), past Drive's pages."""
    response = session.get(url, params=query, headers=headers, stream=True, timeout=timeout_s)
    for pages_followed in range(_MAX_CONFIRM_PAGES + 1):
        status = response.status_code
        if status >= 500 or status == 429:
            response.close()
            raise _TransientError(f"HTTP {status} from {response.url}")
        if status == 416 or (status in (200, 206) and not _is_html(response)):
            return response
        if not drive:
            response.close()
            what = (
                f"HTTP {status}" if status not in (200, 206) else "an HTML page instead of the file"
            )
            raise DownloadError(
                f"{name}: {response.url} answered {what}; check that dataset.mirror_url "
                f"serves CelebA's files under their official names, or use "
                f"`dataset.source: local` (see docs/celeba.md)"
            )
        page = response.text
        response.close()
        follow = confirmation(page, response.url) if status == 200 else None
        if follow is None:
            raise DriveError(f"{name}: {explain_drive_page(page, status)}; {_FALLBACK_HINT}")
        if pages_followed == _MAX_CONFIRM_PAGES:
            break
        follow_url, follow_query = follow
        log.info("%s: following Google Drive's download confirmation", name)
        response = session.get(
            follow_url, params=follow_query, headers=headers, stream=True, timeout=timeout_s
        )
    raise DriveError(f"{name}: Google Drive kept answering confirmation pages; {_FALLBACK_HINT}")


def _is_html(response: requests.Response) -> bool:
    return response.headers.get("Content-Type", "").lower().startswith("text/html")


def _range_start(response: requests.Response) -> int:
    # Content-Range: bytes 100-199/200
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        raise _TransientError(f"206 answer with an unreadable Content-Range {value!r}") from None


def _check_space(folder: Path, needed: int | None, name: str) -> None:
    if needed is None:
        return
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DownloadError(
            f"{name}: needs {needed / 1e9:.2f} GB more, but {folder} has {free / 1e9:.2f} GB "
            f"free; free some space and re-run (the download resumes)"
        )
