"""The demo server: the page and the API, bad uploads refused with the right status while
it keeps serving, models listed, capacity (503 with Retry-After)."""

from __future__ import annotations

import dataclasses
import io
import threading

import numpy as np
import pytest

from faceid.cli import main
from faceid.config.whole import load_all_params
from faceid.demo.catalog import DemoPaths
from faceid.demo.server import Capacity, DemoError, create_app
from tests._demo_fixtures import MODEL, png_bytes, png_header_only, render_face, small_face, small_face_params, upload


@pytest.fixture(scope="module")
def client(demo_project):
    paths = DemoPaths(demo_project.models_dir, demo_project.galleries_dir, demo_project.eval_dir)
    return create_app(paths, load_all_params(demo_project.params)).test_client()



def test_server_page_boxes_names_and_unknowns(client, demo_project):
    page = client.get("/")
    assert page.status_code == 200 and f'value="{MODEL}"' in page.text
    response = upload(client, demo_project.group.read_bytes(), "group.png")
    assert response.status_code == 200
    assert response.text.count('<g class="face known" data-name="alice"') == 1
    assert response.text.count('class="face unknown"') >= 1 and "data:image/jpeg;base64," in response.text
    api = upload(client, demo_project.group.read_bytes(), "group.png", "/api/identify").get_json()
    assert len(api["faces"]) == 3 and api["faces"][0]["name"] == "alice"



BAD_UPLOADS = {
    "text": (lambda: b"%PDF-1.4 not an image", 400, "doc.pdf: not an image"),
    "truncated": (lambda: png_bytes(render_face(1))[:3000], 400, "doc.pdf: a corrupt or truncated image"),
    "oversized": (lambda: b"x" * (1024 * 1024 + 1), 413, "larger than 1 MB (demo.max_upload_mb)"),
    "no face": (lambda: png_bytes(np.full((90, 120, 3), 60, np.uint8)), 422, "doc.pdf: no face found"),
    "pixel limit": (lambda: png_header_only(12000, 12000), 400, "doc.pdf: refused by the pixel limit"),
}


@pytest.mark.parametrize("kind", list(BAD_UPLOADS))
def test_server_refuses_bad_uploads_and_keeps_serving(client, kind):
    make, status, message = BAD_UPLOADS[kind]
    response = upload(client, make(), "doc.pdf")
    assert response.status_code == status
    assert message in response.text and 'role="alert"' in response.text
    api = upload(client, make(), "doc.pdf", "/api/identify")
    assert api.status_code == status and message in api.get_json()["error"]
    assert client.get("/").status_code == 200


def test_server_lists_models_and_refuses_one_not_ready(client, demo_project):
    (demo_project.models_dir / "blurry-resnet50").mkdir(exist_ok=True)
    (demo_project.models_dir / "blurry-resnet50" / "model.pt").write_bytes(b"")
    models = client.get("/api/models").get_json()
    assert models["default"] == MODEL
    assert {m["name"]: m["ready"] for m in models["models"]} == {"blurry-resnet50": False, MODEL: True}
    response = client.post("/", data={"photo": (io.BytesIO(b"x"), "a.png"), "model": "blurry-resnet50"})
    assert response.status_code == 409
    assert "model blurry-resnet50 is not ready: no gallery: run `faceid enroll" in response.text
    (demo_project.models_dir / "blurry-resnet50" / "model.pt").unlink()
    (demo_project.models_dir / "blurry-resnet50").rmdir()


def test_serve_starts_the_app_on_the_configured_address(demo_project, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr("flask.Flask.run", lambda app, **kwargs: calls.append((app, kwargs)))
    assert main(["serve", "--port", "5123", *demo_project.dirs()]) == 0
    ((app, kwargs),) = calls
    assert kwargs == {"host": "127.0.0.1", "port": 5123, "threaded": True}
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024  # demo.max_upload_mb: 1
    assert "http://127.0.0.1:5123/" in capsys.readouterr().out



def test_the_server_answers_a_small_face_with_422(demo_project, tmp_path):
    params = load_all_params(small_face_params(demo_project, tmp_path)[1])
    app = create_app(DemoPaths(demo_project.models_dir, demo_project.galleries_dir, demo_project.eval_dir), params)
    response = upload(app.test_client(), small_face(tmp_path).read_bytes(), "small.png", "/api/identify")
    assert response.status_code == 422 and "smaller than the smallest face" in response.get_json()["error"]



def test_capacity_queues_then_refuses_with_503():
    capacity = Capacity(slots=1, waiting=1)
    inside, release, results = threading.Event(), threading.Event(), []

    def hold():
        with capacity.slot():
            inside.set()
            release.wait(10)
        results.append("held")

    def wait_for_slot():
        with capacity.slot():
            results.append("waited")

    holder, waiter = threading.Thread(target=hold), threading.Thread(target=wait_for_slot)
    holder.start()
    inside.wait(10)
    waiter.start()
    for _ in range(1000):  # until the waiter is admitted (it then blocks on the slot)
        if capacity._admitted._value == 0:
            break
        threading.Event().wait(0.01)
    with pytest.raises(DemoError) as caught, capacity.slot():
        pass
    assert caught.value.status == 503 and caught.value.headers == {"Retry-After": "5"}
    release.set()
    holder.join(10)
    waiter.join(10)
    assert results == ["held", "waited"]
    with capacity.slot():  # free again
        pass


def test_a_saturated_server_answers_503_with_retry_after(demo_project, monkeypatch):
    params = load_all_params(demo_project.params)
    params = dataclasses.replace(params, demo=dataclasses.replace(params.demo, max_concurrent=1, max_waiting=0))
    app = create_app(DemoPaths(demo_project.models_dir, demo_project.galleries_dir, demo_project.eval_dir), params)
    models = app.extensions["faceid_models"]
    busy, release = threading.Event(), threading.Event()
    identify = models.identify

    def slow_identify(*args):
        busy.set()
        release.wait(30)
        return identify(*args)

    monkeypatch.setattr(models, "identify", slow_identify)
    first = []
    photo = demo_project.alice.read_bytes()
    thread = threading.Thread(target=lambda: first.append(upload(app.test_client(), photo, "a.png", "/api/identify")))
    thread.start()
    assert busy.wait(30)
    refused = upload(app.test_client(), photo, "b.png", "/api/identify")
    release.set()
    thread.join(30)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert "busy" in refused.get_json()["error"]
    assert first[0].status_code == 200
