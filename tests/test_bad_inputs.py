"""The bad-input catalogue: every kind of broken, odd or hostile input gets its row and one line,
and the batch goes on (``vavl extract`` and ``vavl predict`` over one folder of them)."""

from __future__ import annotations

import builtins
import csv
import io
import json
import os
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from helpers import real_face_frames, require_shared_data, write_media
from vavl.cli import main
from vavl.files import printable

SPEECH = "crema-d-samples/AudioMP3/1002_DFA_ANG_XX.mp3"
CREMA_D_FLV = "crema-d-samples/VideoFlash/1001_DFA_HAP_XX.flv"


def _speech() -> np.ndarray:
    from vavl.media import read_audio

    speech = read_audio(require_shared_data() / SPEECH)
    assert speech is not None
    return speech


def _wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1, width: int = 2) -> Path:
    scale = {2: 32767, 3: 8388607}[width]
    ints = np.clip(samples, -1, 1) * scale
    data = np.repeat(ints.astype(np.int32)[:, None], channels, axis=1)
    raw = data.astype("<i4").tobytes()
    if width == 3:  # the three low bytes of each little-endian int32
        raw = b"".join(raw[i : i + 3] for i in range(0, len(raw), 4))
    else:
        raw = data.astype("<i2").tobytes()
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(raw)
    return path


def _faststart_mp4(path: Path, frames: list[np.ndarray], audio: np.ndarray) -> Path:
    container = av.open(str(path), "w", options={"movflags": "faststart"})
    video = container.add_stream("libx264", rate=25)
    video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
    for image in frames:
        for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in video.encode():
        container.mux(packet)
    container.close()
    return path


def _without_box(data: bytes, box: bytes) -> bytes:
    """The MP4 bytes with one top-level box cut out."""
    offset = 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        if data[offset + 4 : offset + 8] == box:
            return data[:offset] + data[offset + size :]
        offset += max(size, 8)
    raise AssertionError(f"no {box!r} box")


def catalogue(folder: Path) -> dict[str, str]:
    """Write every case into ``folder``; name -> what should happen ('ok' or a bit of the
    error)."""
    rng = np.random.default_rng(0)
    faces = real_face_frames(count=25)
    speech = _speech()
    expected: dict[str, str] = {}

    def case(name: str, outcome: str, make: Callable[[Path], Any]) -> None:
        make(folder / name)
        expected[name] = outcome

    case("good.mp4", "ok", lambda p: write_media(p, faces, audio=speech))
    case("zero.mp4", "empty file", lambda p: p.touch())
    for suffix in (".mp4", ".wav", ".mp3", ".mkv", ".jpg", ".png", ".flac"):
        case(f"random{suffix}", "cannot be read", lambda p: p.write_bytes(rng.bytes(4096)))
    # FFmpeg finds a FLAC frame header in random bytes: a stream that decodes to nothing.
    expected["random.flac"] = "audio too short (0.00 s)"
    case("text.mp4", "cannot be read", lambda p: p.write_text("not a video, just words\n" * 50))
    whole = write_media(folder.parent / "source.mp4", faces, audio=speech).read_bytes()
    case("truncated.mp4", "moov atom not found", lambda p: p.write_bytes(whole[: len(whole) // 2]))
    fast = _faststart_mp4(folder.parent / "fast.mp4", faces, speech).read_bytes()
    case("truncated-faststart.mp4", "ok", lambda p: p.write_bytes(fast[: len(fast) * 2 // 3]))
    case(
        "moov-stripped.mp4",
        "moov atom not found",
        lambda p: p.write_bytes(_without_box(whole, b"moov")),
    )
    case("no-audio.mp4", "ok", lambda p: write_media(p, faces))
    case("no-video.m4a", "ok", lambda p: write_media(p, audio=speech))
    case(
        "no-face.mp4",
        "ok",
        lambda p: write_media(p, [np.full((96, 128, 3), 40, np.uint8)] * 10, audio=speech),
    )
    case("blink.mp4", "too short", lambda p: write_media(p, faces[:1], audio=speech[:800]))

    def cut(source: Path) -> Callable[[Path], Any]:
        return lambda p: p.write_bytes(source.read_bytes()[: source.stat().st_size // 3])

    # Files cut short: what decodes is predicted, with a note that the header promised more.
    case("truncated.wav", "ok", cut(_wav(folder.parent / "whole.wav", speech, 16000)))
    case("truncated.flv", "ok", cut(require_shared_data() / CREMA_D_FLV))
    case("silence-20min.wav", "ok", lambda p: _wav(p, np.zeros(20 * 60 * 8000), 8000))
    case("silent.wav", "ok", lambda p: _wav(p, np.zeros(3 * 16000), 16000))
    case("stereo-8k.wav", "ok", lambda p: _wav(p, speech[::2], 8000, channels=2))
    case("hifi-96k-24bit.wav", "ok", lambda p: _wav(p, np.repeat(speech, 6), 96_000, width=3))
    uhd = []
    for _ in range(4):
        frame = np.zeros((2160, 3840, 3), np.uint8)
        frame[800:1312, 1600:2112] = np.kron(faces[0], np.ones((2, 2, 1), np.uint8))
        uhd.append(frame)
    case("uhd-4k.mp4", "ok", lambda p: write_media(p, uhd, fps=4))
    case("one-frame.mp4", "ok", lambda p: write_media(p, faces[:1], fps=1))
    case("face.png", "ok", lambda p: Image.fromarray(faces[0]).save(p))
    case("visage ünï — gris.mp4", "ok", lambda p: write_media(p, faces, audio=speech))
    case(
        "-leading dash.mp3",
        "ok",
        lambda p: p.write_bytes((require_shared_data() / SPEECH).read_bytes()),
    )
    case(
        "new\nline.mp3",
        "ok",
        lambda p: p.write_bytes((require_shared_data() / SPEECH).read_bytes()),
    )
    name = os.fsdecode(b"caf\xe9-latin1.mp3")
    case(name, "ok", lambda p: p.write_bytes((require_shared_data() / SPEECH).read_bytes()))
    case("broken-link.mp4", "broken symbolic link", lambda p: p.symlink_to(folder / "gone.mp4"))
    case("folder.mp4", "a folder", lambda p: (p.mkdir(), (p / "inside.txt").write_text("x")))
    locked = folder / "locked-folder"
    locked.mkdir()
    (locked / "inside.mp3").write_bytes((require_shared_data() / SPEECH).read_bytes())
    expected["locked-folder"] = "a folder that cannot be read (permission denied)"
    case(
        "unreadable.mp3",
        "permission denied",
        lambda p: p.write_bytes((require_shared_data() / SPEECH).read_bytes()),
    )
    case(
        "really-audio.mp4",
        "ok",
        lambda p: p.write_bytes((require_shared_data() / SPEECH).read_bytes()),
    )
    corrupt = bytearray(whole)
    corrupt[len(corrupt) // 3 : len(corrupt) // 3 + 2000] = rng.bytes(2000)
    case("corrupt-middle.mp4", "ok", lambda p: p.write_bytes(bytes(corrupt)))
    not_a_number = np.where(np.arange(16_000) % 100 == 0, np.nan, 0.1).astype(np.float32)
    case("nan-samples.wav", "nan or infinite samples", lambda p: _float_wav(p, not_a_number))
    case("bomb.png", "image too large", _decompression_bomb)
    case("fifo.mp3", "a named pipe (fifo)", lambda p: os.mkfifo(p))
    case("loop.mp4", "a loop of symbolic links", lambda p: p.symlink_to(p))
    case(
        "mp3-named.jpg",
        "ok",  # what the bytes are, whatever the name says (as the server does)
        lambda p: p.write_bytes((require_shared_data() / SPEECH).read_bytes()),
    )
    return expected


def _float_wav(path: Path, samples: np.ndarray) -> None:
    """A 32-bit float WAV (the format that can hold NaN)."""
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_f32le", rate=16_000, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
        frame.rate = 16_000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)


def _decompression_bomb(path: Path) -> None:
    """A 20000 x 20000 PNG of a few hundred KB (decoded, 1.2 GB)."""
    Image.new("L", (20_000, 20_000)).save(path, optimize=True)


def _refuse(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, suffix: str) -> None:
    """``owner.name(path, ...)`` raises PermissionError for paths ending in ``suffix``."""
    real = getattr(owner, name)

    def guarded(path: Any = ".", *args: Any, **kwargs: Any) -> Any:
        if str(path).endswith(suffix):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(owner, name, guarded)


@pytest.fixture
def no_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """``unreadable.mp3`` cannot be opened, ``locked-folder`` cannot be listed (as root,
    permissions alone cannot show it)."""
    _refuse(monkeypatch, builtins, "open", "unreadable.mp3")
    _refuse(monkeypatch, av, "open", "unreadable.mp3")
    _refuse(monkeypatch, os, "scandir", "locked-folder")


def test_every_bad_input_gets_its_row_and_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_reading: None
) -> None:
    folder = tmp_path / "inputs"
    folder.mkdir()
    expected = catalogue(folder)
    store = tmp_path / "store"
    code = main(["extract", str(folder), "--out", str(store), "--audio", "logmel", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err
    with open(store / "report.csv", newline="", encoding="utf-8") as f:  # valid UTF-8
        rows = {Path(row["path"]).name: row for row in csv.DictReader(f)}
    assert set(rows) == {printable(name) for name in expected}
    for name, outcome in expected.items():
        row = rows[printable(name)]
        said = " ".join(row[key] for key in ("error", "audio", "visual")).lower()
        if outcome == "ok":
            # Files with the same bytes are one store entry: the first extracted, the rest cached.
            assert row["status"] in ("extracted", "cached"), (name, row["error"])
        else:
            assert outcome in said and row["status"] in ("failed", "extracted"), (name, row)
            assert "\n" not in row["error"] and "Traceback" not in row["error"]
    assert rows["silence-20min.wav"]["audio"] == "missing: silent audio track"
    assert rows["no-face.mp4"]["visual"].startswith("missing: no face found")
    assert rows["face.png"]["visual"] == "ok" and rows["really-audio.mp4"]["audio"] == "ok"

    # vavl predict over the same files: each failure is one line, the good ones are predicted.
    # (20 minutes of silence cost half a minute of Whisper: extraction covered it.)
    skipped = ("folder.mp4", "locked-folder", "silence-20min.wav")
    media = [str(folder / name) for name in sorted(expected) if name not in skipped]
    out = tmp_path / "predictions.csv"
    code = main(["predict", *media, "--format", "csv", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err
    errors = [line for line in captured.err.splitlines() if "vavl: " in line]
    failed = [n for n, o in expected.items() if o != "ok" and n not in (*skipped, "random.flac")]
    for name in failed:
        assert sum(name.split("\n")[0] in line for line in errors) >= 1, name
    text = out.read_text(encoding="utf-8")  # valid UTF-8
    statuses = [row["status"] for row in csv.DictReader(io.StringIO(text))]
    assert statuses.count("failed") == len(failed)
    assert "nothing to predict from" in statuses  # the silent file
    rows_by_file = {Path(r["file"]).name: r for r in csv.DictReader(io.StringIO(text))}
    for name in ("truncated-faststart.mp4", "truncated.wav", "truncated.flv"):
        # Kept in the CSV (older PyAV may note a damaged packet first).
        assert "truncated: the header declares" in rows_by_file[name]["notes"], name
    # The same files as JSON: valid JSON (no NaN) in valid UTF-8.
    out = tmp_path / "predictions.json"
    assert main(["predict", *media, "--format", "json", "--out", str(out)]) == 0
    capsys.readouterr()

    def no_nan(constant: str) -> None:
        raise AssertionError(f"{constant} in the JSON")

    document = json.loads(out.read_text(encoding="utf-8"), parse_constant=no_nan)
    assert len(document["predictions"]) + len(document["failed"]) == len(media)
