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
from starlette.websockets import WebSocket, WebSocketDisconnect

from vavl.errors import MediaError, VavlError
from vavl.features.live import LiveStreams
from vavl.features.records import FileFeatures
from vavl.images import decode_image
from vavl.media import SAMPLE_RATE
from vavl.serve.app import App, image_data_url

logger = logging.getLogger("vavl")

AUDIO, VIDEO = b"A"[0], b"V"[0]
FRAME_TIME = struct.Struct("<d")
MAX_AUDIO_MESSAGE_SECONDS = 1.0


@dataclass
class Window:
    """What one update looks at: the stream's last seconds, and what arrived since the last."""

    end: float  # seconds on the stream clock
    audio_samples: int  # audio samples received when the window was cut
    new_audio: NDArray[np.int16]  # samples that arrived since the last cut (at most a window)
    skipped_audio: int  # samples that arrived but fell out of the window before they were used
    new_frames: list[tuple[float, bytes]]  # (time, JPEG) since the last cut, in the window
    frame_time: float | None  # the newest frame's time when the window was cut


class LiveSession:
    """One connection's buffers, the rule for when to predict, and its feature streams.

    Messages are collected here (in the event loop) and handed over at each update; the
    streams (:class:`~vavl.features.live.LiveStreams`) turn them into features in the worker
    thread, each frame once. Whatever piles up while a prediction runs is bounded by a window.
    """

    def __init__(self, settings_window: float, hop: float, fps: float) -> None:
        self.window, self.hop, self.fps = settings_window, hop, fps
        self.audio = np.zeros(0, np.int16)  # arrived since the last cut (the newest window)
        self.skipped_audio = 0
        self.audio_samples = 0  # received since the start
        self.frames: deque[tuple[float, bytes]] = deque()  # arrived since the last cut
        self.last_frame_time = -math.inf
        self.dropped_frames = 0
        self.next_update = hop
        self.frame_clock = 0.0
        self.streams: LiveStreams | None = None  # made in the worker thread, at the first update

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
        joined = np.concatenate([self.audio, samples])
        self.skipped_audio += max(0, len(joined) - keep)
        self.audio = joined[-keep:]
        self.audio_samples += len(samples)

    def add_frame(self, payload: bytes) -> None:
        if len(payload) <= FRAME_TIME.size:
            raise ValueError("video messages are a float64 time and a JPEG")
        (when,) = FRAME_TIME.unpack_from(payload)
        if not math.isfinite(when):
            raise ValueError("the frame's time is not a number")
        if when - self.last_frame_time < 0.9 / self.fps:
            self.dropped_frames += 1  # faster than the frames kept per second
            return
        self.last_frame_time = when
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
        """Hand over what arrived since the last cut."""
        end = self.clock
        frames = [(t, jpeg) for t, jpeg in self.frames if end - self.window <= t <= end]
        newest = self.last_frame_time if math.isfinite(self.last_frame_time) else None
        window = Window(end, self.audio_samples, self.audio, self.skipped_audio, frames, newest)
        self.audio, self.skipped_audio = np.zeros(0, np.int16), 0
        self.frames.clear()
        return window


def _decoded(jpeg: bytes) -> NDArray[np.uint8] | None:
    """A camera frame, or None for bytes that are no image or one too large to decode."""
    try:
        return decode_image(io.BytesIO(jpeg), "live frame")
    except MediaError:
        return None


def _features(app: App, window: Window, session: LiveSession) -> FileFeatures:
    """The window's features from the session's streams, fed with what arrived."""
    if session.streams is None:
        session.streams = LiveStreams(app.predictor.pipeline)
    streams = session.streams
    if window.skipped_audio:
        streams.skip_audio(window.skipped_audio)
    if len(window.new_audio):
        streams.add_audio(window.new_audio.astype(np.float32) / 32768.0)
    for when, jpeg in window.new_frames:
        image = _decoded(jpeg)
        if image is not None:
            streams.add_frame(when, image)
    return streams.window(max(0.0, window.end - session.window), window.end)


def predict_window(app: App, window: Window, session: LiveSession) -> dict[str, Any] | None:
    """The update message for one window (run in a worker thread)."""
    started = time.perf_counter()
    if not window.audio_samples and not window.new_frames and session.streams is None:
        return None
    with app.lock:
        features = _features(app, window, session)
        prediction = app.predictor.predict_features(features)
    modalities = prediction.modalities
    audio_state = "off" if not window.audio_samples else (
        "sound" if modalities.get("audio") == "found" else "silence"
    )  # fmt: skip
    visual_state = "off" if not features.frames_sampled else (
        "face" if modalities.get("visual") == "found" else "no face"
    )  # fmt: skip
    crop = prediction.face_crops[-1] if prediction.face_crops else None
    return {
        "type": "update",
        "time": round(window.end, 3),
        "audio_samples": window.audio_samples,
        "frame_time": window.frame_time if features.frames_sampled else None,
        "paths": {
            path: {"label": result.label, "probabilities": result.probabilities}
            | ({"values": result.values} if result.values else {})
            for path, result in prediction.paths.items()
        },
        "best_path": prediction.best_path,
        "state": {"audio": audio_state, "visual": visual_state},
        "face_crop": image_data_url(crop) if crop is not None else None,
        "frames": features.frames_sampled,
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
