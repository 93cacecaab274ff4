"""vavl serve: the HTTP API with a real client, the page in headless Chromium, upload safety,
the server's defences (timeouts, Host and Origin, bounded connections, its own work folder)."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from helpers import headless_chromium, require_shared_data
from vavl.conversation import two_person_video
from vavl.files import LOCK_NAME
from vavl.media import VideoReader
from vavl.predict import Predictor
from vavl.serve import ServeSettings, VavlServer, create_server, sniff_media_type


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load(preview_crops=4)


@contextlib.contextmanager
def running(server: VavlServer) -> Iterator[VavlServer]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def server(predictor: Predictor, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VavlServer]:
    settings = ServeSettings(port=0, max_upload_mb=2, window=1.0, hop=0.5)
    with running(create_server(predictor, settings, tmp_path_factory.mktemp("work"))) as server:
        yield server


@pytest.fixture
def strict(predictor: Predictor, tmp_path: Path) -> Iterator[VavlServer]:
    """A server with a 2 s timeout and at most 4 connections."""
    settings = ServeSettings(port=0, max_upload_mb=2, timeout=2, max_connections=4)
    with running(create_server(predictor, settings, tmp_path)) as server:
        yield server


def uploads_in(server: VavlServer) -> list[Path]:
    """What the server's work folder holds besides its claim on it."""
    return [path for path in server.app.work_dir.iterdir() if path.name != LOCK_NAME]


def raw_connection(server: VavlServer) -> socket.socket:
    return socket.create_connection(server.server_address, timeout=20)


def closed_by_server(connection: socket.socket) -> float:
    """Seconds until the server closes ``connection`` (reading whatever it says first)."""
    started = time.monotonic()
    while connection.recv(65536):
        pass
    return time.monotonic() - started


def request(
    server: VavlServer, method: str, route: str, body: bytes | None = None, name: str = ""
) -> tuple[int, dict[str, Any]]:
    headers = {"X-Filename": name} if name else {}
    call = urllib.request.Request(server.url + route, body, headers, method=method)
    try:
        with urllib.request.urlopen(call, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def decoded_image(data_url: str, kind: str) -> Image.Image:
    prefix = f"data:image/{kind};base64,"
    assert data_url.startswith(prefix)
    import base64

    return Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix) :])))


def test_media_types_are_told_by_content() -> None:
    data = require_shared_data()
    real = {
        "crema-d-samples/VideoFlash/1001_DFA_ANG_XX.flv": "flv",
        "crema-d-samples/AudioMP3/1002_DFA_SAD_XX.mp3": "mp3",
        "mead-samples/M030_sad_3_001.mp4": "mp4",
        "face-video-samples/pyfeat/face_noface.mov": "mp4",
    }
    for path, kind in real.items():
        assert sniff_media_type((data / path).read_bytes()[:64]) == kind, path
    wav = next((data / "ravdess-audio-samples").rglob("*.wav"))
    assert sniff_media_type(wav.read_bytes()[:64]) == "wav"
    assert sniff_media_type(b"\x1a\x45\xdf\xa3\x01\x00") == "mkv"
    assert sniff_media_type(b"RIFF\x00\x00\x00\x00AVI LIST") == "avi"
    assert sniff_media_type(b"fLaC\x00\x00\x00\x22") == "flac"
    assert sniff_media_type(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR") == "png"  # photos too
    assert sniff_media_type(b"\xff\xd8\xff\xe0\x00\x10JFIF") == "jpg"
    for other in (b"", b"<html><body>", b"%PDF-1.7", b"GIF89a", b"PK\x03\x04"):
        assert sniff_media_type(other) is None


def test_the_api_predicts_every_path_with_crops_and_timeline(server: VavlServer) -> None:
    status, health = request(server, "GET", "api/health")
    assert status == 200 and health["model"] == "default-model.pt"
    assert health["notice"] and "non-commercial" in health["notice"]
    clip = require_shared_data() / "crema-d-samples/VideoFlash/1001_DFA_ANG_XX.flv"
    # The name says text; the content says flv: the content decides.
    status, result = request(server, "POST", "api/predict", clip.read_bytes(), "clip.txt")
    assert status == 200, result
    prediction = result["prediction"]
    assert result["file"] == prediction["source"] == "clip.txt"
    assert set(prediction["paths"]) == {"audio", "visual", "audiovisual"}
    assert prediction["modalities"] == {"audio": "found", "visual": "found"}
    assert len(result["face_crops"]) == 4
    assert all(decoded_image(c, "jpeg").mode == "RGB" for c in result["face_crops"])
    assert decoded_image(result["timeline_png"], "png").size[0] > 300
    assert result["timeline"]["source"] == "clip.txt"
    windows = result["timeline"]["windows"]
    assert len(windows) >= 3 and all("audiovisual" in w["paths"] for w in windows)
    assert uploads_in(server) == []  # the upload is gone


def test_an_audio_file_gets_the_audio_path_and_says_why(server: VavlServer) -> None:
    audio = require_shared_data() / "crema-d-samples/AudioMP3/1002_DFA_SAD_XX.mp3"
    status, result = request(server, "POST", "api/predict", audio.read_bytes(), "sad.mp3")
    assert status == 200, result
    prediction = result["prediction"]
    assert set(prediction["paths"]) == {"audio"} and prediction["best_path"] == "audio"
    assert "visual" in prediction["fallback"] and result["face_crops"] == []


def test_a_photo_gets_the_visual_path_as_predict_gives_it(
    server: VavlServer, predictor: Predictor, tmp_path: Path
) -> None:
    clip = require_shared_data() / "mead-samples/M030_sad_3_001.mp4"
    frame = next(iter(VideoReader(clip, fps=1))).image
    photo = tmp_path / "face.png"
    Image.fromarray(frame).save(photo)
    status, result = request(server, "POST", "api/predict", photo.read_bytes(), "face.png")
    assert status == 200, result
    prediction = result["prediction"]
    assert set(prediction["paths"]) == {"visual"} and prediction["best_path"] == "visual"
    assert prediction["modalities"]["visual"] == "found" and len(result["face_crops"]) == 1
    local = predictor.predict(photo).paths["visual"].probabilities
    assert prediction["paths"]["visual"]["probabilities"] == pytest.approx(local, abs=1e-5)
    assert uploads_in(server) == []


def test_bad_uploads_get_one_line_and_leave_nothing(server: VavlServer) -> None:
    data = require_shared_data()
    status, answer = request(server, "POST", "api/predict", b"just some text\n", "notes.mp4")
    assert status == 415 and answer["error"].startswith(
        "notes.mp4: not an audio, video or image file"
    )
    cut = (data / "mead-samples/M030_sad_3_001.mp4").read_bytes()[:50_000]
    status, answer = request(server, "POST", "api/predict", cut, "../../outside/cut.mp4")
    assert status == 422
    assert answer["error"].startswith("cut.mp4: cannot be read as audio or video: truncated")
    assert str(server.app.work_dir) not in answer["error"]
    status, answer = request(server, "POST", "api/predict", b"", "empty.wav")
    assert status == 400 and "empty" in answer["error"]
    # Over the limit: refused from the headers alone, before any of the body is read.
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    connection.putrequest("POST", "/api/predict")
    connection.putheader("Content-Length", str(50 * 2**20))
    connection.putheader("X-Filename", "huge.mp4")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"] == (
        "huge.mp4: 50.0 MB is over this server's limit of 2 MB"
    )
    connection.close()
    assert request(server, "GET", "../../etc/passwd")[0] == 404
    assert request(server, "POST", "api/other", b"x")[0] == 404
    assert uploads_in(server) == []
    assert not (server.app.work_dir.parent / "outside").exists()


def test_the_serve_command_binds_locally_and_cleans_up(tmp_path: Path) -> None:
    kept = tmp_path / "upload-mine.mp4"  # a user's file, named like the server's uploads
    kept.write_bytes(b"mine")
    process = subprocess.Popen(
        [sys.executable, "-m", "vavl.cli", "serve", "--port", "0", "--work-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("vavl: serving http://127.0.0.1:"), line
        url = line.split()[2]
        work_dir = Path(line.split("uploads in ")[1].split(";")[0])
        assert work_dir.is_dir() and work_dir.parent == tmp_path
        with urllib.request.urlopen(url + "api/health", timeout=30) as response:
            assert json.loads(response.read())["status"] == "ok"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert b'<input type="file"' in response.read()
    finally:
        process.send_signal(signal.SIGTERM)  # as a service manager stops it
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors[-2000:]
    assert "Traceback" not in errors
    assert not work_dir.exists()  # the server's own folder is gone, the user's files are not
    assert kept.read_bytes() == b"mine" and list(tmp_path.iterdir()) == [kept]


def test_a_killed_servers_folder_is_removed_by_the_next_server(
    predictor: Predictor, tmp_path: Path
) -> None:
    """kill -9 leaves the work folder behind; the next server on the same --work-dir removes
    it, and neither a running server's folder nor a user's folder named alike."""
    command = [sys.executable, "-m", "vavl.cli", "serve", "--port", "0", "--work-dir"]
    killed = subprocess.Popen([*command, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert killed.stdout is not None
    abandoned = Path(killed.stdout.readline().split("uploads in ")[1].split(";")[0])
    (abandoned / "upload-half.mp4").write_bytes(b"half an upload")
    killed.kill()
    killed.wait(timeout=30)
    users = tmp_path / "vavl-serve-mine"
    users.mkdir()
    settings = ServeSettings(port=0)
    with running(create_server(predictor, settings, tmp_path)) as first:
        assert not abandoned.exists()
        with running(create_server(predictor, settings, tmp_path)) as second:
            assert first.app.work_dir.is_dir() and second.app.work_dir.is_dir()
    assert sorted(tmp_path.iterdir()) == [users]


def test_the_page_in_headless_chromium(server: VavlServer, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = headless_chromium("--window-size=1100,2300")
    try:
        browser.get(server.url)
        wait = WebDriverWait(browser, 180)
        wait.until(lambda b: "default-model.pt" in b.find_element(By.ID, "model").text)
        assert "non-commercial" in browser.find_element(By.ID, "notice").text
        clip = require_shared_data() / "crema-d-samples/VideoFlash/1001_DFA_HAP_XX.flv"
        browser.find_element(By.ID, "file").send_keys(str(clip))
        browser.find_element(By.ID, "go").click()
        wait.until(lambda b: b.find_element(By.ID, "status").text.startswith("done"))
        cards = browser.find_elements(By.CSS_SELECTOR, ".path")
        assert [c.get_attribute("data-path") for c in cards] == ["audio", "visual", "audiovisual"]
        assert browser.find_element(By.ID, "title").text == clip.name
        crops = browser.find_elements(By.CSS_SELECTOR, "#crops img")
        assert len(crops) == 4
        timeline = browser.find_element(By.ID, "timeline-png")
        assert browser.execute_script("return arguments[0].naturalWidth", timeline) > 300
        screenshot = tmp_path / "serve.png"
        browser.save_screenshot(str(screenshot))
        if os.environ.get("VAVL_SCREENSHOT_DIR"):  # to look at it
            shutil.copy(screenshot, os.environ["VAVL_SCREENSHOT_DIR"])
        assert Image.open(screenshot).size[0] >= 1000

        # Two people: a card each, with their face's answer and theirs while speaking.
        faces = require_shared_data() / "face-video-samples"
        pair = [faces / "hdtf-sadtalker/WDA_KatieHill_000.mp4", faces / "voxceleb-pcavs/00473.mp4"]
        two = two_person_video(pair, "side by side", tmp_path / "two-people.mp4").path
        browser.find_element(By.ID, "file").send_keys(str(two))
        browser.find_element(By.ID, "go").click()
        wait.until(lambda b: b.find_element(By.ID, "status").text == f"done: {two.name}")
        people = browser.find_elements(By.CSS_SELECTOR, ".person")
        assert [person.get_attribute("data-person") for person in people] == ["0", "1"]
        for person in people:
            titles = [t.text for t in person.find_elements(By.CSS_SELECTOR, ".path h3")]
            assert titles[0] == "face" and titles[1].startswith("while speaking: "), titles
        assert browser.find_element(By.ID, "who-speaks").text.startswith("Who speaks: person")
        browser.save_screenshot(str(tmp_path / "serve-people.png"))
        if os.environ.get("VAVL_SCREENSHOT_DIR"):
            shutil.copy(tmp_path / "serve-people.png", os.environ["VAVL_SCREENSHOT_DIR"])

        # A file that is not media: the page shows the server's one-line reason.
        text = tmp_path / "notes.mp4"
        text.write_text("not a video")
        browser.find_element(By.ID, "file").send_keys(str(text))
        browser.find_element(By.ID, "go").click()
        wait.until(
            lambda b: "not an audio, video or image file" in b.find_element(By.ID, "status").text
        )
        assert browser.find_element(By.ID, "status").get_attribute("class") == "error"
    finally:
        browser.quit()
    assert uploads_in(server) == []


def test_idle_and_slow_clients_are_cut_off(strict: VavlServer) -> None:
    silent = raw_connection(strict)  # connects and says nothing
    slow = raw_connection(strict)  # sends its request head a little at a time
    slow.sendall(b"GET /api/health HTTP/1.1\r\nHo")
    assert closed_by_server(silent) < 10
    assert closed_by_server(slow) < 10
    # Idle after a response (keep-alive): closed too.
    kept = http.client.HTTPConnection(*strict.server_address, timeout=20)
    kept.request("GET", "/api/health")
    assert kept.getresponse().read()
    assert kept.sock is not None and closed_by_server(kept.sock) < 10


def test_a_stalled_upload_is_cut_off_and_leaves_no_file(strict: VavlServer) -> None:
    clip = require_shared_data() / "crema-d-samples/VideoFlash/1001_DFA_ANG_XX.flv"
    body = clip.read_bytes()
    connection = raw_connection(strict)
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{strict.server_address[1]}\r\n"
        f"Content-Length: {len(body)}\r\nX-Filename: stalled.flv\r\n\r\n"
    )
    connection.sendall(head.encode() + body[: len(body) // 2])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not uploads_in(strict):
        time.sleep(0.05)
    assert uploads_in(strict), "the upload was not streamed to disk"
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"stalled.flv: the upload stalled" in answer
    assert uploads_in(strict) == []


def test_connections_are_bounded(strict: VavlServer) -> None:
    idle = [raw_connection(strict) for _ in range(4)]
    time.sleep(0.2)
    port = strict.server_address[1]
    try:
        assert _status(strict, "GET", {"Host": f"127.0.0.1:{port}"}) == 503
    finally:
        for connection in idle:
            connection.close()
    time.sleep(0.2)
    assert _status(strict, "GET", {"Host": f"127.0.0.1:{port}"}) == 200


def _status(server: VavlServer, method: str, headers: dict[str, str], body: bytes = b"") -> int:
    connection = http.client.HTTPConnection(*server.server_address, timeout=60)
    connection.putrequest(method, "/api/predict" if method == "POST" else "/", skip_host=True)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


def test_foreign_hosts_and_other_sites_are_refused(
    server: VavlServer, caplog: pytest.LogCaptureFixture
) -> None:
    port = server.server_address[1]
    ours = {"Host": f"127.0.0.1:{port}"}
    assert _status(server, "GET", ours) == 200
    assert _status(server, "GET", {"Host": f"localhost:{port}"}) == 200
    assert _status(server, "GET", {"Host": "evil.example"}) == 400  # DNS rebinding
    assert _status(server, "GET", {}) == 400  # no Host at all
    audio = (require_shared_data() / "crema-d-samples/AudioMP3/1002_DFA_SAD_XX.mp3").read_bytes()
    evil = {**ours, "Origin": "http://evil.example", "Content-Type": "text/plain"}
    with caplog.at_level(logging.INFO, logger="vavl"):
        assert _status(server, "POST", evil, audio) == 403  # a form on another site
        assert _status(server, "POST", {**ours, "Origin": "http://127.0.0.1:1"}, audio) == 403
    assert "Origin 'http://evil.example' is another site" in caplog.text
    assert _status(server, "POST", {**ours, "Origin": f"http://127.0.0.1:{port}"}, audio) == 200
    assert uploads_in(server) == []


def test_more_names_can_be_allowed(predictor: Predictor, tmp_path: Path) -> None:
    settings = ServeSettings(port=0, allowed_hosts=["emotions.lan"])
    with running(create_server(predictor, settings, tmp_path)) as allowing:
        assert _status(allowing, "GET", {"Host": "emotions.lan:8000"}) == 200
        assert _status(allowing, "GET", {"Host": "other.lan"}) == 400


def test_a_client_that_goes_away_leaves_no_traceback(
    server: VavlServer, caplog: pytest.LogCaptureFixture
) -> None:
    body = (require_shared_data() / "crema-d-samples/VideoFlash/1001_DFA_ANG_XX.flv").read_bytes()
    with caplog.at_level(logging.DEBUG):
        connection = raw_connection(server)
        head = (
            f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{server.server_address[1]}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        connection.sendall(head.encode() + body[:1000])
        time.sleep(0.3)
        connection.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "went away" not in caplog.text:
            time.sleep(0.05)
    assert "the client went away during the upload" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert uploads_in(server) == []


def _trickle(server: VavlServer, stop: threading.Event, answers: list[bytes]) -> None:
    """An upload that announces a megabyte and sends a byte every 0.3 s (slowloris)."""
    connection = raw_connection(server)
    port = server.server_address[1]
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Length: 1000000\r\nX-Filename: trickle.mp4\r\n\r\n"
    )
    try:
        connection.sendall(head.encode() + b"\x00\x00\x00\x18ftypisom")
        while not stop.is_set():
            connection.sendall(b"\x00")
            time.sleep(0.3)
    except OSError:  # cut off by the server
        pass
    connection.settimeout(5)
    with contextlib.suppress(OSError):
        answers.append(connection.recv(65536))
    connection.close()


def test_floods_of_slow_uploads_and_websockets_leave_a_fresh_client_served(
    predictor: Predictor, tmp_path: Path
) -> None:
    """15 uploads trickling a byte at a time and 20 live WebSockets against a server of 16
    connections: uploads and WebSockets share one budget (14 here) and the rest is kept, so a
    fresh client is answered at once; a trickle is cut off as too slow after --timeout."""
    from websockets.sync.client import connect

    settings = ServeSettings(port=0, timeout=2, max_connections=16)
    stop, answers = threading.Event(), []
    with running(create_server(predictor, settings, tmp_path)) as server:
        trickles = [
            threading.Thread(target=_trickle, args=(server, stop, answers), daemon=True)
            for _ in range(15)
        ]
        for thread in trickles:
            thread.start()
        time.sleep(0.5)
        url = server.url.replace("http://", "ws://") + "api/live"
        opened, refused = [], 0
        for _ in range(20):
            try:
                socket_ = connect(url, open_timeout=5)
                socket_.recv(timeout=5)  # "ready": accepted
                opened.append(socket_)
            except Exception:  # closed with 1013 (busy) before or after the handshake
                refused += 1
        try:
            assert server.app.heavy <= settings.heavy_connections < 16
            assert refused >= 20 - settings.heavy_connections
            started = time.monotonic()
            assert request(server, "GET", "api/health")[0] == 200
            assert time.monotonic() - started < 2
            started = time.monotonic()
            host = {"Host": f"127.0.0.1:{server.server_address[1]}"}
            assert _status(server, "POST", host) == 503  # the budget is full: said at once
            assert time.monotonic() - started < 2
        finally:
            for socket_ in opened:
                socket_.close()
        time.sleep(3)  # past --timeout: the trickles are too slow
        stop.set()
        for thread in trickles:
            thread.join(timeout=10)
    assert any(b"408" in answer and b"too slow" in answer for answer in answers), answers
