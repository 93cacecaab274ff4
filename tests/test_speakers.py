"""Who is speaking: the lip-audio synchrony model finds the face that moves with the sound."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vavl.speakers import LIP_POINTS, SyncModel, lip_shapes, motion, standardised

FRAMES = 400
NOISY = 12.0  # noise far above the shared cause in every frame: 50 frames decide


def recording(
    rng: np.random.Generator, lips_mixing: np.ndarray, audio_mixing: np.ndarray, noise: float = 0.8
) -> tuple[np.ndarray, np.ndarray]:
    """One face speaking: lip shapes (frames, 80) and audio features (frames, 60) that both
    follow a slow hidden cause (what is said) through their own mixing, each with its own noise;
    the lips sit somewhere of their own in the picture."""
    speech = np.cumsum(rng.standard_normal((FRAMES, 4)), axis=0) * 0.3
    speech -= speech.mean(axis=0)
    audio = speech @ audio_mixing + noise * rng.standard_normal((FRAMES, 60))
    lips = speech @ lips_mixing + noise * rng.standard_normal((FRAMES, 80)) + rng.normal(size=80)
    return lips, audio


def test_the_face_that_moves_with_the_sound_is_chosen_on_new_recordings() -> None:
    """Behaviour on noisy recordings (the CCA's arithmetic itself is checked below)."""
    rng = np.random.default_rng(0)
    lips_mixing, audio_mixing = rng.standard_normal((4, 80)), rng.standard_normal((4, 60))
    fitting = [recording(rng, lips_mixing, audio_mixing, NOISY) for _ in range(6)]
    model = SyncModel.fit(fitting)
    assert model.lips.shape == (160, 3) and model.audio.shape == (40, 3)
    chosen = windows = 0
    for _ in range(10):  # new speakers: a voice, its face, and someone else's talking face
        speaker_lips, audio = recording(rng, lips_mixing, audio_mixing, NOISY)
        other_lips, _ = recording(rng, lips_mixing, audio_mixing, NOISY)
        heard = model.project_audio(audio)
        faces = [model.project_lips(speaker_lips), model.project_lips(other_lips)]
        for start in range(0, FRAMES - 25, 25):
            span = slice(start, start + 50)
            scores = [SyncModel.synchrony(face[span], heard[span]) for face in faces]
            chosen += int(np.argmax(scores) == 0)
            windows += 1
    assert chosen / windows > 0.8, chosen / windows  # 0.93 here; random lip projections 0.58


def test_a_positive_lag_pairs_later_lips_with_earlier_sound() -> None:
    rng = np.random.default_rng(4)
    sound = rng.standard_normal((200, 3))
    lips = np.roll(sound, 2, axis=0)  # the lips show at t + 2 what was heard at t
    following = SyncModel.synchrony(lips, sound, lags=(2,))
    assert following > 2.9 and SyncModel.synchrony(lips, sound, lags=(-2,)) < 0.5
    assert SyncModel.synchrony(lips, sound, lags=(-2, 0, 2)) == following


def test_the_canonical_variates_correlate_as_fitted_and_not_across_pairs() -> None:
    """On the fitting data, the k-th lip variate correlates with the k-th audio variate by the
    k-th canonical correlation, and with no other (what CCA is, checked directly)."""
    rng = np.random.default_rng(1)
    lips_mixing, audio_mixing = rng.standard_normal((4, 80)), rng.standard_normal((4, 60))
    data = [recording(rng, lips_mixing, audio_mixing) for _ in range(4)]
    model = SyncModel.fit(data, ridge=1e-3)
    lips = np.concatenate([model.project_lips(shapes) for shapes, _ in data])
    audio = np.concatenate([model.project_audio(sound) for _, sound in data])
    cross = np.corrcoef(lips.T, audio.T)[:3, 3:]
    np.testing.assert_allclose(np.diag(cross), model.correlations, atol=0.02)
    assert np.abs(cross - np.diag(np.diag(cross))).max() < 0.02
    assert model.correlations[0] > 0.8 and np.all(np.diff(model.correlations) <= 0)


def test_lip_shapes_ignore_where_the_mouth_is_and_keep_how_it_opens() -> None:
    rng = np.random.default_rng(2)
    mesh = rng.standard_normal((5, 468, 3))
    moved = mesh + np.array([0.3, -0.2, 0.1])  # the whole face elsewhere
    np.testing.assert_allclose(lip_shapes(moved.reshape(5, -1)), lip_shapes(mesh.reshape(5, -1)))
    opened = mesh.copy()
    opened[:, LIP_POINTS[25], 1] += 0.5  # the lower inner lip drops
    assert not np.allclose(lip_shapes(opened.reshape(5, -1)), lip_shapes(mesh.reshape(5, -1)))
    assert motion(np.arange(6.0).reshape(3, 2)).shape == (3, 4)
    np.testing.assert_allclose(standardised(rng.normal(3, 2, (50, 2))).std(axis=0), 1, atol=1e-5)


def test_a_saved_model_loads_the_same(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    lips_mixing, audio_mixing = rng.standard_normal((4, 80)), rng.standard_normal((4, 60))
    model = SyncModel.fit([recording(rng, lips_mixing, audio_mixing) for _ in range(3)])
    model.save(tmp_path / "sync.npz")
    loaded = SyncModel.load(tmp_path / "sync.npz")
    for name in ("lips", "audio_mean", "audio_basis", "audio", "correlations"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
