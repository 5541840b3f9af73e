"""Fetch one file over HTTP(S), resumably: the one download path of the project.

`download_file` streams a URL into `<target>.part`, resumes with an HTTP Range request
after a dropped connection, retries network errors with exponential backoff, checks the
free disk and the file's digest, and only then renames it to its final name, so a
partial or corrupt file never sits where a reader would take it. With `drive=True` it
follows Google Drive's "can't scan for viruses" confirmation page and explains Drive's
error pages. Callers say what the user can do instead (`hint`): CelebA (faceid.data.download)
points to a mirror or a local copy, the weights stage to $TORCH_HOME or weights.local_dir.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import requests

from faceid.common.fileio import file_digest
from faceid.common.progress import progress
from faceid.data.drive_pages import confirmation, explain_drive_page
from faceid.errors import FaceidError

__all__ = ["ChecksumError", "DownloadError", "DriveError", "download_file"]

log = logging.getLogger(__name__)

# Bytes per read from the socket.
_CHUNK_BYTES = 1 << 20
# Drive shows at most one confirmation page; more means it is looping.
_MAX_CONFIRM_PAGES = 2


class DownloadError(FaceidError, RuntimeError):
    """A file that could not be fetched; the message says why and what to do."""


class ChecksumError(DownloadError):
    """A fetched file whose digest is not the expected one."""


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


def download_file(
    target: Path,
    *,
    url: str,
    query: Mapping[str, str] | None = None,
    drive: bool = False,
    digest: tuple[str, str] | None = None,
    session: requests.Session,
    retries: int,
    backoff_s: float,
    timeout_s: float,
    hint: str,
) -> None:
    """Fetch `url` into `target` via `<target>.part`: resume, retry, verify, then rename.

    `drive`: follow Google Drive's confirmation page and explain its error pages.
    `digest`: (hashlib algorithm, expected hex digest or a prefix of it), checked before
    the rename; a mismatch deletes the part file. Network errors are retried `retries`
    times, waiting `backoff_s * 2**k` before retry k; the partial file is kept, so
    re-running resumes too. `hint`: what the user can do instead, ending every error.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    for attempt in range(retries + 1):
        try:
            _transfer(session, url, query, drive, part, target.name, timeout_s, hint)
            break
        except _RETRIABLE as exc:
            if attempt == retries:
                have = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"{target.name}: download from {url} failed after {retries + 1} attempts "
                    f"({type(exc).__name__}: {exc}). Check the network and re-run: the "
                    f"{have:,} bytes already in {part} are kept and the download resumes "
                    f"from there; or {hint}"
                ) from exc
            wait = backoff_s * 2**attempt
            log.warning(
                "%s: %s; retry %d/%d in %.1f s", target.name, exc, attempt + 1, retries, wait
            )
            time.sleep(wait)
    if digest is not None:
        algorithm, expected = digest
        found = file_digest(part, algorithm)
        if not found.startswith(expected.lower()):
            part.unlink()
            raise ChecksumError(
                f"{target.name}: {algorithm.upper()} mismatch, expected {expected}, found {found} "
                f"(from {url}); the corrupt download was deleted, re-run to fetch it again"
            )
    os.replace(part, target)
    log.info("%s: downloaded%s", target, " and verified" if digest else "")



def _transfer(
    session: requests.Session,
    url: str,
    query: Mapping[str, str] | None,
    drive: bool,
    part: Path,
    name: str,
    timeout_s: float,
    hint: str,
) -> None:
    """One attempt: append to (or start) `part` from where it stops."""
    offset = part.stat().st_size if part.exists() else 0
    # identity: byte ranges and Content-Length must refer to the stored bytes, not gzip
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    response = _open(session, url, query, headers, drive, name, timeout_s, hint)
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
    hint: str,
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
            raise DownloadError(f"{name}: {response.url} answered {what}; {hint}")
        page = response.text
        response.close()
        follow = confirmation(page, response.url) if status == 200 else None
        if follow is None:
            raise DriveError(f"{name}: {explain_drive_page(page, status)}; {hint}")
        if pages_followed == _MAX_CONFIRM_PAGES:
            break
        follow_url, follow_query = follow
        log.info("%s: following Google Drive's download confirmation", name)
        response = session.get(
            follow_url, params=follow_query, headers=headers, stream=True, timeout=timeout_s
        )
    raise DriveError(f"{name}: Google Drive kept answering confirmation pages; {hint}")


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
