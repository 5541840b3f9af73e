"""The demo page driven in a real headless browser (Debian's chromium, via Playwright).

Skipped unless Playwright is installed and chromium exists (CI: `apt-get install -y
chromium` and `pip install playwright`; `playwright install` is not needed). Set
FACEID_CHROMIUM to use another chromium binary, and FACEID_DEMO_SCREENSHOT=path to keep
a screenshot of the page after an upload (docs/demo.png is made this way).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from PIL import Image
from werkzeug.serving import make_server

from faceid.cli import main
from faceid.config.whole import load_all_params
from faceid.demo.catalog import DemoPaths
from faceid.demo.server import create_app
from tests._demo_fixtures import MODEL, make_demo_project

CHROMIUM = Path(os.environ.get("FACEID_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason=f"no chromium at {CHROMIUM}: `apt-get install -y chromium` (or set FACEID_CHROMIUM) to run the browser test",
)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: `pip install playwright`")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    project = make_demo_project(tmp_path_factory.mktemp("demo-browser"))
    assert main(["enroll", "--folder", str(project.people), *project.dirs()]) == 0
    paths = DemoPaths(project.models_dir, project.galleries_dir, project.eval_dir)
    httpd = make_server("127.0.0.1", 0, create_app(paths, load_all_params(project.params)), threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield project, f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    thread.join()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def test_upload_shows_boxes_names_and_unknowns(server, browser, tmp_path):
    project, url = server
    page = browser.new_page(viewport={"width": 900, "height": 760})
    page.goto(url)
    assert page.locator("#model option:checked").inner_text().strip() == MODEL
    page.set_input_files("#photo", str(project.group))
    with page.expect_navigation():
        page.click("#submit")
    faces = page.locator("#photo-view g.face")
    assert faces.count() == 3
    assert faces.nth(0).get_attribute("data-name") == "alice"
    assert "alice" in faces.nth(0).locator("text").text_content()
    assert page.locator("#photo-view g.face.unknown").count() >= 1
    assert page.locator("#faces tbody tr").count() == 3
    box = faces.nth(0).locator("rect").bounding_box()
    assert box is not None and box["width"] > 20 and box["height"] > 20  # drawn, on screen
    shot = Path(os.environ.get("FACEID_DEMO_SCREENSHOT") or tmp_path / "demo.png")
    page.screenshot(path=str(shot), full_page=True)
    with Image.open(shot) as image:
        image.convert("RGB").quantize(colors=128).save(shot, optimize=True)  # small enough for docs
    page.close()


def test_bad_upload_is_rejected_with_the_message(server, browser, tmp_path):
    project, url = server
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a photo at all")
    page = browser.new_page()
    page.goto(url)
    page.set_input_files("#photo", str(notes))
    with page.expect_navigation() as navigation:
        page.click("#submit")
    assert navigation.value.status == 400
    assert "notes.jpg: not an image" in page.locator("#error").inner_text()
    assert page.locator("#photo-view").count() == 0
    page.set_input_files("#photo", str(project.group))  # and the server still works
    with page.expect_navigation() as navigation:
        page.click("#submit")
    assert navigation.value.status == 200 and page.locator("#photo-view g.face").count() == 3
    page.close()


def test_oversized_upload_is_refused(server, browser, tmp_path):
    _, url = server
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (1024 * 1024 + 10))  # demo.max_upload_mb is 1 in the test project
    page = browser.new_page()
    page.goto(url)
    page.set_input_files("#photo", str(big))
    with page.expect_navigation() as navigation:
        page.click("#submit")
    assert navigation.value.status == 413
    assert "larger than 1 MB" in page.locator("#error").inner_text()
    page.close()
