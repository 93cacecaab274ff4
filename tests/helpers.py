"""Shared helpers for the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from vavl.config import ExperimentConfig, ModelConfig
from vavl.config_files import apply_overrides, load_config
from vavl.data import Item
from vavl.features.records import FileFeatures
from vavl.features.store import FeatureStore
from vavl.files import sha256_file

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# The folders of real clips the extraction fixture covers (the training sets, thousands of
# files, are read only by the tests that need them).
TEST_FOLDERS = ("crema-d-samples", "ravdess-audio-samples", "mead-samples", "face-video-samples")


def small_model_config(**changes: object) -> ModelConfig:
    """A VAVL small enough for unit tests, with every mechanism of the full one."""
    values: dict[str, object] = {
        "audio_dim": 12,
        "visual_dim": 10,
        "projection_dim": 8,
        "model_dim": 16,
        "audio_blocks": 2,
        "visual_blocks": 1,
        "shared_blocks": 1,
        "heads": 2,
        "kernel_size": 5,
        "head_hidden": (16, 8),
    }
    values.update(changes)
    return ModelConfig(**values)  # type: ignore[arg-type]


# A paper config made small for real clips: log-mel audio, 32 x 32 face pixels of the whole
# frame (no detection), a one-block VAVL, two epochs.
TINY_REAL_MODEL = [
    "features.audio=logmel", "features.audio_options={}", "features.visual=face-pixels",
    "features.visual_options={}", "features.faces.detector=none", "model.audio_dim=80",
    "model.visual_dim=1024", "model.projection_dim=16", "model.model_dim=32", "model.heads=2",
    "model.audio_blocks=1", "model.visual_blocks=1", "model.shared_blocks=1",
    "model.head_hidden=[32]", "training.epochs=2", "training.batch_size=6",
]  # fmt: skip


def demo_config(*overrides: str) -> ExperimentConfig:
    return apply_overrides(load_config("demo-synthetic"), ["training.progress=false", *overrides])


def unavailable(reason: str, required_by: str) -> NoReturn:
    """A test's resource is missing: a failure where ``$required_by`` is 1 (CI sets it), else a
    skip that says why."""
    import pytest

    if os.environ.get(required_by) == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def require_shared_data() -> Path:
    """The real clips, or a skip that says why; in CI (``VAVL_REQUIRE_SHARED_DATA=1``, set by
    .ci/run, which has them at ../shared/data) their absence is a failure, never a skip."""

    if not SHARED_DATA.is_dir():
        unavailable(
            f"real clips not found at {SHARED_DATA} (clone the project beside shared/)",
            "VAVL_REQUIRE_SHARED_DATA",
        )
    return SHARED_DATA


def headless_chromium(*arguments: str) -> Any:
    """A Selenium driver of headless Chromium with ``arguments``, or a skip that says why; in CI
    (``VAVL_REQUIRE_BROWSER=1``, set by .ci/run, whose ``make test`` installs Debian's chromium
    and chromium-driver) a missing browser is a failure, never a skip."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        unavailable(
            "Debian's chromium and chromium-driver are not installed (make test installs them)",
            "VAVL_REQUIRE_BROWSER",
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", *arguments):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(driver))


def shared_test_media() -> list[Path]:
    """Every media file of the shared test folders, in a fixed order."""
    from vavl.features.extraction import media_inputs

    data = require_shared_data()
    return [path for folder in TEST_FOLDERS for path in media_inputs(data / folder)]


def write_media(
    path: Path,
    frames: Iterable[np.ndarray] | None = None,
    fps: float = 25.0,
    audio: np.ndarray | None = None,
    sample_rate: int = 16_000,
    pix_fmt: str = "yuv420p",
    rotation: int = 0,
    times: Sequence[float] | None = None,
) -> Path:
    """Write an MP4 (H.264 + AAC) with the given RGB frames and/or mono audio.

    ``times`` gives each frame's presentation time in seconds (variable frame rate).
    """
    import av

    container = av.open(str(path), "w")
    video = None
    frame_list = None if frames is None else list(frames)
    if frame_list:
        height, width = frame_list[0].shape[:2]
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        if times is not None:
            video.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            if not hasattr(video, "set_display_rotation"):
                import pytest

                pytest.skip("writing rotation metadata needs PyAV >= 18 (reading it: >= 15)")
            video.set_display_rotation(rotation)
    sound = None
    if audio is not None:
        sound = container.add_stream("aac", rate=sample_rate)
        sound.layout = "mono"
    if video is not None and frame_list is not None:
        for index, image in enumerate(frame_list):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[index] * 1000), Fraction(1, 1000)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    if sound is not None and audio is not None:
        block = 1024
        for start in range(0, len(audio), block):
            chunk = np.ascontiguousarray(audio[start : start + block], dtype=np.float32)[None]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = sample_rate, start
            for packet in sound.encode(frame):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    container.close()
    return path


def real_face_frames(
    name: str = "W009_front_happy_level3_001.mp4", count: int = 10
) -> list[np.ndarray]:
    """RGB frames (256 x 256) of a real MEAD face crop, to build synthetic scenes from."""
    from vavl.media import VideoReader

    clip = require_shared_data() / "mead-samples" / "front256" / name
    return [frame.image for frame in VideoReader(clip)][:count]


def logmel_checkpoint(path: Path, *overrides: str) -> Path:
    """An untrained small VAVL on log-mel audio features (no weights to load, cheap to run):
    for tests of prediction mechanics, not of accuracy. ``overrides``: config ``KEY=VALUE``."""
    from vavl.checkpoint import Checkpoint, save_checkpoint
    from vavl.features import create_extractor
    from vavl.models import build_model
    from vavl.normalization import FeatureNormalizer

    config = apply_overrides(
        load_config("demo-synthetic"),
        [
            "data=null",
            "features.audio=logmel",
            "model.audio_dim=80",
            "training.progress=false",
            *overrides,
        ],
    )
    model = build_model(config.model, config.task.output_dim)
    extractor = create_extractor("logmel")
    checkpoint = Checkpoint(
        config=config,
        model_state=model.state_dict(),
        normalizer=FeatureNormalizer(),
        extractors={"audio": extractor.describe(options={}), "visual": None},
    )
    return save_checkpoint(checkpoint, path)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = 16_000) -> Path:
    """16-bit mono WAV of float samples in [-1, 1] (lossless for what it holds)."""
    import wave

    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def looped_speech_wav(path: Path, minutes: float) -> Path:
    """Real speech (a RAVDESS clip) looped to ``minutes``, as 48 kHz 16-bit stereo WAV."""
    import wave

    import av

    source = require_shared_data() / "ravdess-audio-samples/Actor_01/03-01-05-01-01-01-01.wav"
    with av.open(str(source)) as container:
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    pcm = np.repeat(samples.astype(np.int16)[:, None], 2, axis=1).tobytes()
    total = int(minutes * 60 * 48_000) * 4
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(2)
        handle.setsampwidth(2)
        handle.setframerate(48_000)
        written = 0
        while written < total:
            block = pcm[: total - written]
            handle.writeframes(block)
            written += len(block)
    return path


PEAK_PROBE = (
    "import sys\n"
    "from vavl.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "status = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
    "print('peak-kib', status, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def vavl_peak_rss_mib(arguments: list[str], source: Path | None = None) -> float:
    """Run ``vavl ARGUMENTS`` in a fresh process; its peak resident memory in MiB, FFmpeg's and
    torch's allocations included (VmHWM: this process image only, not what its parent held).
    ``source``: another checkout's ``src`` folder to run instead of the installed vavl."""
    import sys

    # A fixed mmap threshold: glibc otherwise moves large buffers onto its heap after the first
    # few are freed, and the peak then varies by tens of MiB from run to run.
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    if source is not None:
        environment["PYTHONPATH"] = str(source)
    result = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE, *arguments],
        capture_output=True,
        text=True,
        env=environment,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(line for line in result.stderr.splitlines() if line.startswith("peak-kib"))
    return int(line.split()[1]) / 1024


def stored_item(store: FeatureStore, media: Path, keys: dict[str, str], **fields: Any) -> Item:
    """The item of ``media``'s features in ``store`` under ``keys`` (modality -> key); every
    entry must be there."""
    features = FileFeatures(media, None)
    lacking = store.load_file(keys, features, sha256_file(media))
    assert not lacking, f"{media}: no {lacking} entry in {store.root}"
    return Item.from_features(fields.pop("id", str(media)), features, **fields)
