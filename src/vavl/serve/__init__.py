"""``vavl serve``: a local web page, a JSON API and live emotions from a microphone and a camera,
on Starlette and uvicorn (see :mod:`vavl.serve.app`, :mod:`vavl.serve.live`,
:mod:`vavl.serve.server`)."""

from vavl.serve.app import App, ServeSettings, sniff_media_type
from vavl.serve.server import VavlServer, create_server, serve

__all__ = ["App", "ServeSettings", "VavlServer", "create_server", "serve", "sniff_media_type"]
