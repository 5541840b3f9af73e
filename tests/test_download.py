"""faceid.data.download against a local HTTP server that plays Google Drive and a mirror."""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import requests

from faceid.config.dataset import DatasetParams
from faceid.data.celeba import ALIGNED_ZIP, ATTR_FILE, PARTITION_FILE
from faceid.data.download import (
    CELEBA_FILES,
    ChecksumError,
    DownloadError,
    DriveError,
    OfficialFile,
    fetch_celeba,
    required_files,
)
from tests._params import section

ZIP_SIZE = 300_000
CUT_AT = 70_000


@dataclass
class Request:
    path: str
    query: dict[str, str]
    range: str | None
    sent: int = 0


@dataclass
class FakeCelebAServer:
    """What the handler serves and how; every request is recorded."""

    contents: dict[str, bytes]  # file name → bytes
    ids: dict[str, str]  # Drive id → file name
    base: str = ""
    requests: list[Request] = field(default_factory=list)
    cut_after: dict[str, int] = field(default_factory=dict)  # cut the next answer after N bytes
    fail_status: dict[str, list[int]] = field(default_factory=dict)  # statuses to answer first
    honour_range: bool = True
    confirm: str | None = None  # Drive's confirmation page: "form" | "link"
    drive_page: tuple[int, str] | None = None  # Drive answers this page to every request

    def file_requests(self, name: str) -> list[Request]:
        return [r for r in self.requests if r.sent and self._name_of(r) == name]

    def _name_of(self, request: Request) -> str | None:
        if request.path.startswith("/mirror/"):
            return request.path.removeprefix("/mirror/")
        return self.ids.get(request.query.get("id", ""))


CONFIRM_FORM = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>
<body><p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="{base}/download" method="get">
<input type="submit" id="uc-download-link" value="Download anyway"/>
<input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="u-42">
</form></body></html>"""

CONFIRM_LINK = """<html><head><title>Google Drive - Virus scan warning</title></head><body>
<a id="uc-download-link" href="/uc?export=download&amp;confirm=Xy7z&amp;id={id}">Download anyway</a>
</body></html>"""

QUOTA_PAGE = """<html><head><title>Google Drive - Quota exceeded</title></head><body>
<p>Too many users have viewed or downloaded this file recently.</p></body></html>"""

NOT_FOUND_PAGE = """<html><head><title>Not Found</title></head><body>
<p>Sorry, the file you have requested does not exist.</p></body></html>"""


def _make_handler(state: FakeCelebAServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            request = Request(url.path, query, self.headers.get("Range"))
            state.requests.append(request)
            if url.path.startswith("/mirror/"):
                self._serve(request, url.path.removeprefix("/mirror/"))
            elif url.path == "/uc":
                self._drive(request, query)
            elif (
                url.path == "/download"
                and query.get("confirm") == "t"
                and query.get("uuid") == "u-42"
            ):
                self._serve(request, state.ids.get(query.get("id", ""), ""))
            else:
                self._page(404, NOT_FOUND_PAGE)

        def _drive(self, request: Request, query: dict[str, str]) -> None:
            if state.drive_page is not None:
                self._page(*state.drive_page)
            elif state.confirm == "form" and "confirm" not in query:
                self._page(200, CONFIRM_FORM.format(base=state.base, id=query["id"]))
            elif state.confirm == "link" and query.get("confirm") != "Xy7z":
                self._page(200, CONFIRM_LINK.format(id=query["id"]))
            else:
                self._serve(request, state.ids.get(query.get("id", ""), ""))

        def _page(self, status: int, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _serve(self, request: Request, name: str) -> None:
            if name not in state.contents:
                self._page(404, NOT_FOUND_PAGE)
                return
            if state.fail_status.get(name):
                self._page(state.fail_status[name].pop(0), "<html>busy</html>")
                return
            data = state.contents[name]
            start = 0
            if request.range and state.honour_range:
                start = int(request.range.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            cut = state.cut_after.pop(name, None)
            if cut is not None:
                body = body[:cut]
                self.close_connection = True
            # recorded before writing: the client may check the log as soon as it has the bytes
            request.sent = len(body)
            self.wfile.write(body)

    return Handler


@pytest.fixture
def celeba_server():
    rng = np.random.default_rng(0)
    contents = {name: f"{name} line\n".encode() * 50 for name in required_files("aligned")}
    contents[ALIGNED_ZIP] = rng.integers(0, 256, ZIP_SIZE, dtype=np.uint8).tobytes()
    ids = {f"id-{i}": name for i, name in enumerate(contents)}
    state = FakeCelebAServer(contents=contents, ids=ids)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    server.daemon_threads = True
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def _table(state: FakeCelebAServer) -> dict[str, OfficialFile]:
    return {
        name: OfficialFile(name, drive_id, hashlib.md5(state.contents[name]).hexdigest())
        for drive_id, name in state.ids.items()
    }


def _params(**overrides: object) -> DatasetParams:
    values = {
        "source": "celeba",
        "download_retries": 2,
        "download_backoff_s": 0.001,
        "download_timeout_s": 5.0,
    }
    values.update(overrides)
    return section(DatasetParams, **values)


def _fetch(
    state: FakeCelebAServer,
    dest: Path,
    files: dict[str, OfficialFile] | None = None,
    **overrides: object,
) -> None:
    fetch_celeba(
        dest, _params(**overrides), drive_url=f"{state.base}/uc", files=files or _table(state)
    )


def _assert_complete(state: FakeCelebAServer, dest: Path) -> None:
    assert sorted(p.name for p in dest.iterdir()) == sorted(state.contents)
    for name, data in state.contents.items():
        assert (dest / name).read_bytes() == data, name


# --------------------------------------------------------------------------- table


def test_table_matches_torchvision():
    from torchvision.datasets import CelebA

    for drive_id, md5, name in CelebA.file_list:
        assert CELEBA_FILES[name] == OfficialFile(name, drive_id, md5)
    assert set(required_files("aligned")) == {name for _, _, name in CelebA.file_list}


# --------------------------------------------------------------------------- downloads


def test_clean_download_from_drive(celeba_server, tmp_path):
    dest = tmp_path / "celeba"
    _fetch(celeba_server, dest)
    _assert_complete(celeba_server, dest)
    for name in celeba_server.contents:
        assert len(celeba_server.file_requests(name)) == 1


def test_verified_files_are_not_downloaded_again(celeba_server, tmp_path):
    dest = tmp_path / "celeba"
    _fetch(celeba_server, dest)
    (dest / ATTR_FILE).write_bytes(b"damaged")
    before = len(celeba_server.requests)
    _fetch(celeba_server, dest)
    _assert_complete(celeba_server, dest)
    assert [celeba_server._name_of(r) for r in celeba_server.requests[before:]] == [ATTR_FILE]


def test_mirror_serves_the_official_names(celeba_server, tmp_path):
    dest = tmp_path / "celeba"
    _fetch(celeba_server, dest, mirror_url=f"{celeba_server.base}/mirror/")
    _assert_complete(celeba_server, dest)
    assert {r.path for r in celeba_server.requests} == {
        f"/mirror/{n}" for n in celeba_server.contents
    }


def test_md5_mismatch_leaves_nothing_under_the_final_name(celeba_server, tmp_path):
    dest = tmp_path / "celeba"
    files = _table(celeba_server)
    files[ALIGNED_ZIP] = OfficialFile(ALIGNED_ZIP, files[ALIGNED_ZIP].drive_id, "0" * 32)
    found = hashlib.md5(celeba_server.contents[ALIGNED_ZIP]).hexdigest()
    with pytest.raises(
        ChecksumError,
        match=rf"{ALIGNED_ZIP}: MD5 mismatch, expected 0{{32}}, found {found}.*re-run",
    ):
        _fetch(celeba_server, dest, files=files)
    assert not (dest / ALIGNED_ZIP).exists()
    assert not list(dest.glob("*.part"))


def test_md5_not_checked_when_verify_md5_is_false(celeba_server, tmp_path):
    dest = tmp_path / "celeba"
    files = {
        name: OfficialFile(name, f.drive_id, "0" * 32) for name, f in _table(celeba_server).items()
    }
    _fetch(celeba_server, dest, files=files, verify_md5=False)
    _assert_complete(celeba_server, dest)


def test_cut_transfer_resumes_with_range(celeba_server, tmp_path):
    dest = tmp_path / "celeba"
    celeba_server.cut_after[ALIGNED_ZIP] = CUT_AT
    _fetch(celeba_server, dest)
    _assert_complete(celeba_server, dest)
    first, second = celeba_server.file_requests(ALIGNED_ZIP)
    assert (first.range, first.sent) == (None, CUT_AT)
    assert (second.range, second.sent) == (f"bytes={CUT_AT}-", ZIP_SIZE - CUT_AT)


def test_interrupted_run_resumes_on_the_next_run(celeba_server, tmp_path):
    dest = tmp_path / "celeba"
    celeba_server.cut_after[ALIGNED_ZIP] = CUT_AT
    with pytest.raises(
        DownloadError,
        match=rf"{ALIGNED_ZIP}: download .* failed after 1 attempts.*{CUT_AT:,} bytes.*resumes",
    ):
        _fetch(celeba_server, dest, download_retries=0)
    assert not (dest / ALIGNED_ZIP).exists()
    assert (dest / f"{ALIGNED_ZIP}.part").stat().st_size == CUT_AT
    _fetch(celeba_server, dest, download_retries=0)
    _assert_complete(celeba_server, dest)
    assert [r.sent for r in celeba_server.file_requests(ALIGNED_ZIP)] == [CUT_AT, ZIP_SIZE - CUT_AT]


def test_server_ignoring_range_restarts_cleanly(celeba_server, tmp_path):
    dest = tmp_path / "celeba"
    celeba_server.honour_range = False
    celeba_server.cut_after[ALIGNED_ZIP] = CUT_AT
    _fetch(celeba_server, dest)
    _assert_complete(celeba_server, dest)
    assert [r.sent for r in celeba_server.file_requests(ALIGNED_ZIP)] == [CUT_AT, ZIP_SIZE]


def test_part_longer_than_the_file_is_restarted(celeba_server, tmp_path):
    dest = tmp_path / "celeba"
    dest.mkdir()
    (dest / f"{ALIGNED_ZIP}.part").write_bytes(b"x" * (ZIP_SIZE + 10))
    _fetch(celeba_server, dest, verify_md5=False)
    _assert_complete(celeba_server, dest)
    first, second = [r for r in celeba_server.requests if celeba_server._name_of(r) == ALIGNED_ZIP]
    assert (first.range, first.sent, second.range, second.sent) == (
        f"bytes={ZIP_SIZE + 10}-",
        0,
        None,
        ZIP_SIZE,
    )


def test_server_errors_are_retried(celeba_server, tmp_path):
    dest = tmp_path / "celeba"
    celeba_server.fail_status[PARTITION_FILE] = [503, 500]
    _fetch(celeba_server, dest)
    _assert_complete(celeba_server, dest)


@pytest.mark.parametrize("style", ["form", "link"])
def test_drive_confirmation_page_is_followed(celeba_server, tmp_path, style):
    dest = tmp_path / "celeba"
    celeba_server.confirm = style
    _fetch(celeba_server, dest)
    _assert_complete(celeba_server, dest)
    zip_id = next(i for i, n in celeba_server.ids.items() if n == ALIGNED_ZIP)
    paths = [
        (r.path, r.query.get("confirm"), r.sent > 0)
        for r in celeba_server.requests
        if r.query.get("id") == zip_id
    ]
    follow = ("/download", "t", True) if style == "form" else ("/uc", "Xy7z", True)
    assert paths == [("/uc", None, False), follow]


def test_drive_quota_page_is_a_clear_error(celeba_server, tmp_path):
    dest = tmp_path / "celeba"
    celeba_server.drive_page = (200, QUOTA_PAGE)
    with pytest.raises(
        DriveError, match=r"(?s)quota is exceeded.*dataset\.mirror_url.*dataset\.source: local"
    ):
        _fetch(celeba_server, dest)
    assert list(dest.iterdir()) == []


def test_drive_missing_file_is_a_clear_error(celeba_server, tmp_path):
    celeba_server.drive_page = (404, NOT_FOUND_PAGE)
    with pytest.raises(DriveError, match=r"not found \(HTTP 404, page 'Not Found'\).*mirror_url"):
        _fetch(celeba_server, tmp_path / "celeba")


def test_mirror_without_the_file_is_a_clear_error(celeba_server, tmp_path):
    with pytest.raises(
        DownloadError,
        match=r"img_align_celeba.zip: http://\S+/mirror/nothing-here/img_align_celeba.zip answered HTTP 404"
        r".*official names",
    ):
        _fetch(
            celeba_server,
            tmp_path / "celeba",
            mirror_url=f"{celeba_server.base}/mirror/nothing-here",
        )


def test_server_down_gives_up_after_bounded_retries(tmp_path, caplog):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.WARNING, logger="faceid.common.transfer")
    with pytest.raises(
        DownloadError,
        match=r"img_align_celeba.zip: download .* failed after 3 attempts \(ConnectionError",
    ):
        fetch_celeba(tmp_path / "celeba", _params(), drive_url=f"http://127.0.0.1:{port}/uc")
    assert [r.message.split(";")[1].split(" in ")[0] for r in caplog.records] == [
        " retry 1/2",
        " retry 2/2",
    ]
    assert not (tmp_path / "celeba" / ALIGNED_ZIP).exists()


def test_wild_layout_points_to_a_local_copy(tmp_path):
    with pytest.raises(
        DownloadError, match=r"'wild' cannot be downloaded.*dataset.source: local.*img_celeba/"
    ):
        fetch_celeba(tmp_path, _params(layout="wild"))


def test_mirror_url_must_be_http(tmp_path):
    with pytest.raises(
        DownloadError,
        match=r"dataset.mirror_url: expected an http:// or https:// URL, got 'ftp://x'",
    ):
        fetch_celeba(tmp_path, _params(mirror_url="ftp://x"), session=requests.Session())
