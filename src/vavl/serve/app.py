"""The web app: one page, a JSON API and the live WebSocket, as a Starlette application.

``GET /`` is the page, ``GET /api/health`` describes the model, ``POST /api/predict`` takes a
clip as the raw request body and answers with every path's prediction, the face crops used and
the emotion timeline, and ``/api/live`` (WebSocket) takes microphone audio and camera frames and
sends every path's emotion twice a second (:mod:`vavl.serve.live`; :mod:`vavl.serve.server`
puts them together and serves them).

It is meant for one person's machine: requests must name this server in their ``Host`` header
(a DNS-rebinding page cannot drive it) and state-changing requests from a browser must come from
its own page (``Origin``); uploads are streamed to disk with the size limit enforced while
reading, checked by content whatever their name says, kept in a work folder the server made for
itself under generated names and deleted before the answer leaves.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from vavl.errors import VavlError
from vavl.files import claim_folder, remove_abandoned
from vavl.images import image_format_of
from vavl.model_card import DEFAULT_MODEL, default_model_card
from vavl.predict import Predictor

logger = logging.getLogger("vavl")

UPLOAD_PREFIX = "upload-"
WORK_PREFIX = "vavl-serve-"  # the server's own work folder
# An upload slower than this on average, once --timeout seconds have passed, is cut off: a
# client trickling a byte at a time would otherwise hold its connection for ever.
MIN_UPLOAD_BYTES_PER_SECOND = 16 * 1024
SNIFF_BYTES = 64
LOCAL_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
BUSY = "the server is busy (uploads and live streams at their limit); try again shortly"


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
    def __init__(self, status: int, message: str) -> None:
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
    # Seconds a client may stay silent: before its request head, between body chunks, between
    # keep-alive requests.
    timeout: float = 30.0
    max_connections: int = 32  # beyond this, new requests get 503
    allowed_hosts: list[str] = field(default_factory=list)  # beyond the bound and local names
    live_window: float = 3.0  # live mode: seconds each update looks at, and how often it comes
    live_hop: float = 0.5
    live_fps: float = 5.0  # camera frames kept per second (more are dropped)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def heavy_connections(self) -> int:
        """Uploads and live WebSockets at once (the long, costly connections): the connection
        budget less a few kept for the page and the health check, whatever the load."""
        return max(1, self.max_connections - max(1, self.max_connections // 8))

    @property
    def max_message_bytes(self) -> int:
        """The largest WebSocket message: a camera frame as JPEG, or a second of audio."""
        return 4 * 2**20


class App:
    """What the routes share: the predictor (one prediction at a time), the settings and the
    server's own work folder."""

    def __init__(
        self, predictor: Predictor, settings: ServeSettings, work_root: Path | None = None
    ) -> None:
        self.predictor = predictor
        self.settings = settings
        self.port = settings.port  # the bound port, once known
        if work_root is not None:
            work_root.mkdir(parents=True, exist_ok=True)
        # A folder of its own, so that cleaning up never touches what the user keeps there;
        # the folders of servers that were killed (kill -9 leaves them) go first.
        parent = work_root or Path(tempfile.gettempdir())
        for abandoned in remove_abandoned(parent, f"{WORK_PREFIX}*"):
            logger.info("removed %s, left by a server that ended without cleaning up", abandoned)
        self.work_dir = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=parent))
        self.claim = claim_folder(self.work_dir)
        default = Path(predictor.name) == DEFAULT_MODEL
        self.notice = default_model_card()["notice"] if default else None
        self.lock = threading.Lock()  # the model and extractors are not thread-safe
        self.heavy = 0  # uploads and WebSockets being served (counted in the event loop)
        self.page = (
            resources.files("vavl").joinpath("assets/serve.html").read_text(encoding="utf-8")
        )

    def close(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.claim.close()

    def host_names(self) -> set[str]:
        """The names a request's Host header may give (without the port)."""
        names = {*LOCAL_NAMES, self.settings.host, *self.settings.allowed_hosts}
        return {name.lower() for name in names if name not in ("0.0.0.0", "::")}

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "model": Path(self.predictor.name).name,
            "labels": list(self.predictor.task.labels),
            "kind": self.predictor.task.kind,
            "extractors": self.predictor.answers.extractors,
            "notice": self.notice,
            "max_upload_bytes": self.settings.max_upload_bytes,
            "timeline": {"window": self.settings.window, "hop": self.settings.hop},
            "live": {
                "window": self.settings.live_window,
                "hop": self.settings.live_hop,
                "fps": self.settings.live_fps,
                "sample_rate": 16_000,
            },
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
                raise RequestError(422, message) from None
        # The user's name for the file, and the model's name only: no server paths leave.
        result = prediction.to_dict() | {
            "source": display_name,
            "model": Path(prediction.model).name,
        }
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


def display_name(raw: str | None) -> str:
    """The uploader's name for the file (percent-encoded by the page), only for showing: no
    folders, printable characters."""
    name = Path(unquote(raw or "").replace("\\", "/")).name
    name = re.sub(r"[^\w .()+-]", "_", name)[:120].strip()
    return name or "upload"


def _error(status: int, message: str, close: bool = False) -> JSONResponse:
    headers = {"Connection": "close"} if close else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _receive_upload(request: Request, app: App, name: str) -> Path:
    """The request body, streamed into the work folder under a new name: the size limit is
    enforced while reading, and a client that stalls is cut off."""
    settings = app.settings
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    too_big = f"{name}: over this server's limit of {settings.max_upload_mb:g} MB"
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(
            413,
            f"{name}: {int(declared) / 2**20:.1f} MB is over this server's limit of "
            f"{settings.max_upload_mb:g} MB",
        )
    chunks = request.stream().__aiter__()
    head, received, upload, handle = b"", 0, None, None
    started = time.monotonic()
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), settings.timeout)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise RequestError(408, f"{name}: the upload stalled") from None
            received += len(chunk)
            if received > limit:
                raise RequestError(413, too_big)
            elapsed = time.monotonic() - started
            if elapsed > settings.timeout and received < MIN_UPLOAD_BYTES_PER_SECOND * elapsed:
                raise RequestError(
                    408,
                    f"{name}: the upload is too slow ({received} bytes in {elapsed:.0f} s; at "
                    f"least {MIN_UPLOAD_BYTES_PER_SECOND // 1024} KB a second are needed)",
                )
            if handle is None:
                head += chunk
                if len(head) < SNIFF_BYTES:
                    continue
                upload = _new_upload(app, name, head)
                handle = upload.open("wb")
                chunk = head
            handle.write(chunk)
        if handle is None:  # the whole body is shorter than the sniffing window
            if not head:
                raise RequestError(400, f"{name}: the file is empty")
            upload = _new_upload(app, name, head)
            upload.write_bytes(head)
    except BaseException:
        if handle is not None:
            handle.close()
        if upload is not None:
            upload.unlink(missing_ok=True)
        raise
    if handle is not None:
        handle.close()
    assert upload is not None
    return upload


def _new_upload(app: App, name: str, head: bytes) -> Path:
    kind = sniff_media_type(head)
    if kind is None:
        raise RequestError(
            415,
            f"{name}: not an audio, video or image file (its content is no known format: "
            "mp4/mov/m4a, mkv/webm, avi, flv, mpg, wav, mp3, flac, ogg, jpg, png, webp, bmp)",
        )
    return app.work_dir / f"{UPLOAD_PREFIX}{secrets.token_hex(8)}.{kind}"


async def _page(request: Request) -> Response:
    app: App = request.app.state.vavl
    return HTMLResponse(app.page, headers={"Cache-Control": "no-store"})


async def _health(request: Request) -> Response:
    app: App = request.app.state.vavl
    return JSONResponse(app.health(), headers={"Cache-Control": "no-store"})


async def _predict(request: Request) -> Response:
    app: App = request.app.state.vavl
    name = display_name(request.headers.get("x-filename"))
    try:
        upload = await _receive_upload(request, app, name)
        try:
            answer = await asyncio.to_thread(app.predict, upload, name)
        finally:  # gone before the reply leaves: a client never finds its upload on disk
            upload.unlink(missing_ok=True)
    except RequestError as error:
        # An unread body must not be taken for the next request: close the connection.
        return _error(error.status, str(error), close=True)
    except ClientDisconnect:
        logger.debug("%s: the client went away during the upload", name)
        return Response(status_code=400)
    except Exception:
        logger.exception("%s: prediction failed", name)
        return _error(500, f"{name}: internal error (see log)")
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})


async def _not_found(request: Request, error: Exception) -> Response:
    return _error(404, f"no such page or endpoint: {request.url.path}")


async def _method_not_allowed(request: Request, error: Exception) -> Response:
    return _error(405, f"{request.method} is not allowed on {request.url.path}")


class Guard:
    """ASGI middleware: refuses requests whose Host is not this server (DNS rebinding), and
    state-changing requests and WebSockets whose Origin is another site (cross-site requests:
    a form or a script on another page posting here)."""

    def __init__(self, app: ASGIApp, vavl: App) -> None:
        self.app = app
        self.vavl = vavl

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self._problem(scope, headers)
        heavy = scope["type"] == "websocket" or scope.get("method") == "POST"
        if problem is None and heavy and self.vavl.heavy >= self.vavl.settings.heavy_connections:
            problem = BUSY
        if problem is None and heavy:
            self.vavl.heavy += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.vavl.heavy -= 1
        elif problem is None:
            await self.app(scope, receive, send)
        elif problem is BUSY and scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013, "reason": problem})
        elif problem is BUSY:
            await _error(503, problem, close=True)(scope, receive, send)
        elif scope["type"] == "websocket":
            logger.warning("refused a WebSocket: %s", problem)
            await send({"type": "websocket.close", "code": 1008, "reason": problem[:120]})
        else:
            logger.warning("refused %s %s: %s", scope["method"], scope["path"], problem)
            await _error(403 if "Origin" in problem else 400, problem, close=True)(
                scope, receive, send
            )

    def _problem(self, scope: Scope, headers: dict[str, str]) -> str | None:
        host = headers.get("host", "")
        name = urlsplit(f"//{host}").hostname or ""
        if name.lower() not in self.vavl.host_names():
            return f"Host '{host}' is not this server (start it with --allow-host to add names)"
        unsafe = scope["type"] == "websocket" or scope["method"] in UNSAFE_METHODS
        origin = headers.get("origin")
        if unsafe and origin is not None:
            parts = urlsplit(origin)
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
            same = (parts.hostname or "").lower() in self.vavl.host_names()
            if not same or port != self.vavl.port:
                return f"Origin '{origin}' is another site: requests must come from this page"
        return None


ROUTES = [
    Route("/", _page),
    Route("/index.html", _page),
    Route("/api/health", _health),
    Route("/api/predict", _predict, methods=["POST"]),
]
EXCEPTION_HANDLERS = {404: _not_found, 405: _method_not_allowed}
