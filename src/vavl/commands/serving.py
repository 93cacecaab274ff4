"""The serve command: the local web page, its API and live mode."""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

from vavl.commands.base import (
    Subcommands,
    add_checkpoint_option,
    at_least_one,
    port_number,
    positive_megabytes,
    positive_seconds,
)


def _command_serve(args: argparse.Namespace) -> int:
    from vavl.predict import Predictor
    from vavl.serve import ServeSettings, create_server, serve

    settings = ServeSettings(
        host=args.host,
        port=args.port,
        max_upload_mb=args.max_upload_mb,
        window=args.window,
        hop=args.hop,
        face_crops=args.face_crops,
        timeout=args.timeout,
        max_connections=args.max_connections,
        allowed_hosts=args.allow_host,
    )
    predictor = Predictor.load(
        args.checkpoint, device=args.device, preview_crops=settings.face_crops, backend=args.backend
    )
    server = create_server(predictor, settings, args.work_dir)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"vavl: listening on {args.host}: anyone reaching it can upload", file=sys.stderr)
    print(
        f"vavl: serving {server.url} (uploads in {server.app.work_dir}; Ctrl-C stops)", flush=True
    )
    try:
        serve(server)
    except KeyboardInterrupt:
        pass
    finally:
        print("vavl: stopped", file=sys.stderr)
        # Free the models (and their native thread pools) now, not during interpreter shutdown.
        del server, predictor
        gc.collect()
    return 0


def add_parsers(commands: Subcommands, overrides: argparse.ArgumentParser) -> None:
    """Declare this group's subcommands (``overrides``: --set, --force, --model)."""
    serve = commands.add_parser(
        "serve",
        help="a local web page and HTTP API: upload a clip, or stream camera and microphone",
        description="Serve one page (GET /) and an API (GET /api/health, POST /api/predict with "
        "the file as the request body, WebSocket /api/live for camera and microphone). Uploads "
        "are checked by content, kept in the server's own work folder under generated names and "
        "deleted once answered.",
    )
    add_checkpoint_option(serve, "a trained model (default: the default model)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: local only)")
    serve.add_argument("--port", type=port_number, default=8000, help="0 picks a free port")
    serve.add_argument(
        "--max-upload-mb", type=positive_megabytes, default=100.0, help="upload size limit"
    )
    serve.add_argument(
        "--work-dir",
        type=Path,
        help="the server makes its own folder for uploads in here, and removes only that "
        "(default: the system's temporary folder)",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another name clients may reach the server by (Host header); repeatable; the "
        "bound address and localhost names are always allowed",
    )
    serve.add_argument(
        "--timeout",
        type=positive_seconds,
        default=30.0,
        help="seconds a client may stay silent before its connection is closed (default: 30)",
    )
    serve.add_argument(
        "--max-connections",
        type=at_least_one,
        default=32,
        help="open connections at most; beyond, requests get 503 (default: 32)",
    )
    serve.add_argument(
        "--window", type=positive_seconds, default=2.0, help="timeline window, seconds"
    )
    serve.add_argument("--hop", type=positive_seconds, default=0.5, help="timeline hop, seconds")
    serve.add_argument(
        "--face-crops", type=at_least_one, default=8, help="face crops shown per clip"
    )
    serve.add_argument("--device", default="auto")
    serve.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    serve.set_defaults(handler=_command_serve)
