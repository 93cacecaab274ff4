"""A small local web app: one HTML page and one HTTP API around a :class:`Predictor`.

``GET /`` is the page, ``GET /api/health`` describes the model, and ``POST /api/predict`` takes
a clip as the raw request body and answers with every path's prediction, the face crops used and
the emotion timeline (JSON, pictures as data URLs).

It is meant for one person's machine: it binds to 127.0.0.1 unless told otherwise, refuses
uploads over a size limit before reading them, accepts only bodies whose first bytes are a known
audio or video container (whatever their name says), writes each upload under a generated name
inside its work folder, deletes it once answered, and predicts one clip at a time.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from vavl.errors import VavlError
from vavl.media import image_format_of
from vavl.model_card import DEFAULT_MODEL, default_model_card
from vavl.predict import Predictor

logger = logging.getLogger("vavl")

UPLOAD_PREFIX = "upload-"
READ_CHUNK = 1 << 20


def sniff_media_type(head: bytes) -> str | None:
    """The container a file's first bytes announce, as a file extension; None if unknown."""
    still = image_format_of(head[:12])
    if still is not None:
        return {"JPEG": "jpg"}.get(still, still.lower())
    if head[4:8] == b"ftyp":
        return "mp4"  # also mov, m4a, 3gp: all ISO base media
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "mkv"  # Matroska and WebM
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"FLV"):
        return "flv"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpg"
    return None


def image_data_url(image: NDArray[np.uint8] | bytes, kind: str = "jpeg") -> str:
    """An RGB array (encoded as ``kind``) or already-encoded bytes, as a data URL."""
    if isinstance(image, np.ndarray):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=kind.upper())
        image = buffer.getvalue()
    return f"data:image/{kind};base64,{base64.b64encode(image).decode()}"


class RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = 100.0
    window: float = 2.0  # timeline window and hop, seconds
    hop: float = 0.5
    face_crops: int = 8

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


class App:
    """What the handler needs: the predictor, the settings and the work folder."""

    def __init__(
        self,
        predictor: Predictor,
        work_dir: Path,
        settings: ServeSettings,
    ) -> None:
        self.predictor = predictor
        self.work_dir = work_dir
        self.settings = settings
        default = Path(predictor.name) == DEFAULT_MODEL
        self.notice = default_model_card()["notice"] if default else None
        self.lock = threading.Lock()  # the model and extractors are not thread-safe
        work_dir.mkdir(parents=True, exist_ok=True)
        for stale in work_dir.glob(f"{UPLOAD_PREFIX}*"):  # left by a killed server
            stale.unlink()
        self.page = (
            resources.files("vavl").joinpath("assets/serve.html").read_text(encoding="utf-8")
        )

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "model": Path(self.predictor.name).name,
            "labels": list(self.predictor.task.labels),
            "kind": self.predictor.task.kind,
            "extractors": self.predictor.extractors,
            "notice": self.notice,
            "max_upload_bytes": self.settings.max_upload_bytes,
            "timeline": {"window": self.settings.window, "hop": self.settings.hop},
        }

    def predict(self, upload: Path, display_name: str) -> dict[str, Any]:
        """Everything the page shows about one uploaded clip."""
        started = time.perf_counter()
        with self.lock:
            try:
                prediction = self.predictor.predict(upload)
                timeline = None
                if prediction.duration is not None:  # a photo has no timeline
                    timeline = self.predictor.timeline(
                        upload, self.settings.window, self.settings.hop
                    )
            except VavlError as error:
                # Name the file as the user knows it, not by its upload name.
                message = str(error).replace(str(upload), display_name)
                raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, message) from None
        result = prediction.to_dict() | {"source": display_name}
        answer = {
            "file": display_name,
            "prediction": result,
            "face_crops": [image_data_url(crop) for crop in prediction.face_crops],
            "timeline": None,
            "timeline_png": None,
            "seconds": round(time.perf_counter() - started, 3),
        }
        if timeline is not None:
            timeline.source = display_name
            picture = io.BytesIO()
            timeline.figure().savefig(picture, format="png", dpi=90, bbox_inches="tight")
            answer["timeline"] = timeline.to_dict()
            answer["timeline_png"] = image_data_url(picture.getvalue(), "png")
        return answer


def _display_name(raw: str | None) -> str:
    """The uploader's name for the file (percent-encoded by the page), only for showing: no
    folders, printable characters."""
    name = Path(unquote(raw or "").replace("\\", "/")).name
    name = re.sub(r"[^\w .()+-]", "_", name)[:120].strip()
    return name or "upload"


class Handler(BaseHTTPRequestHandler):
    server: VavlServer
    server_version = "vavl"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def do_GET(self) -> None:
        route = self.path.split("?", 1)[0]
        if route in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.server.app.page.encode(), "text/html; charset=utf-8")
        elif route == "/api/health":
            self._send_json(HTTPStatus.OK, self.server.app.health())
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {route}"})

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/api/predict":
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {self.path}"})
            return
        name = _display_name(self.headers.get("X-Filename"))
        try:
            upload = self._receive(name)
            try:
                answer = self.server.app.predict(upload, name)
            finally:  # gone before the reply leaves: a client never finds its upload on disk
                upload.unlink(missing_ok=True)
            self._send_json(HTTPStatus.OK, answer)
        except RequestError as error:
            self.close_connection = True  # an unread body must not be taken for a request
            self._send_json(error.status, {"error": str(error)})
        except Exception:
            logger.exception("%s: prediction failed", name)
            self._send_json(
                HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{name}: internal error (see log)"}
            )

    def _receive(self, name: str) -> Path:
        """The request body, checked and written into the work folder under a new name."""
        app = self.server.app
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            raise RequestError(
                HTTPStatus.LENGTH_REQUIRED, f"{name}: send the file as a body with its length"
            )
        length = int(length_header)
        if length == 0:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{name}: the file is empty")
        if length > app.settings.max_upload_bytes:
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"{name}: {length / 2**20:.1f} MB is over this server's limit of "
                f"{app.settings.max_upload_mb:g} MB",
            )
        head = self.rfile.read(min(length, 64))
        kind = sniff_media_type(head)
        if kind is None:
            raise RequestError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"{name}: not an audio, video or image file (its content is no known format: "
                "mp4/mov/m4a, mkv/webm, avi, flv, mpg, wav, mp3, flac, ogg, jpg, png, webp, bmp)",
            )
        upload = app.work_dir / f"{UPLOAD_PREFIX}{secrets.token_hex(8)}.{kind}"
        try:
            with upload.open("wb") as handle:
                handle.write(head)
                remaining = length - len(head)
                while remaining > 0:
                    chunk = self.rfile.read(min(READ_CHUNK, remaining))
                    if not chunk:
                        raise RequestError(HTTPStatus.BAD_REQUEST, f"{name}: upload cut short")
                    handle.write(chunk)
                    remaining -= len(chunk)
        except BaseException:
            upload.unlink(missing_ok=True)
            raise
        return upload


class VavlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: App) -> None:
        self.app = app
        super().__init__((app.settings.host, app.settings.port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"


def create_server(
    predictor: Predictor,
    settings: ServeSettings | None = None,
    work_dir: str | Path | None = None,
) -> VavlServer:
    """A server ready to ``serve_forever()``; ``port=0`` picks a free port (see ``.url``).
    Without ``work_dir``, uploads go to a new temporary folder."""
    settings = settings or ServeSettings()
    folder = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="vavl-serve-"))
    try:
        return VavlServer(App(predictor, folder, settings))
    except OSError as error:
        raise VavlError(
            f"cannot listen on {settings.host}:{settings.port}: {error.strerror or error}"
        ) from None


def serve(server: VavlServer, remove_work_dir: bool = False) -> None:
    """Serve until interrupted, then close and clean the work folder."""
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if remove_work_dir:
            shutil.rmtree(server.app.work_dir, ignore_errors=True)
