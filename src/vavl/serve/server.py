"""uvicorn around the app: a bound socket, timeouts for idle and slow clients, a bound on
connections, and a clean stop."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from vavl.errors import VavlError
from vavl.predict import Predictor
from vavl.serve.app import EXCEPTION_HANDLERS, ROUTES, App, Guard, ServeSettings
from vavl.serve.live import live_endpoint

logger = logging.getLogger("vavl")


def create_asgi_app(app: App) -> ASGIApp:
    """The page, the API and the live WebSocket behind the Host/Origin guard."""
    starlette = Starlette(
        routes=[*ROUTES, WebSocketRoute("/api/live", live_endpoint)],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    starlette.state.vavl = app
    return Guard(starlette, app)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for the request head: a client that connects
    and sends nothing, or sends its headers a byte at a time, is cut off after
    ``timeout_keep_alive`` seconds (uvicorn alone only times out idle connections after a
    response, so such sockets would stay open as long as the client liked)."""

    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_deadline()  # the next request's head has the same time to arrive

    def handle_websocket_upgrade(self, event: Any) -> None:
        self._cancel_head_deadline()  # the WebSocket protocol takes over the connection
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(self.timeout_keep_alive, self._drop_if_waiting)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _drop_if_waiting(self) -> None:
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and not self.transport.is_closing():
            self.transport.close()


class VavlServer:
    """The app on a bound socket (``port=0`` picks a free one: see :attr:`url`), served by
    uvicorn until :meth:`shutdown` or a signal."""

    def __init__(self, app: App) -> None:
        self.app = app
        settings = app.settings
        try:
            self.socket = socket.create_server((settings.host, settings.port))
        except OSError as error:
            raise VavlError(
                f"cannot listen on {settings.host}:{settings.port}: {error.strerror or error}"
            ) from None
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        app.port = self.server_address[1]
        config = uvicorn.Config(
            create_asgi_app(app),
            http=GuardedH11Protocol,
            ws="websockets-sansio",
            ws_max_size=app.settings.max_message_bytes,
            # uvicorn declares an int, but only hands it to the event loop's timers: a float
            # keeps --timeout 0.5 from becoming no time at all.
            timeout_keep_alive=settings.timeout,  # type: ignore[arg-type]
            limit_concurrency=settings.max_connections,
            timeout_graceful_shutdown=5,
            log_config=None,  # vavl's logging, not uvicorn's own set-up
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown`, or (in the main thread) until SIGINT or SIGTERM."""
        self._stopped.clear()
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serving (from another thread) and wait until the server has stopped."""
        self._server.should_exit = True
        self._stopped.wait(timeout=30)

    def server_close(self) -> None:
        self.socket.close()
        self.app.close()


def create_server(
    predictor: Predictor,
    settings: ServeSettings | None = None,
    work_dir: str | Path | None = None,
) -> VavlServer:
    """A server ready to :meth:`~VavlServer.serve_forever`; ``port=0`` picks a free port (see
    ``.url``). Uploads go to a new folder of the server's own, inside ``work_dir`` (default: the
    system's temporary folder), removed when the server is closed."""
    settings = settings or ServeSettings()
    return VavlServer(App(predictor, settings, Path(work_dir) if work_dir else None))


def serve(server: VavlServer) -> None:
    """Serve until interrupted, then close (the work folder is removed)."""
    try:
        server.serve_forever()
    finally:
        server.server_close()
