"""Who speaks, through the whole pipeline: generated two-person videos of real talking faces
(their truth known by construction), and the decisions' honesty when no one can be said to."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import SHARED_DATA
from vavl.conversation import LAYOUTS, Conversation, two_person_video
from vavl.features import create_extractor
from vavl.features.pipeline import FeaturePipeline
from vavl.features.records import FileFeatures
from vavl.people import SPEAKING_TIME, person_items
from vavl.speakers import (
    NO_LIPS,
    OFF_SCREEN,
    SILENCE,
    SPEAKING,
    UNCLEAR,
    HeardAudio,
    LipTrack,
    SpeakerFinder,
    SyncModel,
    Turn,
    judged_over,
    merged_turns,
    nearest_frames,
)

FACES = SHARED_DATA / "face-video-samples"


@pytest.fixture(scope="module")
def unseen_pair() -> list[Path]:
    """Two talking-head clips with speech that the shipped lip-sync model was not fitted on."""
    model = SyncModel.load()
    candidates = [
        FACES / "hdtf-sadtalker" / "WDA_KatieHill_000.mp4",
        FACES / "voxceleb-pcavs" / "741400163.mp4",
    ]
    assert not {c.name for c in candidates} & set(model.fitted_on)
    return candidates


def speaker_pipeline(finder: SpeakerFinder | None = None) -> FeaturePipeline:
    """The default model's audio features; faces as grey pixels (who speaks reads lips only)."""
    return FeaturePipeline(
        create_extractor("whisper-base", blocks=3, pool=2),
        create_extractor("face-pixels"),
        face="speaker",
        speakers=finder or SpeakerFinder(SyncModel.load()),
    )


def whose_tracks(found: FileFeatures, conversation: Conversation) -> dict[int, int]:
    return {face.track: conversation.person_at(face.centre) for face in found.faces}


@pytest.fixture(scope="module")
def conversations(
    unseen_pair: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> list[tuple[Conversation, FileFeatures]]:
    folder = tmp_path_factory.mktemp("conversations")
    pipeline = speaker_pipeline()
    made = []
    for number, layout in enumerate(LAYOUTS):
        pair = unseen_pair if number % 2 == 0 else unseen_pair[::-1]
        conversation = two_person_video(pair, layout, folder / f"{number}.mp4")
        made.append((conversation, pipeline.extract(conversation.path)))
    return made


def test_the_speaking_face_is_chosen_in_nine_of_ten_seconds(
    conversations: list[tuple[Conversation, FileFeatures]],
) -> None:
    right = seconds = 0
    for conversation, found in conversations:
        assert len(found.faces) == 2 and len(found.people) == 2
        whose = whose_tracks(found, conversation)
        assert sorted(whose.values()) == [0, 1]  # one track per person
        for turn in found.turns:
            if turn.end - turn.start < 0.5:
                continue  # the last fraction of a second
            seconds += 1
            truth = conversation.speaker_at((turn.start + turn.end) / 2)
            right += turn.speaker is not None and whose[turn.speaker] == truth
    assert seconds >= 20
    assert right / seconds >= 0.9, f"{right} of {seconds}"


def test_each_persons_audio_is_what_they_said(
    conversations: list[tuple[Conversation, FileFeatures]],
) -> None:
    """The speaking item of a person holds the audio frames of their own seconds (as often as
    the speaker is chosen right), and the file's face is the one that spoke most."""
    theirs: list[bool] = []
    for conversation, found in conversations:
        whose = whose_tracks(found, conversation)
        assert found.audio is not None
        speaking = [(t, item) for t, kind, item in person_items(found) if kind == SPEAKING_TIME]
        assert len(speaking) == 2
        for track, item in speaking:
            assert item.audio_valid is not None
            heard = np.asarray(found.audio.times)[item.audio_valid]
            theirs += [conversation.speaker_at(t) == whose[track] for t in heard]
        chosen = found.faces[found.face_used or 0].track
        spoken = {t: sum(turn.speaker == t for turn in found.turns) for t in whose}
        assert spoken[chosen] == max(spoken.values())  # the face used is who spoke most
        assert found.face_choice is not None and "active speaker" in found.face_choice
    assert np.mean(theirs) >= 0.9


def test_a_voice_off_screen_is_given_to_a_face_less_often_than_a_speakers(
    unseen_pair: list[Path],
    conversations: list[tuple[Conversation, FileFeatures]],
    tmp_path: Path,
) -> None:
    voice = FACES / "hdtf-sadtalker" / "RD_Radio2_000.mp4"  # neither face's
    conversation = two_person_video(unseen_pair, LAYOUTS[0], tmp_path / "v.mp4", off_screen=voice)
    found = speaker_pipeline().extract(conversation.path)

    def given(turns: list[Turn]) -> float:
        spoken = [t for t in turns if t.status != SILENCE and t.end - t.start >= 0.5]
        return sum(t.speaker is not None for t in spoken) / len(spoken)

    heard = [t for _, seen in conversations for t in seen.turns]
    assert given(heard) >= 0.9
    assert given(found.turns) <= 0.75, [t.status for t in found.turns]
    assert any(t.status == OFF_SCREEN for t in found.turns)


def test_silence_is_nobody_speaking(unseen_pair: list[Path], tmp_path: Path) -> None:
    conversation = two_person_video(unseen_pair, LAYOUTS[1], tmp_path / "c.mp4")
    from vavl.media import VideoReader, write_video

    frames = [frame.image for frame in VideoReader(conversation.path)]
    quiet = write_video(tmp_path / "quiet.mp4", frames, 25, np.zeros(16_000 * 4, np.float32))
    found = speaker_pipeline().extract(quiet)
    assert found.turns and {t.status for t in found.turns} == {SILENCE}
    assert found.face_choice == "the most prominent: no face was seen speaking"


# The decisions themselves, on features made to order.


def fitted_finder(rng: np.random.Generator) -> tuple[SpeakerFinder, np.ndarray, np.ndarray]:
    """A finder fitted on recordings whose lips and audio share a hidden cause; a new
    recording of that kind (lips, audio)."""
    from test_speakers import NOISY, recording

    lips_mixing, audio_mixing = rng.standard_normal((4, 80)), rng.standard_normal((4, 60))
    model = SyncModel.fit([recording(rng, lips_mixing, audio_mixing, NOISY) for _ in range(6)])
    lips, audio = recording(rng, lips_mixing, audio_mixing, 1.0)
    return SpeakerFinder(model, min_score=0.3, min_margin=0.1), lips, audio


def test_each_status_is_said_when_it_holds() -> None:
    rng = np.random.default_rng(3)
    finder, lips, audio = fitted_finder(rng)
    times = np.arange(len(audio)) / 25.0
    speech = np.ones(len(audio), bool)
    speech[: 25 * 2] = False  # the first two seconds are quiet
    heard = HeardAudio(audio, times, speech)
    stranger = LipTrack(times, rng.standard_normal(lips.shape))
    speaker = LipTrack(times, lips)
    end = float(times[-1]) + 0.04
    turns = finder.turns(heard, times, {0: stranger, 1: speaker}, 0.0, end)
    statuses = [t.status for t in turns]
    assert statuses[:2] == [SILENCE, SILENCE]
    assert sum(t.speaker == 1 for t in turns[2:]) >= 0.8 * len(turns[2:])
    twins = finder.turns(heard, times, {0: speaker, 1: speaker}, 0.0, end)
    assert {t.status for t in twins[2:]} == {UNCLEAR}  # two faces that match alike
    strangers = finder.turns(heard, times, {0: stranger}, 0.0, end)
    assert sum(t.status == OFF_SCREEN for t in strangers[2:]) >= 0.7 * len(strangers[2:])
    hidden = LipTrack(times[:10], lips[:10])  # lips seen in 10 frames only
    assert {t.status for t in finder.turns(heard, times, {0: hidden}, 0.0, end)[2:]} == {NO_LIPS}


def test_of_overlapping_windows_the_turn_that_saw_more_is_kept() -> None:
    early = Turn(4.0, 5.0, SPEAKING, 1, context=0.0)
    central = Turn(4.0, 5.0, UNCLEAR, None, context=1.0)
    later = Turn(5.0, 6.0, SILENCE, context=0.5)
    assert merged_turns([later, early, central]) == [central, later]


def test_a_second_near_either_end_is_judged_over_as_much_media_as_any() -> None:
    assert judged_over(3.0, 4.0, 0.0, 8.0) == (2.0, 5.0)
    assert judged_over(0.0, 1.0, 0.0, 8.0) == (0.0, 3.0)  # slid inward, not cut to (0, 2)
    assert judged_over(7.0, 8.0, 0.0, 8.0) == (5.0, 8.0)
    assert judged_over(0.0, 1.0, 0.0, 1.5) == (0.0, 1.5)  # all there is
    finder, lips, audio = fitted_finder(np.random.default_rng(4))
    times = np.arange(len(audio)) / 25.0
    heard = HeardAudio(audio, times, np.ones(len(audio), bool))
    first = finder.turns(heard, times, {0: LipTrack(times, lips)}, 0.0, 8.0)[0]
    over = times < 3.0
    projected = nearest_frames(finder.model.project_audio(audio), times, times)
    expected = SyncModel.synchrony(finder.model.project_lips(lips)[over], projected[over])
    assert first.score == pytest.approx(expected, abs=1e-4)
