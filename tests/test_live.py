"""Live mode: camera and microphone over the WebSocket, with a real client and a real clip, and
the page in headless Chromium fed by a fake camera and microphone playing a real clip."""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_serve import running

from helpers import headless_chromium, require_shared_data
from vavl.media import SAMPLE_RATE, read_audio
from vavl.predict import Predictor
from vavl.serve import ServeSettings, VavlServer, create_server
from vavl.serve.client import audio_message, frame_message, load_stream, stream
from vavl.serve.live import LiveSession

CLIP = "crema-d-samples/VideoFlash/1001_DFA_ANG_XX.flv"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VavlServer]:
    predictor = Predictor.load(preview_crops=2)
    settings = ServeSettings(port=0, timeout=10)
    with running(create_server(predictor, settings, tmp_path_factory.mktemp("work"))) as server:
        yield server


def live_url(server: VavlServer) -> str:
    return server.url.replace("http://", "ws://") + "api/live"


def test_a_session_keeps_a_bounded_buffer_and_drops_frames() -> None:
    session = LiveSession(3.0, 0.5, fps=5.0)
    second = np.zeros(SAMPLE_RATE, np.float32)
    face = np.zeros((8, 8, 3), np.uint8)
    due = []
    for k in range(20):
        session.add_audio(audio_message(second)[1:])
        for frame in range(30):  # a 30 frames/s camera
            session.add_frame(frame_message(k + frame / 30, face)[1:])
        due.append(session.due())
    # Nothing was handed over yet: only the last window is held, the rest counted as skipped.
    assert len(session.audio) == 3 * SAMPLE_RATE and session.audio_samples == 20 * SAMPLE_RATE
    assert 14 <= len(session.frames) <= 16  # 3 s at 5 frames/s
    assert session.dropped_frames >= 20 * 30 - 20 * 6
    assert all(due)  # a second per message: every one is a hop past the last update
    assert not session.due()
    window = session.cut()
    assert window.end == 20.0 and len(window.new_audio) == 48_000
    assert window.skipped_audio == 17 * SAMPLE_RATE and 14 <= len(window.new_frames) <= 16
    # What was handed over is not handed over again.
    session.add_audio(audio_message(second[:8000])[1:])
    again = session.cut()
    assert len(again.new_audio) == 8000 and again.skipped_audio == 0 and not again.new_frames
    with pytest.raises(ValueError, match="16-bit samples"):
        session.add_audio(b"\x00\x01\x02")


def test_a_stream_gets_every_path_twice_a_second(server: VavlServer) -> None:
    audio, frames = load_stream(require_shared_data() / CLIP, fps=5.0, seconds=4.0)
    run = stream(live_url(server), audio, frames, settle=2.0)
    assert not run.errors
    assert 5 <= len(run.updates) <= 9  # every 0.5 s of a 4 s stream
    times = [update["time"] for update in run.updates]
    assert times == sorted(times) and times[0] == pytest.approx(0.5, abs=0.11)
    last = run.updates[-1]
    assert set(last["paths"]) == {"audio", "visual", "audiovisual"}
    assert last["state"] == {"audio": "sound", "visual": "face"}
    assert 10 <= last["frames"] <= 16  # the last 3 s at 5 frames/s
    crop = Image.open(io.BytesIO(base64.b64decode(last["face_crop"].split(",", 1)[1])))
    assert crop.mode == "RGB" and min(crop.size) >= 48
    probabilities = last["paths"]["audiovisual"]["probabilities"]
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    assert len(run.latencies_ms) == len(run.updates)


def test_silence_and_no_face_are_said(server: VavlServer) -> None:
    blank = np.full((240, 320, 3), 90, np.uint8)
    frames = [(t / 5, blank) for t in range(10)]
    run = stream(live_url(server), np.zeros(2 * SAMPLE_RATE, np.float32), frames, settle=1.5)
    assert run.updates and not run.errors
    assert run.updates[-1]["state"] == {"audio": "silence", "visual": "no face"}
    assert run.updates[-1]["paths"] == {} and run.updates[-1]["face_crop"] is None


def test_bad_messages_get_an_error_and_the_stream_goes_on(server: VavlServer) -> None:
    from websockets.sync.client import connect

    with connect(live_url(server)) as socket:
        socket.recv(timeout=30)  # ready
        socket.send(b"X hello")
        assert "starts with b'A' (audio) or b'V' (video)" in socket.recv(timeout=30)
        socket.send(b"A\x00")  # half a sample
        assert "16-bit samples" in socket.recv(timeout=30)
        speech = read_audio(require_shared_data() / CLIP)
        assert speech is not None
        socket.send(audio_message(speech[: SAMPLE_RATE // 2]))
        assert '"type": "update"' in socket.recv(timeout=60)


def test_other_sites_cannot_open_the_stream(server: VavlServer) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus, match="403"):
        stream(live_url(server), None, [], origin="http://evil.example")


def _handshake_status(server: VavlServer, host: str) -> str:
    """The status line the live endpoint answers a WebSocket handshake naming ``host``."""
    with socket.create_connection(("127.0.0.1", server.app.port), timeout=10) as connection:
        connection.sendall(
            f"GET /api/live HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        return connection.recv(4096).decode("latin-1").split("\r\n")[0]


def test_a_page_of_another_name_cannot_open_the_stream(server: VavlServer) -> None:
    """DNS rebinding: a site whose name resolves to this machine sends its own name as Host."""
    assert _handshake_status(server, "evil.example").split()[1] == "403"
    assert _handshake_status(server, f"evil.example:{server.app.port}").split()[1] == "403"
    assert _handshake_status(server, f"127.0.0.1:{server.app.port}").split()[1] == "101"


def _fake_capture(clips: list[Path], folder: Path) -> tuple[Path, Path]:
    """The clips one after the other as a WAV (microphone) and a Y4M video at 15 frames/s
    (camera): the files Chromium's fake capture devices play, in a loop."""
    sounds, frames = [], []
    for clip in clips:
        audio, images = load_stream(clip, fps=15.0)
        assert audio is not None
        sounds.append(audio)
        frames += [image for _, image in images]
    wav = folder / "microphone.wav"
    with wave.open(str(wav), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SAMPLE_RATE)
        pcm = np.clip(np.concatenate(sounds), -1, 1) * 32767
        handle.writeframes(pcm.astype("<i2").tobytes())
    y4m = folder / "camera.y4m"
    height, width = (side - side % 2 for side in frames[0].shape[:2])
    with open(y4m, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F15:1 Ip A1:1 C420jpeg\n".encode())
        for image in frames:
            planes = Image.fromarray(image[:height, :width]).convert("YCbCr").split()
            luma, *chroma = (np.asarray(plane, np.float32) for plane in planes)
            handle.write(b"FRAME\n" + luma.astype(np.uint8).tobytes())
            for plane in chroma:  # 4:2:0: one chroma sample per 2 x 2 pixels
                quarter = plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))
                handle.write(np.round(quarter).astype(np.uint8).tobytes())
    return wav, y4m


def test_the_live_page_in_headless_chromium(server: VavlServer, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # Angry, then happy, then sad: the emotions shown should move.
    clips = [require_shared_data() / f"crema-d-samples/VideoFlash/1001_DFA_{e}_XX.flv"
             for e in ("ANG", "HAP", "SAD")]  # fmt: skip
    wav, y4m = _fake_capture(clips, tmp_path)
    browser = headless_chromium(
        "--window-size=1100,1400",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}", f"--use-file-for-fake-video-capture={y4m}",
        "--autoplay-policy=no-user-gesture-required",
    )  # fmt: skip
    try:
        browser.get(server.url + "#live")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: "default-model.pt" in b.find_element(By.ID, "model").text)
        browser.find_element(By.ID, "live-start").click()
        wait.until(lambda b: b.execute_script("return window.vavlLive.updates.length") >= 8)
        updates = browser.execute_script("return window.vavlLive.updates")
        # Read in one call: every update replaces the cards.
        shown = browser.execute_script(
            "return [...document.querySelectorAll('#live-paths .path')].map(c => c.dataset.path)"
        )
        assert set(shown) >= {"audio", "visual"}
        assert any(u["state"]["visual"] == "face" for u in updates)
        assert any(u["state"]["audio"] == "sound" for u in updates)
        # The emotions move: the probabilities shown differ from update to update.
        visual = [u["paths"]["visual"]["probabilities"] for u in updates if "visual" in u["paths"]]
        assert len({tuple(v.values()) for v in visual}) >= 3
        crop = browser.find_element(By.ID, "live-crop")
        assert browser.execute_script("return arguments[0].naturalWidth", crop) >= 48
        assert "updates" in browser.find_element(By.ID, "live-status").text
        screenshot = tmp_path / "live.png"
        browser.save_screenshot(str(screenshot))
        if os.environ.get("VAVL_SCREENSHOT_DIR"):  # to look at it
            shutil.copy(screenshot, os.environ["VAVL_SCREENSHOT_DIR"])
        browser.find_element(By.ID, "live-stop").click()
        wait.until(lambda b: b.find_element(By.ID, "live-status").text == "stopped")
    finally:
        browser.quit()
