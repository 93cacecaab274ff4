"""Live mode: microphone audio and camera frames over a WebSocket, every path's emotion back
twice a second.

The page (or any client) sends binary messages: ``b"A"`` + 16 kHz mono PCM (int16,
little-endian), and ``b"V"`` + the frame's time (float64, little-endian, seconds on the stream's
clock: audio samples sent / 16000) + a JPEG. Every ``live_hop`` seconds of stream the server
predicts the last ``live_window`` seconds and answers with JSON (``type: "update"``): each path's
label and probabilities, the best path, what the window held (speech or silence, a face or
none), the face crop used, and ``audio_samples`` / ``frame_time``: where the window ended, so
that a client can measure the latency.

Each connection keeps a bounded buffer (the last window of audio, at most ``live_fps`` frames a
second of it) and has at most one prediction in flight: when predictions are slower than the
stream, intermediate updates are skipped and the next one looks at the newest window, so the
answers never fall behind the person in front of the camera.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import math
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError
from starlette.websockets import WebSocket, WebSocketDisconnect

from vavl.errors import VavlError
from vavl.media import SAMPLE_RATE
from vavl.serve.app import App, image_data_url

logger = logging.getLogger("vavl")

AUDIO, VIDEO = b"A"[0], b"V"[0]
FRAME_TIME = struct.Struct("<d")
MAX_AUDIO_MESSAGE_SECONDS = 1.0


@dataclass
class Window:
    """What one update looks at: the stream's last seconds."""

    end: float  # seconds on the stream clock
    audio_samples: int  # audio samples received when the window was cut
    waveform: NDArray[np.float32] | None
    frames: list[tuple[float, bytes]]  # (time, JPEG)


class LiveSession:
    """One connection's buffers and the rule for when to predict."""

    def __init__(self, settings_window: float, hop: float, fps: float) -> None:
        self.window, self.hop, self.fps = settings_window, hop, fps
        self.audio = np.zeros(0, np.int16)
        self.audio_samples = 0  # received since the start
        self.frames: deque[tuple[float, bytes]] = deque()
        self.dropped_frames = 0
        self.next_update = hop
        self.frame_clock = 0.0

    @property
    def clock(self) -> float:
        """Where the stream is, in seconds: the audio received, or the newest frame's time."""
        if self.audio_samples:
            return self.audio_samples / SAMPLE_RATE
        return self.frame_clock

    def add_audio(self, payload: bytes) -> None:
        if len(payload) % 2 or len(payload) > 2 * SAMPLE_RATE * MAX_AUDIO_MESSAGE_SECONDS:
            raise ValueError("audio messages are 16-bit samples, at most a second of them")
        samples = np.frombuffer(payload, "<i2")
        keep = int(self.window * SAMPLE_RATE)
        self.audio = np.concatenate([self.audio, samples])[-keep:]
        self.audio_samples += len(samples)

    def add_frame(self, payload: bytes) -> None:
        if len(payload) <= FRAME_TIME.size:
            raise ValueError("video messages are a float64 time and a JPEG")
        (when,) = FRAME_TIME.unpack_from(payload)
        if not math.isfinite(when):
            raise ValueError("the frame's time is not a number")
        if self.frames and when - self.frames[-1][0] < 0.9 / self.fps:
            self.dropped_frames += 1  # faster than the frames kept per second
            return
        self.frames.append((when, payload[FRAME_TIME.size :]))
        self.frame_clock = max(self.frame_clock, when)
        while self.frames and self.frames[0][0] < self.clock - self.window:
            self.frames.popleft()

    def due(self) -> bool:
        """Whether the stream has moved a hop since the last update (skipped hops are not made
        up: the next update looks at the newest window)."""
        if self.clock < self.next_update:
            return False
        self.next_update = self.clock + self.hop
        return True

    def cut(self) -> Window:
        end = self.clock
        waveform = None
        if self.audio_samples:
            waveform = self.audio.astype(np.float32) / 32768.0
        frames = [(t, jpeg) for t, jpeg in self.frames if end - self.window <= t <= end]
        return Window(end, self.audio_samples, waveform, frames)


def _decoded(frames: list[tuple[float, bytes]]) -> list[NDArray[np.uint8]]:
    """The frames as RGB arrays (those of the newest frame's size: a camera may change size)."""
    images = []
    for _, jpeg in frames:
        try:
            with Image.open(io.BytesIO(jpeg)) as image:
                images.append(np.asarray(image.convert("RGB")))
        except (UnidentifiedImageError, OSError):
            continue
    return [image for image in images if image.shape == images[-1].shape] if images else []


def predict_window(app: App, window: Window, session: LiveSession) -> dict[str, Any] | None:
    """The update message for one window (run in a worker thread)."""
    started = time.perf_counter()
    frames = _decoded(window.frames)
    if window.waveform is None and not frames:
        return None
    with app.lock:
        if frames:
            span = window.frames[-1][0] - window.frames[0][0]
            fps = (len(frames) - 1) / span if len(frames) > 1 and span > 0 else session.fps
            prediction = app.predictor.predict(frames, fps=fps, waveform=window.waveform)
        else:
            assert window.waveform is not None
            prediction = app.predictor.predict(window.waveform)
    modalities = prediction.modalities
    audio_state = "off" if window.waveform is None else (
        "sound" if modalities.get("audio") == "found" else "silence"
    )  # fmt: skip
    visual_state = "off" if not frames else (
        "face" if modalities.get("visual") == "found" else "no face"
    )  # fmt: skip
    crop = prediction.face_crops[-1] if prediction.face_crops else None
    return {
        "type": "update",
        "time": round(window.end, 3),
        "audio_samples": window.audio_samples,
        "frame_time": window.frames[-1][0] if window.frames else None,
        "paths": {
            path: {"label": result.label, "probabilities": result.probabilities}
            | ({"values": result.values} if result.values else {})
            for path, result in prediction.paths.items()
        },
        "best_path": prediction.best_path,
        "state": {"audio": audio_state, "visual": visual_state},
        "face_crop": image_data_url(crop) if crop is not None else None,
        "frames": len(frames),
        "dropped_frames": session.dropped_frames,
        "compute_ms": round(1000 * (time.perf_counter() - started), 1),
    }


async def live_endpoint(websocket: WebSocket) -> None:
    app: App = websocket.app.state.vavl
    settings = app.settings
    session = LiveSession(settings.live_window, settings.live_hop, settings.live_fps)
    await websocket.accept()
    await websocket.send_text(json.dumps({"type": "ready", **app.health()["live"]}))
    in_flight: asyncio.Task[None] | None = None
    wanted = False  # a hop passed while a prediction was running

    async def update() -> None:
        nonlocal wanted
        while True:
            wanted = False
            try:
                message = await asyncio.to_thread(predict_window, app, session.cut(), session)
            except VavlError as error:
                message = {"type": "error", "error": str(error)}
            except Exception:
                logger.exception("live: prediction failed")
                message = {"type": "error", "error": "internal error (see the server's log)"}
            if message is not None:
                await websocket.send_text(json.dumps(message))
            if not wanted:
                return

    try:
        while True:
            try:
                received = await asyncio.wait_for(websocket.receive(), settings.timeout)
            except TimeoutError:
                await websocket.close(code=1001, reason="no data for too long")
                return
            if received["type"] == "websocket.disconnect":
                return
            payload = received.get("bytes")
            if not payload:
                continue  # text messages carry nothing the server needs
            try:
                if payload[0] == AUDIO:
                    session.add_audio(payload[1:])
                elif payload[0] == VIDEO:
                    session.add_frame(payload[1:])
                else:
                    raise ValueError("a message starts with b'A' (audio) or b'V' (video)")
            except ValueError as error:
                await websocket.send_text(json.dumps({"type": "error", "error": str(error)}))
                continue
            if session.due():
                if in_flight is None or in_flight.done():
                    in_flight = asyncio.create_task(update())
                else:
                    wanted = True
    except WebSocketDisconnect:
        logger.debug("live: the client went away")
    finally:
        if in_flight is not None and not in_flight.done():
            in_flight.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await in_flight
