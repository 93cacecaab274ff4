"""Decoding: real containers and codecs, timestamps, rotation, bounded memory, clear failures."""

from __future__ import annotations

import itertools
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from helpers import real_face_frames, require_shared_data, write_media
from vavl.errors import MediaError
from vavl.media import SAMPLE_RATE, VideoReader, iter_audio, probe, read_audio


@pytest.mark.parametrize(
    ("relative", "video_codec", "audio_codec"),
    [
        ("crema-d-samples/VideoFlash/1001_DFA_ANG_XX.flv", "vp6f", "mp3float"),
        ("face-video-samples/pyfeat/face_noface.mov", "hevc", "aac"),
        ("face-video-samples/hdtf-sadtalker/RD_Radio2_000.mp4", "mpeg4", "aac"),
        ("mead-samples/front256/M030_front_angry_level3_001.mp4", "h264", None),
        ("crema-d-samples/AudioMP3/1002_DFA_ANG_XX.mp3", None, "mp3float"),
        ("ravdess-audio-samples/Actor_01/03-01-05-01-01-01-01.wav", None, "pcm_s16le"),
    ],
)
def test_real_files_decode(relative: str, video_codec: str | None, audio_codec: str | None) -> None:
    path = require_shared_data() / relative
    info = probe(path)
    assert (info.video.codec if info.video else None) == video_codec
    assert (info.audio.codec if info.audio else None) == audio_codec
    audio = read_audio(path)
    if audio_codec is None:
        assert audio is None
    else:
        assert audio is not None and audio.dtype == np.float32 and audio.ndim == 1
        assert info.audio is not None
        duration = info.audio.duration or info.duration  # FLV gives only the container's
        assert duration is not None and abs(len(audio) / SAMPLE_RATE - duration) < 0.1
    frames = list(VideoReader(path, fps=10))
    if video_codec is None:
        assert frames == []
        return
    times = [frame.time for frame in frames]
    assert frames[0].image.dtype == np.uint8 and frames[0].image.shape[2] == 3
    assert all(b > a for a, b in itertools.pairwise(times))
    assert info.duration is not None
    assert abs(len(frames) - 10 * info.duration) <= 2  # sampled at about 10 per second


def test_variable_frame_rate_keeps_true_timestamps(tmp_path: Path) -> None:
    times = [0.0, 0.1, 0.15, 0.5, 0.52, 1.3]
    path = write_media(tmp_path / "vfr.mp4", real_face_frames(count=6), times=times)
    decoded = [frame.time for frame in VideoReader(path)]
    assert np.allclose(decoded, times, atol=1e-3)
    # Sampling at 4 per second keeps the first frame at or after each 0.25 s tick.
    assert [round(f.time, 2) for f in VideoReader(path, fps=4)] == [0.0, 0.5, 1.3]


def test_rotation_metadata_turns_frames_upright(tmp_path: Path) -> None:
    image = np.zeros((32, 64, 3), np.uint8)
    image[:, :16] = 255  # a white band on the left of a landscape frame
    path = write_media(tmp_path / "rotated.mp4", [image] * 3, rotation=90)
    frame = next(iter(VideoReader(path))).image
    assert frame.shape[:2] == (64, 32)  # displayed in portrait
    assert frame[-16:].mean() > 200 and frame[:16].mean() < 50  # the band is now at the bottom


def test_grayscale_video_becomes_rgb(tmp_path: Path) -> None:
    path = write_media(tmp_path / "gray.mp4", real_face_frames(count=3), pix_fmt="gray")
    image = next(iter(VideoReader(path))).image
    assert image.shape == (256, 256, 3)
    assert np.array_equal(image[..., 0], image[..., 1])


def test_4k_frames_are_downscaled_while_decoding(tmp_path: Path) -> None:
    path = write_media(tmp_path / "uhd.mp4", [np.zeros((2160, 3840, 3), np.uint8)] * 2)
    assert probe(path).video is not None and probe(path).video.width == 3840  # type: ignore[union-attr]
    assert next(iter(VideoReader(path, max_side=1280))).image.shape == (720, 1280, 3)


def test_long_audio_is_streamed_in_bounded_chunks(tmp_path: Path) -> None:
    minutes = 10
    tone = (0.1 * np.sin(np.arange(minutes * 60 * SAMPLE_RATE) * 0.05)).astype(np.float32)
    path = write_media(tmp_path / "long.m4a", audio=tone)
    del tone
    tracemalloc.start()
    total, longest = 0, 0
    for chunk in iter_audio(path, chunk_seconds=30.0):
        total += len(chunk)
        longest = max(longest, len(chunk))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert abs(total / SAMPLE_RATE - minutes * 60) < 0.2
    assert longest == 30 * SAMPLE_RATE
    assert peak < 20 * 2**20  # the whole decoded track would be 38 MiB


def test_spaces_and_non_ascii_in_paths(tmp_path: Path) -> None:
    source = require_shared_data() / "crema-d-samples/VideoFlash/1001_DFA_HAP_XX.flv"
    target = tmp_path / "dossier été" / "clip n°1 — joie.flv"
    target.parent.mkdir()
    shutil.copyfile(source, target)
    assert probe(target).video is not None and read_audio(target) is not None


def test_truncated_real_clip_decodes_what_it_has_and_says_so() -> None:
    reader = VideoReader(require_shared_data() / "mead-samples/crops256/sad.mp4")
    frames = list(reader)
    assert reader.decoded_frames == len(frames) == 110
    assert reader.problems == [
        "truncated: the header declares 157 video frames but only 110 decode"
    ]


def _one_line(path: Path) -> str:
    with pytest.raises(MediaError) as caught:
        probe(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def test_unreadable_files_fail_with_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    assert "empty file" in _one_line(empty)
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    assert "not MP4/MOV" in _one_line(noise)
    whole = write_media(tmp_path / "whole.mp4", real_face_frames(count=5)).read_bytes()
    # An MP4 whose index (moov atom, written last) never made it to disk.
    (tmp_path / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    assert "moov atom not found" in _one_line(tmp_path / "cut.mp4")
    assert "file not found" in _one_line(tmp_path / "missing.wav")
    assert "folder" in _one_line(tmp_path)


def test_files_with_one_modality_are_not_errors(tmp_path: Path) -> None:
    audio_only = write_media(tmp_path / "voice.mp4", audio=np.zeros(16000, np.float32))
    video_only = write_media(tmp_path / "face.mp4", real_face_frames(count=5))
    assert probe(audio_only).video is None and list(VideoReader(audio_only)) == []
    assert probe(video_only).audio is None and read_audio(video_only) is None
