"""Answers per person: the default model on a generated two-person video (each face's answer,
who spoke and for how long, each one's voice only while they spoke), as a table, JSON, CSV
and a timeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import SHARED_DATA
from vavl.cli import main
from vavl.conversation import Conversation, two_person_video
from vavl.errors import ConfigError
from vavl.predict import Predictor
from vavl.results import Prediction, render_predictions

FACES = SHARED_DATA / "face-video-samples"
PAIR = [
    FACES / "hdtf-sadtalker" / "WDA_KatieHill_000.mp4",
    FACES / "voxceleb-pcavs" / "741400163.mp4",
]


@pytest.fixture(scope="module")
def conversation(tmp_path_factory: pytest.TempPathFactory) -> Conversation:
    folder = tmp_path_factory.mktemp("people")
    return two_person_video(PAIR, "side by side", folder / "two.mp4")


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load()


@pytest.fixture(scope="module")
def prediction(predictor: Predictor, conversation: Conversation) -> Prediction:
    return predictor.predict(conversation.path)


def test_every_person_gets_their_own_answers(
    prediction: Prediction, conversation: Conversation
) -> None:
    assert [p.person for p in prediction.people] == [0, 1]
    assert sorted(p.where for p in prediction.people) == ["left", "right"]
    for person in prediction.people:
        assert set(person.seen) == {"visual"}
        assert "audiovisual" in person.speaking and person.speaking_seconds >= 2
        assert person.speaking_share is not None and 0.2 <= person.speaking_share <= 0.8
    spoken = sum(p.speaking_seconds for p in prediction.people)
    assert spoken <= conversation.duration + 1e-6
    # Each spoke their own half: the first voice (the left face) for the first 4 s.
    left = next(p for p in prediction.people if p.where == "left")
    firsts = [t for t in prediction.turns if t["end"] <= 4.0 and t["person"] is not None]
    assert sum(t["person"] == left.person for t in firsts) >= 0.75 * len(firsts)
    voices = [p.speaking["audiovisual"].probabilities for p in prediction.people]
    assert voices[0] != pytest.approx(voices[1], abs=1e-3)


def test_the_answer_uses_the_face_that_spoke_most(prediction: Prediction) -> None:
    most = max(prediction.people, key=lambda p: p.speaking_seconds)
    shown = prediction.paths["visual"].probabilities
    assert shown == pytest.approx(most.seen["visual"].probabilities, abs=1e-5)
    assert "active speaker" in prediction.face_used


def test_the_largest_face_asked_for_gives_todays_answer(
    prediction: Prediction, conversation: Conversation
) -> None:
    largest = Predictor.load(face=0).predict(conversation.path)
    assert largest.people == [] and largest.turns == []
    assert "most prominent" in largest.face_used


def test_people_in_json_csv_and_table(prediction: Prediction) -> None:
    payload = json.loads(render_predictions([prediction], [], "json", "m"))
    found = payload["predictions"][0]
    assert [p["person"] for p in found["people"]] == [0, 1]
    assert {t["status"] for t in found["turns"]} <= {
        "speaking", "nobody speaks", "unclear", "lips not visible", "voice off-screen"
    }  # fmt: skip
    rows = render_predictions([prediction], [], "csv", "m").splitlines()
    header = rows[0].split(",")
    assert "person" in header and "person_answer" in header and "speaking_seconds" in header
    person_rows = [r for r in rows[1:] if r.split(",")[header.index("person")] != ""]
    assert len(person_rows) >= 2 * 2  # per person: its face, and each path while it spoke
    table = prediction.to_text()
    assert "who speaks:" in table and "person 0 (" in table and "person 1 (" in table


def test_the_timeline_has_a_row_per_person(
    predictor: Predictor, conversation: Conversation, tmp_path: Path
) -> None:
    timeline = predictor.timeline(conversation.path, window=3.0, hop=1.0)
    assert [p["person"] for p in timeline.people] == [0, 1]
    assert timeline.turns and all(set(w.people) <= {0, 1} for w in timeline.windows)
    assert any(len(w.people) == 2 for w in timeline.windows)
    figure = timeline.figure()
    titles = [axes.get_title(loc="left") for axes in figure.axes]
    assert sum(title.startswith("person ") for title in titles) == 2
    assert titles[-1].startswith("who speaks")
    written = timeline.write(tmp_path)
    assert "person" in written["csv"].read_text().splitlines()[0]


def test_face_all_lists_a_single_person_and_bad_choices_say_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clip = SHARED_DATA / "crema-d-samples" / "VideoFlash" / "1001_DFA_HAP_XX.flv"
    assert main(["predict", str(clip), "--face", "all", "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)["predictions"][0]
    assert [p["person"] for p in found["people"]] == [0]
    with pytest.raises(SystemExit):
        main(["predict", str(clip), "--face", "loudest"])
    error = capsys.readouterr().err
    assert "'loudest' is not speaker, largest, all or a face number" in error


def test_overlapping_windows_give_one_turn_per_second(
    predictor: Predictor, conversation: Conversation
) -> None:
    timeline = predictor.timeline(conversation.path, window=3.0, hop=0.5)
    starts = [turn["start"] for turn in timeline.turns]
    ends = [turn["end"] for turn in timeline.turns]
    assert all(e <= s + 1e-6 for e, s in zip(ends, starts[1:], strict=False))  # no overlap
    spoken = sum(t["end"] - t["start"] for t in timeline.turns if t["person"] is not None)
    assert spoken <= conversation.duration + 1e-6


def test_files_predicted_together_keep_their_people(
    predictor: Predictor, conversation: Conversation
) -> None:
    other = SHARED_DATA / "crema-d-samples" / "VideoFlash" / "1001_DFA_HAP_XX.flv"
    predictions = list(predictor.predict_files([conversation.path, other]))
    two = predictions[0]
    assert not isinstance(two, Exception)
    assert len(two.people) == 2 and all("visual" in p.seen for p in two.people)


def test_where_who_speaks_cannot_be_looked_for_faces_go_by_rank(
    predictor: Predictor,
) -> None:
    """A photo (no sound) and the store (one face per file) answer as before."""
    group = SHARED_DATA / "face-video-samples" / "pyfeat" / "multi_face.jpg"
    photo = predictor.predict(group)
    assert photo.people == [] and photo.turns == []
    assert "the most prominent" in photo.face_used and "speak" not in photo.face_used
    assert predictor.features.keys == Predictor.load(face=0).features.keys
    with pytest.raises(ConfigError, match="'loudest' is not 'speaker', 'all', 'largest'"):
        Predictor.load(face="loudest")  # type: ignore[arg-type]
