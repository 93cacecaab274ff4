"""Faces: BlazeFace decoding, the main-face track, aligned crops, on real clips."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import real_face_frames, require_shared_data, write_media
from vavl.cli import main
from vavl.faces import (
    Detection,
    FaceDetector,
    aligned_crop,
    anchor_centers,
    box_iou,
    main_face_track,
    weighted_nms,
)
from vavl.media import SAMPLE_RATE, VideoReader, read_audio

TALKING_HEADS = [
    "crema-d-samples/VideoFlash/1001_DFA_ANG_XX.flv",
    "face-video-samples/hdtf-sadtalker/WDA_KatieHill_000.mp4",
    "face-video-samples/liveportrait/d9.mp4",
    "face-video-samples/liveportrait/s32.mp4",
    "face-video-samples/voxceleb-pcavs/741400163.mp4",
    "face-video-samples/visualvoice/noisy_restaurant.mp4",
    "mead-samples/M030_sad_3_001.mp4",
    "mead-samples/crops256/fear.mp4",
]


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector("short")


def test_anchor_layouts_match_the_models() -> None:
    assert anchor_centers(128, [(8, 2), (16, 6)]).shape == (896, 2)
    full = anchor_centers(192, [(4, 1)])
    assert full.shape == (2304, 2) and full.min() > 0 and full.max() < 1
    assert np.allclose(full[0], [0.5 / 48, 0.5 / 48])


def test_weighted_nms_merges_overlaps_by_score() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    points = np.zeros((3, 6, 2), np.float32)
    scores = np.array([0.9, 0.3, 0.8], np.float32)
    kept = weighted_nms(boxes, points, scores, threshold=0.3)
    assert len(kept) == 2
    merged, _, score = kept[0]
    assert score == pytest.approx(0.9)
    assert merged[0] == pytest.approx((0 * 0.9 + 1 * 0.3) / 1.2)
    assert box_iou(boxes[:1], boxes[2:])[0, 0] == 0


@pytest.mark.parametrize("relative", TALKING_HEADS)
def test_the_main_face_is_found_on_most_frames(detector: FaceDetector, relative: str) -> None:
    frames = list(VideoReader(require_shared_data() / relative, fps=5, max_side=1280))
    track = main_face_track([detector.detect(frame.image) for frame in frames])
    found = [d for d in track if d is not None]
    assert len(found) >= 0.9 * len(frames)
    height, width = frames[0].image.shape[:2]
    for detection in found:
        x0, y0, x1, y1 = detection.box
        assert -0.1 * width < x0 < x1 < 1.1 * width and -0.1 * height < y0 < y1 < 1.1 * height
        right_eye, left_eye = detection.keypoints[:2]
        assert x0 < right_eye[0] < left_eye[0] < x1  # the subject's right eye is on image left


def _eye_line_degrees(detection: Detection) -> float:
    right_eye, left_eye = detection.keypoints[:2]
    return math.degrees(math.atan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0]))


def test_aligned_crops_level_tilted_faces(detector: FaceDetector, tmp_path: Path) -> None:
    """Frames tilted by 20 degrees either way give crops with level eyes and the face in the
    middle, found again by the detector in the crop; the contact sheet shows them."""
    size, rows = 96, []
    for relative in TALKING_HEADS:
        frames = list(VideoReader(require_shared_data() / relative, fps=1, max_side=1280))
        crops = []
        for index in np.linspace(0, len(frames) - 1, 4).astype(int):
            slopes = []
            for tilt in (-20, 20):
                image = Image.fromarray(frames[index].image).rotate(tilt, Image.Resampling.BILINEAR)
                tilted = np.asarray(image)
                (face,) = main_face_track([detector.detect(tilted)])
                assert face is not None, (relative, index, tilt)
                slopes.append(abs(_eye_line_degrees(face)))
                crops.append(aligned_crop(tilted, face, size=size))
            assert max(slopes) > 15, (relative, index)  # a head tilted itself is level one way
        for crop in crops:
            again = max(detector.detect(np.asarray(Image.fromarray(crop).resize((128, 128)))),
                        key=lambda found: found.area)  # fmt: skip
            assert abs(_eye_line_degrees(again)) < 8, relative
            assert np.abs(again.center / 128 - 0.5).max() < 0.15, relative
            assert 0.6 < (again.box[2] - again.box[0]) / 128 < 1.05, relative
        rows.append(np.concatenate(crops, axis=1))
    sheet = np.concatenate(rows, axis=0)
    Image.fromarray(sheet).save(tmp_path / "contact_sheet.png")
    assert sheet.shape == (size * len(TALKING_HEADS), size * 8, 3)


def test_a_second_person_never_swaps_in(detector: FaceDetector) -> None:
    big, small = (
        real_face_frames("W009_front_happy_level3_001.mp4", 12),
        real_face_frames("M030_front_angry_level3_001.mp4", 12),
    )
    scenes = []
    for index in range(12):
        canvas = np.full((360, 640, 3), 40, np.uint8)
        canvas[40:296, 20:276] = big[index]  # the main speaker, on the left
        if index >= 4:  # a smaller second face joins on the right
            second = np.asarray(Image.fromarray(small[index]).resize((180, 180)))
            canvas[90:270, 420:600] = second
        scenes.append(canvas)
    detections = [detector.detect(scene) for scene in scenes]
    assert sum(len(found) == 2 for found in detections) >= 6  # both faces are really seen
    track = main_face_track(detections)
    assert all(d is not None and d.center[0] < 320 for d in track)


def test_a_face_appearing_halfway_is_masked_before(detector: FaceDetector) -> None:
    frames = list(
        VideoReader(require_shared_data() / "face-video-samples/pyfeat/noface_face.mov", fps=5)
    )
    found = [d is not None for d in main_face_track([detector.detect(f.image) for f in frames])]
    first_face = found.index(True)
    assert 0.3 * len(frames) < first_face < 0.8 * len(frames)
    assert not any(found[:first_face]) and np.mean(found[first_face:]) > 0.8


def test_aligned_crops_level_the_eyes(detector: FaceDetector) -> None:
    frame = real_face_frames("W011_front_neutral_level1_001.mp4", 1)[0]
    canvas = Image.new("RGB", (512, 512), (30, 30, 30))
    canvas.paste(Image.fromarray(frame), (128, 128))
    tilted = np.asarray(canvas.rotate(25, resample=Image.Resampling.BILINEAR))
    (face,) = detector.detect(tilted)
    eyes = face.keypoints[1] - face.keypoints[0]
    assert abs(np.degrees(np.arctan2(eyes[1], eyes[0]))) > 15  # tilted in the frame
    crop = aligned_crop(tilted, face, size=224)
    (upright,) = detector.detect(crop)
    eyes = upright.keypoints[1] - upright.keypoints[0]
    assert abs(np.degrees(np.arctan2(eyes[1], eyes[0]))) < 5  # level in the crop
    assert 0.3 < (upright.box[2] - upright.box[0]) / 224 < 0.95  # face fills the crop, margin kept


def test_tracks_tolerate_a_few_missed_frames() -> None:
    def face(x: float) -> Detection:
        return Detection(
            np.array([x, 10, x + 50, 60], np.float32), 0.9, np.zeros((6, 2), np.float32)
        )

    frames: list[list[Detection]] = [[face(10)], [face(12)], [], [], [face(16)], [face(300)]]
    track = main_face_track(frames)
    assert [d is not None for d in track] == [True, True, False, False, True, False]


def test_videos_with_two_faces_list_both_and_use_the_one_asked_for() -> None:
    from vavl.features import create_extractor
    from vavl.features.pipeline import FeaturePipeline

    interview = require_shared_data() / "face-video-samples/visualvoice/interview.mp4"
    fer = create_extractor("fer", frame_rate=3)
    first = FeaturePipeline(None, fer).extract(interview)
    assert len(first.faces) == 2 and first.face_used == 0
    assert first.faces[0].frames >= 0.9 * first.frames_sampled  # both speakers stay in view
    assert "the most prominent" in first.face_reason
    second = FeaturePipeline(None, fer, face=1).extract(interview)
    assert second.face_used == 1 and "as asked" in second.face_reason
    assert first.visual is not None and second.visual is not None
    assert not np.allclose(first.visual.features, second.visual.features)  # another person
    single = FeaturePipeline(None, fer, face=1).extract(
        require_shared_data() / "mead-samples/front256/W009_front_happy_level3_001.mp4"
    )
    assert len(single.faces) == 1 and single.face_used == 0  # only one face: that one, said so
    assert "face 1 was asked for but only 1 tracked" in single.face_reason


def test_a_stored_face_is_used_only_for_the_face_it_is(tmp_path: Path) -> None:
    """`vavl extract` stores the most prominent face's features; `--store` then serves those
    to `--face 0` only, and `--face 1` (another person) is extracted afresh, as without the
    store: the face asked for is part of what the features are."""
    from vavl.features.store import FeatureStore
    from vavl.predict import Predictor

    interview = require_shared_data() / "face-video-samples/visualvoice/interview.mp4"
    frames = [f.image for f in VideoReader(interview, fps=25) if f.time < 6.0]
    sound = read_audio(interview)
    assert sound is not None
    clip = write_media(tmp_path / "two-people.mp4", frames, audio=sound[: 6 * SAMPLE_RATE])
    store = tmp_path / "store"
    assert main(["extract", str(clip), "--out", str(store), "--quiet"]) == 0
    features = FeatureStore(store)
    predictors = [Predictor.load(face=face) for face in (0, 1)]
    fresh = [p.predict(clip).paths["visual"].probabilities for p in predictors]
    assert fresh[0] != pytest.approx(fresh[1], abs=1e-3)  # the two faces do differ
    for face, predictor in enumerate(predictors):
        stored = predictor.predict(clip, store=features).paths["visual"].probabilities
        assert stored == pytest.approx(fresh[face], abs=1e-6), face


def test_a_face_keeps_its_track_across_cuts(tmp_path: Path) -> None:
    """A two-shot, a close-up of one of the two (elsewhere, larger: no box overlaps), the
    two-shot again: the tracker finds each face again by its looks, so two people, not four."""
    from vavl.features import create_extractor
    from vavl.features.pipeline import FeaturePipeline
    from vavl.media import write_video

    faces = require_shared_data() / "face-video-samples"
    clips = [faces / "hdtf-sadtalker/WDA_KatieHill_000.mp4", faces / "voxceleb-pcavs/00473.mp4"]
    first, second = ([f.image for f in VideoReader(c, fps=25)][:150] for c in clips)

    def two_shot(index: int) -> np.ndarray:
        canvas = Image.new("RGB", (640, 360))
        canvas.paste(Image.fromarray(first[index]).resize((240, 240)), (40, 60))
        canvas.paste(Image.fromarray(second[index]).resize((240, 240)), (360, 60))
        return np.asarray(canvas)

    def close_up(index: int) -> np.ndarray:
        canvas = Image.new("RGB", (640, 360))
        canvas.paste(Image.fromarray(first[index]).resize((360, 360)), (140, 0))
        return np.asarray(canvas)

    frames = [two_shot(i) for i in range(50)] + [close_up(i) for i in range(50, 100)]
    frames += [two_shot(i) for i in range(100, 150)]
    video = write_video(tmp_path / "cuts.mp4", frames, 25)
    found = FeaturePipeline(None, create_extractor("face-pixels")).extract(video)
    assert len(found.faces) == 2, found.faces
    katie = found.faces[0]  # in every sampled frame: the most prominent
    assert katie.frames >= 0.95 * found.frames_sampled and katie.centre[0] < 0.5
