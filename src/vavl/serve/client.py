"""A client of the live WebSocket (``/api/live``) that streams a media file as a camera and a
microphone would: audio in 0.1 s messages, frames at a few per second, in real time or as fast
as the server takes them. Used by the live benchmark and the tests; also a way to watch a
recording's emotions through a running ``vavl serve``."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from vavl.media import SAMPLE_RATE, VideoReader, probe, read_audio
from vavl.serve.live import AUDIO, FRAME_TIME, VIDEO

CHUNK_SECONDS = 0.1


@dataclass
class LiveRun:
    """What came back: every message, and each update's latency: from the moment the last
    piece of its window left the client to its arrival."""

    updates: list[dict[str, Any]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def percentile(self, share: float) -> float:
        return float(np.percentile(self.latencies_ms, 100 * share)) if self.latencies_ms else 0.0


def audio_message(samples: NDArray[np.float32]) -> bytes:
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    return bytes([AUDIO]) + pcm.tobytes()


def frame_message(when: float, image: NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=80)
    return bytes([VIDEO]) + FRAME_TIME.pack(when) + buffer.getvalue()


def load_stream(
    path: str | Path, fps: float, video: bool = True, seconds: float | None = None
) -> tuple[NDArray[np.float32] | None, list[tuple[float, NDArray[np.uint8]]]]:
    """A file's audio (16 kHz mono) and frames (``fps`` a second, at most 640 px a side),
    looped to ``seconds`` when given."""
    audio = read_audio(path) if probe(path).audio else None
    frames: list[tuple[float, NDArray[np.uint8]]] = []
    if video and probe(path).video:
        frames = [(f.time, f.image) for f in VideoReader(Path(path), fps=fps, max_side=640)]
    length = probe(path).duration or (len(audio) / SAMPLE_RATE if audio is not None else 0.0)
    if seconds is None or length <= 0:
        return audio, frames
    repeats = int(np.ceil(seconds / length))
    if audio is not None:
        audio = np.tile(audio, repeats)[: int(seconds * SAMPLE_RATE)]
    frames = [
        (t + k * length, image) for k in range(repeats) for t, image in frames
        if t + k * length < seconds
    ]  # fmt: skip
    return audio, frames


def stream(
    url: str,
    audio: NDArray[np.float32] | None,
    frames: Sequence[tuple[float, NDArray[np.uint8]]],
    realtime: bool = True,
    origin: str | None = None,
    settle: float = 3.0,
) -> LiveRun:
    """Send ``audio`` and ``frames`` to the live endpoint at ``url`` (``ws://host:port/api/live``)
    and collect what comes back, waiting ``settle`` seconds at the end for the last updates."""
    from websockets.sync.client import connect

    run = LiveRun()
    sent_at: dict[int, float] = {}  # audio samples sent -> when
    frame_sent_at: dict[float, float] = {}  # frame time -> when
    encoded = [(when, frame_message(when, image)) for when, image in frames]
    samples = 0 if audio is None else len(audio)
    duration = max(samples / SAMPLE_RATE, frames[-1][0] if frames else 0.0)
    with connect(url, origin=origin, max_size=2**24) as socket:  # type: ignore[arg-type]
        ready = json.loads(socket.recv(timeout=30))
        assert ready["type"] == "ready", ready

        def receive() -> None:
            for raw in socket:
                arrived = time.monotonic()
                message = json.loads(raw)
                if message["type"] == "error":
                    run.errors.append(message["error"])
                    continue
                if message["type"] != "update":
                    continue
                run.updates.append(message)
                if message["audio_samples"] and message["audio_samples"] in sent_at:
                    run.latencies_ms.append(1000 * (arrived - sent_at[message["audio_samples"]]))
                elif not message["audio_samples"] and message["frame_time"] in frame_sent_at:
                    left = frame_sent_at[message["frame_time"]]
                    run.latencies_ms.append(1000 * (arrived - left))

        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        started = time.monotonic()
        step, position, next_frame = int(CHUNK_SECONDS * SAMPLE_RATE), 0, 0
        clock = 0.0
        while clock < duration:
            clock += CHUNK_SECONDS
            if realtime:
                time.sleep(max(0.0, started + clock - time.monotonic()))
            while next_frame < len(encoded) and encoded[next_frame][0] <= clock:
                socket.send(encoded[next_frame][1])
                frame_sent_at[encoded[next_frame][0]] = time.monotonic()
                next_frame += 1
            if audio is not None and position < samples:
                socket.send(audio_message(audio[position : position + step]))
                position = min(samples, position + step)
                sent_at[position] = time.monotonic()
        time.sleep(settle)
    receiver.join(timeout=5)
    return run
