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

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

# FaceMesh's outer and inner lip contours.
LIP_POINTS = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415,
)  # fmt: skip


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
    def synchrony(lips: FloatArray, audio: FloatArray, lags: Sequence[int] = (-1, 0, 1)) -> float:
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
        )

    @classmethod
    def load(cls, path: str | Path) -> SyncModel:
        with np.load(path) as saved:
            return cls(**{name: saved[name] for name in saved.files})
