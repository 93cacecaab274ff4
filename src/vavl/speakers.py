"""Who is speaking: how closely a face's lips move with the speech heard.

A linear canonical correlation analysis (CCA) between lip shapes (FaceMesh's 40 lip points, from
the ``facemesh`` extractor, with their frame-to-frame changes) and audio features (Whisper base's
third block, as the default model reads it) finds the directions in which the two move together.
A face's synchrony with a stretch of audio is the sum, over the first canonical pairs, of their
correlation there, at the best of a few frames' lag: the face that speaks scores highest.

The lips and the audio are standardised per recording (each face track, each file) before they
are projected, as the faces and voices of a corpus are for the emotion model.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
# Frames of lag between lips and sound tried (at 15 frames a second, up to 133 ms either way):
# on the benchmark's first form (one order per pair), 89.6% of the seconds against 89.0% with
# one frame either way.
LAGS = (-2, -1, 0, 1, 2)
SYNC_MODEL = Path(__file__).parent / "assets" / "speaker-sync.npz"

# FaceMesh's outer and inner lip contours.
LIP_POINTS = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415,
)  # fmt: skip
LIP_DIM = 2 * len(LIP_POINTS)  # a frame's lip shape: each point's x and y


def lip_shapes(facemesh: NDArray[np.floating]) -> FloatArray:
    """(frames, 80): each frame's lip points (x, y), centred on the lips, from ``facemesh``
    features (frames, 1404: 468 points already scaled by the eye-corner distance)."""
    points = np.asarray(facemesh, np.float64).reshape(len(facemesh), 468, 3)[:, LIP_POINTS, :2]
    return (points - points.mean(axis=1, keepdims=True)).reshape(len(facemesh), -1)


def motion(series: FloatArray) -> FloatArray:
    """The series with its frame-to-frame change beside it (frames, 2 x dim)."""
    change = np.gradient(series, axis=0) if len(series) > 1 else np.zeros_like(series)
    return np.concatenate([series, change], axis=1)


def standardised(series: FloatArray) -> FloatArray:
    """Each dimension to zero mean and unit variance over the recording."""
    return (series - series.mean(axis=0)) / (series.std(axis=0) + 1e-6)


def _inverse_root(covariance: FloatArray) -> FloatArray:
    values, vectors = np.linalg.eigh(covariance)
    return (vectors / np.sqrt(values)) @ vectors.T


def _correlations(first: FloatArray, second: FloatArray) -> FloatArray:
    first, second = first - first.mean(axis=0), second - second.mean(axis=0)
    scale = np.sqrt((first**2).sum(axis=0) * (second**2).sum(axis=0)) + 1e-9
    return (first * second).sum(axis=0) / scale


@dataclass(frozen=True)
class SyncModel:
    """Projections of lips (``lips``: 2 x 80 -> components) and audio (centred by
    ``audio_mean``, reduced by ``audio_basis``, then ``audio``: -> components)."""

    lips: FloatArray
    audio_mean: FloatArray
    audio_basis: FloatArray
    audio: FloatArray
    correlations: FloatArray  # canonical correlations on the fitting recordings, ridge-shrunk
    audio_key: str = ""  # the store key of the audio features it reads (they must be these)
    fitted_on: tuple[str, ...] = ()  # the recordings' names (what it has never seen is fair test)

    @classmethod
    def fit(
        cls,
        recordings: Sequence[tuple[FloatArray, FloatArray]],
        components: int = 3,
        audio_dims: int = 40,
        ridge: float = 0.1,
    ) -> SyncModel:
        """Fit on recordings of one face speaking: (lip shapes, audio features), frame-aligned.
        ``ridge`` keeps the covariances invertible on a few thousand frames."""
        lips = np.concatenate([standardised(motion(shapes)) for shapes, _ in recordings])
        audio = np.concatenate([standardised(np.asarray(sound)) for _, sound in recordings])
        audio_mean = audio.mean(axis=0)
        _, _, rows = np.linalg.svd(audio - audio_mean, full_matrices=False)
        basis = rows[:audio_dims].T
        reduced = (audio - audio_mean) @ basis  # centred, as the lips are (each standardised)
        frames = len(lips)
        whiten_lips = _inverse_root(lips.T @ lips / frames + ridge * np.eye(lips.shape[1]))
        whiten_audio = _inverse_root(
            reduced.T @ reduced / frames + ridge * np.eye(reduced.shape[1])
        )
        cross = lips.T @ reduced / frames
        left, values, right = np.linalg.svd(whiten_lips @ cross @ whiten_audio)
        return cls(
            lips=whiten_lips @ left[:, :components],
            audio_mean=audio_mean,
            audio_basis=basis,
            audio=whiten_audio @ right.T[:, :components],
            correlations=values[:components],
        )

    def project_lips(self, shapes: FloatArray) -> FloatArray:
        """A face track's canonical lip variates (frames, components)."""
        return standardised(motion(shapes)) @ self.lips

    def project_audio(self, features: FloatArray) -> FloatArray:
        """A recording's canonical audio variates (frames, components)."""
        return ((standardised(features) - self.audio_mean) @ self.audio_basis) @ self.audio

    @staticmethod
    def synchrony(lips: FloatArray, audio: FloatArray, lags: Sequence[int] = LAGS) -> float:
        """How closely projected ``lips`` follow projected ``audio`` over the same frames: the
        sum of the canonical pairs' correlations, at the best lag (frames; positive: the lips
        follow the sound, frame t + lag of the lips against frame t of the audio)."""
        frames = min(len(lips), len(audio))
        best = -np.inf
        for lag in lags:
            if frames - abs(lag) < 3:
                continue
            moved = lips[max(0, lag) : frames + min(0, lag)]
            heard = audio[max(0, -lag) : frames - max(0, lag)]
            best = max(best, float(_correlations(moved, heard).sum()))
        return best

    def save(self, path: str | Path) -> None:
        np.savez(
            path,
            lips=self.lips,
            audio_mean=self.audio_mean,
            audio_basis=self.audio_basis,
            audio=self.audio,
            correlations=self.correlations,
            about=np.array(json.dumps({"audio_key": self.audio_key, "fitted_on": self.fitted_on})),
        )

    @classmethod
    def load(cls, path: str | Path = SYNC_MODEL) -> SyncModel:
        with np.load(path) as saved:
            arrays = {name: saved[name] for name in saved.files if name != "about"}
            about = json.loads(str(saved["about"])) if "about" in saved.files else {}
        fitted_on = tuple(about.get("fitted_on", ()))
        return cls(**arrays, audio_key=about.get("audio_key", ""), fitted_on=fitted_on)


def nearest_frames(
    values: NDArray[np.floating], times: FloatArray, wanted: FloatArray
) -> FloatArray:
    """The rows of ``values`` (one per time in ``times``, ascending) nearest to ``wanted``."""
    later = np.clip(np.searchsorted(times, wanted), 0, len(times) - 1)
    earlier = np.clip(later - 1, 0, None)
    closer = np.abs(times[earlier] - wanted) < np.abs(times[later] - wanted)
    return np.asarray(values, np.float64)[np.where(closer, earlier, later)]


# What a second of a recording is, as far as who speaks in it goes.
SPEAKING = "speaking"  # one face's lips follow the speech heard
SILENCE = "nobody speaks"  # no speech is heard
UNCLEAR = "unclear"  # two faces follow the speech about as well: several speak, or neither
NO_LIPS = "lips not visible"  # speech, but no face shows its lips (profile, hand, mask, none)
OFF_SCREEN = "voice off-screen"  # speech that no visible face's lips follow
TURN_SECONDS = 1.0
# Each second is judged over itself and this much either side (on the benchmark's generated
# conversations, benchmarks/active_speaker.py, 1.5 s either side scored 3 points lower). Near
# a stretch's start or end the window slides inward rather than shrinking: every second is
# judged on as much media (1 point better on the benchmark).
CONTEXT_SECONDS = 1.0
MIN_SPEECH_SHARE = 0.3  # of a second's audio frames, for it to hold speech
MIN_LIP_SHARE = 0.6  # of the sampled frames around a second where a face's lips were seen
# Below this synchrony speech is a voice off-screen, and a lead below this over the next face
# is unclear: on the benchmark, 41% of the seconds of a voice neither face speaks are said so,
# and 2.1 points of the speakers' seconds (90.4% right with a forced choice, 88.3% with these).
MIN_SCORE = 0.4
MIN_MARGIN = 0.05


@dataclass(frozen=True)
class LipTrack:
    """One face track's lips over a stretch: the frame times where its lips were seen (FaceMesh
    found a face in its crop) and their shapes (frames, 80)."""

    times: FloatArray
    shapes: FloatArray


@dataclass(frozen=True)
class HeardAudio:
    """A stretch's audio as the synchrony model reads it: feature frames, their start times and
    whether each holds speech (loud enough)."""

    features: FloatArray
    times: FloatArray
    speech: NDArray[np.bool_]


@dataclass(frozen=True)
class Turn:
    """Who speaks in one second: a status (above) and, when someone does, the face's track.
    ``score`` is the best face's synchrony and ``margin`` its lead over the next face (when
    faces were compared). ``context`` is the seconds of media around it on its shorter side:
    of two answers for the same second (overlapping windows), the one that saw more around it
    is the surer."""

    start: float
    end: float
    status: str
    speaker: int | None = None
    context: float = 0.0
    score: float | None = None
    margin: float | None = None


class SpeakerFinder:
    """Decides, second by second, which face is speaking, or why none can be said to.

    ``min_score``: the synchrony below which speech is not attributed to a face (it follows no
    visible lips); ``min_margin``: how far the best face must lead the next."""

    def __init__(
        self, model: SyncModel, min_score: float = MIN_SCORE, min_margin: float = MIN_MARGIN
    ) -> None:
        self.model, self.min_score, self.min_margin = model, min_score, min_margin

    def turns(
        self,
        audio: HeardAudio,
        frames: FloatArray,
        lips: Mapping[int, LipTrack],
        start: float,
        end: float,
    ) -> list[Turn]:
        """One turn per second of [start, end) (the last may be shorter); ``frames`` are the
        times of every video frame sampled there, ``lips`` each face track's."""
        heard = self.model.project_audio(audio.features) if len(audio.features) > 2 else None
        faces = {
            track: (seen.times, self.model.project_lips(seen.shapes), heard_at)
            for track, seen in lips.items()
            if len(seen.times) > 2 and heard is not None
            for heard_at in [nearest_frames(heard, audio.times, seen.times)]
        }
        turns = []
        for second, stop in seconds_of(start, end):
            inside = (audio.times >= second) & (audio.times < stop)
            around = judged_over(second, stop, start, end)
            context = max(0.0, min(second - start, end - stop, CONTEXT_SECONDS))
            if not inside.any() or audio.speech[inside].mean() < MIN_SPEECH_SHARE:
                turns.append(Turn(second, stop, SILENCE, context=context))
            else:
                scores = self._scores(faces, frames, around)
                turns.append(self._decide(second, stop, scores, context))
        return turns

    def _scores(
        self,
        faces: Mapping[int, tuple[FloatArray, FloatArray, FloatArray]],
        frames: FloatArray,
        around: tuple[float, float],
    ) -> dict[int, float]:
        """Each face's synchrony over ``around``, for the faces whose lips were seen in most of
        the frames sampled there."""
        sampled = int(((frames >= around[0]) & (frames < around[1])).sum())
        scores = {}
        for track, (times, lips, heard) in faces.items():
            kept = (times >= around[0]) & (times < around[1])
            if kept.sum() >= max(3, MIN_LIP_SHARE * sampled):
                scores[track] = self.model.synchrony(lips[kept], heard[kept])
        return scores

    def _decide(self, start: float, end: float, scores: dict[int, float], context: float) -> Turn:
        if not scores:
            return Turn(start, end, NO_LIPS, context=context)
        ranked = sorted(scores, key=lambda track: -scores[track])
        best = scores[ranked[0]]
        margin = best - scores[ranked[1]] if len(ranked) > 1 else None
        if best < self.min_score:
            status, speaker = OFF_SCREEN, None
        elif margin is not None and margin < self.min_margin:
            status, speaker = UNCLEAR, None
        else:
            status, speaker = SPEAKING, ranked[0]
        lead = None if margin is None else round(margin, 4)
        return Turn(start, end, status, speaker, context, round(best, 4), lead)


def seconds_speaking(turns: Sequence[Turn], track: int) -> float:
    """How long ``track``'s face was seen speaking in ``turns``."""
    return sum(turn.end - turn.start for turn in turns if turn.speaker == track)


def seconds_of_speech(turns: Sequence[Turn]) -> float:
    """How long speech was heard in ``turns``, whoever spoke it."""
    return sum(turn.end - turn.start for turn in turns if turn.status != SILENCE)


def judged_over(second: float, stop: float, start: float, end: float) -> tuple[float, float]:
    """The stretch a second [second, stop) of [start, end) is judged over: CONTEXT_SECONDS
    either side, slid inward (not cut) where it would pass start or end."""
    low, high = second - CONTEXT_SECONDS, stop + CONTEXT_SECONDS
    if low < start:
        low, high = start, min(end, high + start - low)
    if high > end:
        low, high = max(start, low - (high - end)), end
    return low, high


def seconds_of(start: float, end: float) -> list[tuple[float, float]]:
    """[start, end) cut at the file's whole seconds, so that the turns of overlapping windows
    fall on the same grid; a piece shorter than a quarter of a second at either end is left
    out (unless it is all there is)."""
    cuts = [start, *range(math.ceil(start + 1e-6), math.ceil(end - 1e-6)), end]
    pieces = [(a, b) for a, b in itertools.pairwise(cuts) if b > a + 1e-6]
    kept = [(a, b) for a, b in pieces if b - a > 0.25 * TURN_SECONDS]
    return kept or pieces[:1]


def merged_turns(turns: Sequence[Turn]) -> list[Turn]:
    """One turn per second of the file from overlapping windows' turns: for each, the one that
    saw the most around it."""
    surest: dict[int, Turn] = {}
    for turn in turns:
        key = math.floor(turn.start + 1e-6)
        if key not in surest or turn.context > surest[key].context:
            surest[key] = turn
    return [surest[key] for key in sorted(surest)]
