"""`faceid serve`: a local web page that names the faces of an uploaded photo.

GET / shows the upload form and the models (data/models/*/model.pt; a model is ready
when it has a gallery and a threshold). POST / identifies the upload and shows the photo
with every face boxed and labelled (SVG over the image), unknowns marked. POST
/api/identify returns the same as JSON, GET /api/models the models.

Bad input never stops the server: a non-image or corrupt file is HTTP 400, a photo
without a face 422, an upload above demo.max_upload_mb 413, a model that is not ready
409, each with a message saying what to do.

Load is bounded: the image header is checked (demo.max_image_pixels) before anything is
decoded; at most demo.max_concurrent photos are decoded and identified at once, up to
demo.max_waiting more wait for a slot holding only their compressed upload, and the
rest are answered 503 with Retry-After. Memory is therefore about the model plus
max_concurrent decoded photos (~7 bytes per pixel each while converting) plus
(max_concurrent + max_waiting) uploads of at most demo.max_upload_mb.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flask import Flask, jsonify, render_template, request
from PIL import Image
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from faceid.common.memory import release_heap
from faceid.config.whole import Params
from faceid.demo.catalog import DemoPaths, ModelEntry, list_models, open_identifier
from faceid.demo.faces import DemoInputError, NoFaceError, check_image_header, read_image
from faceid.demo.gallery import GalleryError
from faceid.demo.identify import Identifier, NoEvaluationError, PhotoResult
from faceid.project.naming import evaluate_stage

__all__ = ["Capacity", "DemoError", "create_app"]

log = logging.getLogger(__name__)

DISPLAY_MAX_SIDE = 1024  # the photo shown back is shrunk to this (boxes scale with it)


RETRY_AFTER_S = 5  # what a 503 asks the client to wait


class DemoError(Exception):
    """A request the demo refuses: HTTP status and a message for the person."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class Capacity:
    """At most `slots` photos decoded and identified at once, `waiting` more queued for a
    slot; beyond that a request is refused at once (DemoError 503 with Retry-After)
    rather than holding memory and a thread while the server is saturated."""

    def __init__(self, slots: int, waiting: int):
        self._slots = threading.BoundedSemaphore(slots)
        self._admitted = threading.BoundedSemaphore(slots + waiting)
        self.slots, self.waiting = slots, waiting

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if not self._admitted.acquire(blocking=False):
            raise DemoError(
                503,
                f"the server is busy ({self.slots} photos being identified, {self.waiting} waiting; "
                "demo.max_concurrent, demo.max_waiting); try again in a few seconds",
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        try:
            with self._slots:
                yield
        finally:
            self._admitted.release()


@dataclass(frozen=True)
class ModelStatus:
    name: str
    ready: bool
    reason: str  # why not ready ("" when ready)


class Models:
    """The models on disk and their Identifiers, opened on first use and kept."""

    def __init__(self, paths: DemoPaths, params: Params, threshold: float | None):
        self.paths, self.params, self.threshold = paths, params, threshold
        self._cache: dict[str, tuple[float, Identifier]] = {}
        self._lock = threading.Lock()  # one forward pass at a time; also guards the cache

    def statuses(self) -> list[ModelStatus]:
        return [self._status(e) for e in list_models(self.paths)]

    def _status(self, entry: ModelEntry) -> ModelStatus:
        if not entry.has_gallery:
            return ModelStatus(entry.name, False, f"no gallery: run `faceid enroll --model {entry.name} --folder …`")
        if self.threshold is None and not entry.has_evaluation:
            return ModelStatus(entry.name, False, f"no evaluation: run `dvc repro {evaluate_stage(entry.name)}`")
        return ModelStatus(entry.name, True, "")

    def default(self) -> str | None:
        ready = [s.name for s in self.statuses() if s.ready]
        return self.params.demo.model if self.params.demo.model in ready else (ready[0] if ready else None)

    def check(self, name: str) -> ModelEntry:
        """The ready model `name`, else DemoError 404 / 409 saying what to do."""
        entries = {e.name: e for e in list_models(self.paths)}
        if name not in entries:
            raise DemoError(
                404,
                f"model {name!r} not found in {self.paths.models_dir}; choose one of: {', '.join(entries) or 'none'}",
            )
        status = self._status(entries[name])
        if not status.ready:
            raise DemoError(409, f"model {name} is not ready: {status.reason}")
        return entries[name]

    def identify(self, name: str, image: np.ndarray, photo: str) -> PhotoResult:
        entries = {name: self.check(name)}
        with self._lock:
            stamp = entries[name].gallery_path.stat().st_mtime  # a re-enrolled gallery is reloaded
            cached = self._cache.get(name)
            if cached is None or cached[0] != stamp:
                try:
                    cached = (stamp, open_identifier(entries[name], self.params, threshold=self.threshold))
                except (GalleryError, NoEvaluationError, FileNotFoundError) as exc:
                    raise DemoError(409, f"model {name} cannot be used: {exc}") from exc
                self._cache[name] = cached
            return cached[1].identify(image, photo)


def _display_image(image: np.ndarray) -> str:
    """A data: URI of the photo as JPEG, shrunk for the page."""
    # subsample a huge photo first: a full-size PIL copy of a 7000x7000 photo is 196 MB
    step = max(1, max(image.shape[:2]) // (2 * DISPLAY_MAX_SIDE))
    picture = Image.fromarray(np.ascontiguousarray(image[::step, ::step]))
    picture.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# long: a Flask app factory; its routes and error handlers are closures over the app's state
def create_app(paths: DemoPaths, params: Params, threshold: float | None = None) -> Flask:
    """The demo's Flask app; `threshold` overrides every model's evaluation threshold."""
    app = Flask(__name__)
    demo = params.demo
    app.config["MAX_CONTENT_LENGTH"] = int(demo.max_upload_mb * 2**20)
    models = Models(paths, params, threshold)
    app.extensions["faceid_models"] = models
    capacity = Capacity(demo.max_concurrent, demo.max_waiting)

    def wants_json() -> bool:
        return request.path.startswith("/api/")

    def chosen_model() -> str | None:
        try:
            return request.form.get("model") or models.default()
        except RequestEntityTooLarge:  # the form of a refused upload is never read
            return models.default()

    def page(status: int = 200, **context):
        context.setdefault("chosen", chosen_model())
        body = render_template(
            "index.html", models=models.statuses(), max_upload_mb=demo.max_upload_mb, **context
        )
        return body, status

    def upload(display: bool) -> tuple[PhotoResult, str | None]:
        """The upload identified, and with `display` the photo as a data: URI."""
        file = request.files.get("photo")
        if file is None or not file.filename:
            raise DemoError(
                400, "no photo in the upload; choose a photo file (JPEG, PNG, ...) and send it as field 'photo'"
            )
        name = Path(file.filename).name
        model = request.form.get("model") or models.default()
        if model is None:
            raise DemoError(409, "no model is ready: train one (`dvc repro`) and enrol a gallery (`faceid enroll`)")
        models.check(model)
        data = file.read()
        try:
            check_image_header(data, name, demo.max_image_pixels)  # cheap: before queueing
            with capacity.slot():
                try:
                    image = read_image(data, name, demo.max_image_pixels)
                    result = models.identify(model, image, name)
                    return result, (_display_image(image) if display else None)
                finally:
                    image = None
                    release_heap()  # else each request thread's arena keeps its photo's peak
        except NoFaceError as exc:
            raise DemoError(422, str(exc)) from exc
        except DemoInputError as exc:
            raise DemoError(400, str(exc)) from exc

    @app.errorhandler(DemoError)
    def refused(exc: DemoError):
        log.info("refused (%d): %s", exc.status, exc.message)
        if wants_json():
            return jsonify(error=exc.message), exc.status, exc.headers
        body, status = page(exc.status, error=exc.message)
        return body, status, exc.headers

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: HTTPException):
        message = f"the upload is larger than {demo.max_upload_mb:g} MB (demo.max_upload_mb); send a smaller photo"
        return refused(DemoError(413, message))

    @app.get("/")
    def index():
        return page()

    @app.post("/")
    def identify_page():
        result, image_uri = upload(display=True)
        return page(result=result, image_uri=image_uri)

    @app.post("/api/identify")
    def identify_api():
        result, _ = upload(display=False)
        return jsonify(result.to_dict())

    @app.get("/api/models")
    def models_api():
        return jsonify(models=[s.__dict__ for s in models.statuses()], default=models.default())

    return app
