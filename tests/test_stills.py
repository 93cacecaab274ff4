"""Still images are media: photos and pre-cropped face datasets give the visual path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import real_face_frames, require_shared_data
from vavl.cli import main
from vavl.config import FaceSettings
from vavl.config_data import CorpusConfig
from vavl.corpora import load_corpus
from vavl.errors import MediaError
from vavl.features import create_extractor
from vavl.features.pipeline import FeaturePipeline
from vavl.images import image_format, read_image
from vavl.media import VideoReader, iter_audio, probe
from vavl.predict import Predictor

POSED_STILLS = ("0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "0-f1-su-ph.jpg")


def _fer_stills(count: int, split: str = "test") -> list[Path]:
    folder = require_shared_data() / "fer2013-subset" / split
    return [
        path for label in sorted(folder.iterdir()) for path in sorted(label.glob("*.jpg"))[:count]
    ]


def test_images_are_one_frame_videos_without_sound(tmp_path: Path) -> None:
    face = real_face_frames(count=1)[0]
    for name, save_as in (("face.jpg", "JPEG"), ("face.png", "PNG"), ("face.webp", "WEBP"),
                          ("face.bmp", "BMP"), ("named-like-a-video.mp4", "PNG")):  # fmt: skip
        path = tmp_path / name
        Image.fromarray(face).save(path, format=save_as)
        info = probe(path)
        assert info.still and info.audio is None and info.duration is None, name
        assert info.video is not None and (info.video.width, info.video.height) == (256, 256)
        assert image_format(path) == save_as
        (frame,) = list(VideoReader(path))
        assert frame.image.shape == (256, 256, 3) and frame.time == 0.0
        assert list(iter_audio(path)) == []


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :20] = 255  # white on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(wide).save(path, exif=exif.tobytes(), quality=95)
    upright = read_image(path)
    assert upright.shape == (40, 20, 3)
    assert upright[:20].mean() > 200 and upright[20:].mean() < 50  # the white half is on top now
    assert probe(path).video is not None and probe(path).video.height == 40  # type: ignore[union-attr]


def test_a_damaged_image_is_one_clear_error(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(real_face_frames(count=1)[0]).save(buffer, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[:60])
    with pytest.raises(MediaError, match=r"cut\.png: cannot be read as an image"):
        list(VideoReader(path))


def test_posed_stills_and_tight_face_crops_have_a_face() -> None:
    pipeline = FeaturePipeline(create_extractor("logmel"), create_extractor("fer"))
    stills = require_shared_data() / "face-video-samples" / "pyfeat"
    for name in POSED_STILLS:
        features = pipeline.extract(stills / name)
        assert features.visual is not None and features.frames_with_face == 1, name
        assert features.missing == {"audio": "a still image has no sound"}
        assert features.visual.features.shape == (1, 128)
    # FER2013: 48 x 48 grey faces that fill the image; the detector needs them padded.
    crops = _fer_stills(3)
    found = [pipeline.extract(path).visual is not None for path in crops]
    assert sum(found) >= 0.9 * len(crops)


def test_a_group_photo_gives_several_faces() -> None:
    """Five people: faces too small for the short-range detector are added from the full-range
    one, and the short-range box that took two heads side by side for one face gives way to
    them (it covered 4% of the picture and answered 'sad' for two smiling people)."""
    photo = require_shared_data() / "face-video-samples" / "pyfeat" / "multi_face.jpg"
    fer = create_extractor("fer")
    first = FeaturePipeline(None, fer).extract(photo)
    assert len(first.faces) == 5 and first.face_used == 0
    assert all(face.area < 0.025 for face in first.faces)  # each one face, none two
    third = FeaturePipeline(None, fer, face=2).extract(photo)
    assert third.face_used == 2 and "as asked" in third.face_reason
    assert first.visual is not None and third.visual is not None
    assert not np.allclose(first.visual.features, third.visual.features)  # another person


def test_whole_image_as_the_face_for_pre_cropped_datasets() -> None:
    extractor = create_extractor("fer")
    whole = FeaturePipeline(None, extractor, FaceSettings(detector="none"))
    blank = np.full((48, 48, 3), 128, np.uint8)  # no face at all: still "the face" when told so
    features = whole.extract_arrays(frames=[blank])
    assert features.visual is not None and features.duration is None
    assert features.frames_with_face == 1 and features.visual.valid.tolist() == [True]
    detected = FeaturePipeline(None, extractor).extract_arrays(frames=[blank])
    assert (
        detected.visual is None
        and "no face found in 1 sampled frames" in detected.missing["visual"]
    )
    crop = _fer_stills(1)[0]
    assert whole.extract(crop).visual is not None


def test_image_folders_are_visual_corpora() -> None:
    root = require_shared_data() / "fer2013-subset" / "test"
    corpus = load_corpus(CorpusConfig(format="folder", root=root, name="fer"))
    assert len(corpus.clips) == 700
    assert {m for clip in corpus.clips for m in clip.media} == {"visual"}
    assert {clip.label for clip in corpus.clips} == {
        "angry", "disgust", "fear", "happy", "neutral", "sad", "surprise",
    }  # fmt: skip


def test_predict_a_photo_and_a_pre_cropped_face(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = require_shared_data() / "face-video-samples" / "pyfeat" / POSED_STILLS[0]
    crop = _fer_stills(1)[0]
    png = tmp_path / "crop.png"
    Image.open(crop).save(png)
    assert main(["predict", str(photo), str(png), "--format", "json"]) == 0
    import json

    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert [set(p["paths"]) for p in predictions] == [{"visual"}, {"visual"}]
    assert main(["predict", str(png), "--detector", "none", "--format", "json"]) == 0
    (whole,) = json.loads(capsys.readouterr().out)["predictions"]
    assert set(whole["paths"]) == {"visual"} and whole["frames_with_face"] == 1
    image = np.asarray(Image.open(photo).convert("RGB"))
    result = Predictor.load().predict(image)
    assert set(result.paths) == {"visual"} and result.best_path == "visual"
