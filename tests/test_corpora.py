"""Corpus adapters on the real label, vote and partition files, and every bad-corpus error."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from helpers import require_shared_data, write_media
from vavl.config_data import CorpusConfig, SplitConfig
from vavl.corpora import (
    Corpus,
    check_clips,
    fold_assignments,
    label_map_of,
    load_corpus,
    map_labels,
)
from vavl.corpora.base import speaker_folds
from vavl.corpora.crema_d import read_partitions, read_votes, vote_label
from vavl.corpora.msp_improv import attribute_ranges, flip, min_max_scaled, read_msp_partitions
from vavl.errors import DataError
from vavl.types import CREMA_D_EMOTIONS


def partitions_dir(corpus: str) -> Path:
    folder = {
        "CREMA-D": "labels_consensus_6class_M",
        "MSP-IMPROV": "labels_consensus_EmoP_4class_D",
    }
    return require_shared_data() / "vavl-partitions" / corpus / folder[corpus]


def test_crema_d_authors_partitions_and_class_counts() -> None:
    labels, partitions, speakers = read_partitions(partitions_dir("CREMA-D"))
    assert len(labels) == 5820 and len(partitions) == 5
    hard = Counter(max(soft, key=soft.__getitem__) for soft in labels.values())
    assert hard == {
        "neutral": 1632,
        "happy": 1190,
        "angry": 885,
        "disgust": 870,
        "fear": 856,
        "sad": 387,
    }
    for partition in partitions:
        assert len(partition) == 5820
        actors = {
            s: {speakers[c] for c, split in partition.items() if split == s}
            for s in ("train", "dev", "test")
        }
        assert [len(actors[s]) for s in ("train", "dev", "test")] == [63, 14, 14]
        assert not actors["train"] & actors["dev"] and not actors["train"] & actors["test"]
        assert not actors["dev"] & actors["test"]
    # Not a k-fold rotation: the five test sets overlap, and 36 of the 91 actors are never tested.
    tested = Counter(
        actor
        for partition in partitions
        for actor in {speakers[c] for c, split in partition.items() if split == "test"}
    )
    assert len(tested) == 55 and sorted(Counter(tested.values()).items()) == [
        (1, 43),
        (2, 9),
        (3, 3),
    ]


def test_vote_consensus_reproduces_the_authors_labels() -> None:
    data = require_shared_data()
    votes = read_votes(data / "crema-d-metadata/processedResults/tabulatedVotes.csv")
    assert len(votes) == 7442 and all(len(by) == 3 for by in votes.values())
    labels, _, _ = read_partitions(partitions_dir("CREMA-D"))
    agreement = {}
    for conditions in (("audio",), ("video",), ("audiovisual",), ("audio", "video", "audiovisual")):
        outcomes = [vote_label(votes[c], conditions)[0] for c in labels]
        authors = [max(s, key=s.__getitem__) for s in labels.values()]
        decided = [(ours, theirs) for ours, theirs in zip(outcomes, authors, strict=True) if ours]
        agreement[conditions] = sum(o == t for o, t in decided) / len(decided)
    assert agreement[("audiovisual",)] == 1.0  # the authors used the audio-visual raters
    assert agreement[("video",)] < 0.9 and agreement[("audio",)] < 0.7
    label, shares = vote_label(votes["1001_DFA_ANG_XX"], ("audiovisual",))
    assert label is not None and sum(shares.values()) == pytest.approx(1.0)
    tie, _ = vote_label(votes["1009_TSI_SAD_XX"], ("audiovisual",))  # 4 fear, 4 sad
    assert tie is None


def test_crema_d_adapter_on_the_sample_folder() -> None:
    data = require_shared_data()
    spec = CorpusConfig(format="crema-d", root=data / "crema-d-samples")
    corpus = load_corpus(spec)
    assert len(corpus.clips) == 12 and corpus.speakers() == ["crema-d:1001", "crema-d:1002"]
    flv = next(c for c in corpus.clips if c.id == "crema-d/1001_DFA_ANG_XX")
    assert flv.media["visual"].suffix == ".flv" and flv.media["audio"] == flv.media["visual"]
    mp3 = next(c for c in corpus.clips if c.id == "crema-d/1002_DFA_SAD_XX")
    assert set(mp3.media) == {"audio"} and mp3.label == "sad"
    voted = load_corpus(
        spec.model_copy(
            update={
                "labels": "votes-audiovisual",
                "votes": data / "crema-d-metadata/processedResults/tabulatedVotes.csv",
            }
        )
    )
    assert all(c.soft_label and sum(c.soft_label.values()) == pytest.approx(1) for c in voted.clips)
    authors = load_corpus(
        spec.model_copy(update={"labels": "authors", "partitions": partitions_dir("CREMA-D")})
    )
    assert authors.partitions is not None and len(authors.partitions) == 5
    # Each clip's class is the one with the largest share in the authors' file: as intended for
    # nine of the ten clips they labelled; 1002's sad sentence they call neutral (0.574 vs 0.292).
    by_clip = {c.id.removeprefix("crema-d/"): c.label for c in authors.clips}
    assert by_clip["1002_DFA_SAD_XX"] == "neutral" and by_clip["1001_DFA_ANG_XX"] == "angry"
    agreeing = [c for c in authors.clips if c.label == c.metadata["intended"]]
    assert (len(authors.clips), len(agreeing)) == (10, 9)
    audio_only = load_corpus(spec.model_copy(update={"modalities": ("audio",)}))
    assert all(set(c.media) == {"audio"} for c in audio_only.clips)


def test_msp_improv_partitions_are_session_independent_and_scaling_is_pure() -> None:
    attributes, partitions, sessions = read_msp_partitions(partitions_dir("MSP-IMPROV"))
    assert len(attributes) == 8385 and len(partitions) == 5
    expected = [({"1", "2", "3", "6"}, {"4"}, {"5"}), ({"1", "4", "5", "6"}, {"2"}, {"3"})]
    for partition, (train, dev, test) in zip(partitions, expected, strict=False):
        found = {
            s: {sessions[c] for c, split in partition.items() if split == s}
            for s in ("train", "dev", "test")
        }
        assert (found["train"], found["dev"], found["test"]) == (train, dev, test)
    flipped, _, _ = read_msp_partitions(partitions_dir("MSP-IMPROV"), flipped=("arousal",))
    clip = "MSP-IMPROV-S01A-F02-R-FF01"
    # As released: EmoAct 2.666667, EmoVal 2.333333, EmoDom 3 in the authors' first file.
    assert attributes[clip] == pytest.approx(
        {"arousal": 2.666667, "valence": 2.333333, "dominance": 3.0}
    )
    assert flipped[clip]["arousal"] == pytest.approx(6 - 2.666667)  # reversed once, when asked
    assert flipped[clip]["valence"] == attributes[clip]["valence"]
    assert flip(flip(3.2)) == pytest.approx(3.2)
    from vavl.corpora.base import Clip

    clips = [
        Clip(f"m/{i}", "m", "m:s", {"audio": Path("x")}, attributes={"arousal": v})
        for i, v in enumerate([2.0, 4.0, 5.0])
    ]
    split = {"m/0": "train", "m/1": "train", "m/2": "test"}
    ranges = attribute_ranges(clips, split)  # type: ignore[arg-type]
    assert ranges == {"arousal": (2.0, 4.0)}  # the test clip does not set the scale
    assert min_max_scaled({"arousal": 5.0}, ranges) == {"arousal": 1.5}


def test_msp_improv_adapter_finds_media_by_name(tmp_path: Path) -> None:
    root = tmp_path / "MSP-IMPROV"
    (root / "session1").mkdir(parents=True)
    tone = (0.1 * np.sin(np.arange(8000))).astype(np.float32)
    write_media(root / "session1" / "MSP-IMPROV-S01A-F02-R-FF01.m4a", audio=tone)
    (root / "session1" / "MSP-IMPROV-S01A-F02-R-FF01.wav").write_bytes(
        (root / "session1" / "MSP-IMPROV-S01A-F02-R-FF01.m4a").read_bytes()
    )
    corpus = load_corpus(
        CorpusConfig(format="msp-improv", root=root, partitions=partitions_dir("MSP-IMPROV"))
    )
    assert [c.id for c in corpus.clips] == ["msp-improv/MSP-IMPROV-S01A-F02-R-FF01"]
    assert corpus.clips[0].speaker == "msp-improv:session2"
    with pytest.raises(DataError, match="needs the authors' partition folder"):
        load_corpus(CorpusConfig(format="msp-improv", root=root))


def test_ravdess_and_mead_adapters_with_label_maps() -> None:
    data = require_shared_data()
    ravdess = load_corpus(CorpusConfig(format="ravdess", root=data / "ravdess-audio-samples"))
    assert len(ravdess.clips) == 64 and len(ravdess.speakers()) == 8
    assert {c.label for c in ravdess.clips} == {
        "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"
    }  # fmt: skip
    mapped, dropped = map_labels(
        ravdess.clips,
        label_map_of(CorpusConfig(format="ravdess", root=data, label_map="ravdess-to-crema-d")),
        CREMA_D_EMOTIONS,
    )
    assert len(mapped) == 48 and dropped == {"calm": 8, "surprised": 8}
    assert {c.label for c in mapped} == set(CREMA_D_EMOTIONS)
    mead = load_corpus(CorpusConfig(format="mead", root=data / "mead-samples"))
    assert len(mead.clips) == 31
    speakers = Counter(c.speaker for c in mead.clips)
    assert (
        speakers["mead:M030"] == 9 and speakers["mead:W009"] == 8 and speakers["mead:unk_f2"] == 2
    )
    uncropped = next(c for c in mead.clips if c.id == "mead/M030/M030_sad_3_001")
    assert uncropped.label == "sad" and set(uncropped.media) == {"audio", "visual"}
    mead_mapped, mead_dropped = map_labels(
        mead.clips,
        label_map_of(CorpusConfig(format="mead", root=data, label_map="mead-to-crema-d")),
        CREMA_D_EMOTIONS,
    )
    assert mead_dropped == {"contempt": 4, "surprised": 4} and len(mead_mapped) == 23


def test_tess_and_the_flac_copy_of_ravdess() -> None:
    data = require_shared_data()
    tess = load_corpus(CorpusConfig(format="tess", root=data / "tess-16k"))
    assert len(tess.clips) == 1400 and tess.speakers() == ["tess:OAF", "tess:YAF"]
    assert Counter(c.label for c in tess.clips)["pleasant_surprise"] == 200
    assert {m for c in tess.clips for m in c.media} == {"audio"}
    spec = CorpusConfig(format="tess", root=data, label_map="tess-to-crema-d")
    mapped, dropped = map_labels(tess.clips, label_map_of(spec), CREMA_D_EMOTIONS)
    assert len(mapped) == 1200 and dropped == {"pleasant_surprise": 200}
    speech = load_corpus(CorpusConfig(format="ravdess", root=data / "ravdess-speech-16k"))
    assert len(speech.clips) == 480 and len(speech.speakers()) == 8
    assert all(c.media["audio"].suffix == ".flac" for c in speech.clips)
    # The same recordings as the WAV sample share their clip ids.
    sample = load_corpus(CorpusConfig(format="ravdess", root=data / "ravdess-audio-samples"))
    assert {c.id for c in sample.clips} <= {c.id for c in speech.clips}


def test_generic_folder_and_manifest(tmp_path: Path) -> None:
    source = require_shared_data() / "crema-d-samples" / "AudioMP3"
    for emotion in ("happy", "sad"):
        (tmp_path / "folder" / emotion).mkdir(parents=True)
    shutil.copy(source / "1002_DFA_HAP_XX.mp3", tmp_path / "folder" / "happy")
    shutil.copy(source / "1002_DFA_SAD_XX.mp3", tmp_path / "folder" / "sad")
    folder = load_corpus(CorpusConfig(format="folder", root=tmp_path / "folder", name="mine"))
    assert sorted(c.label for c in folder.clips) == ["happy", "sad"]
    assert all(set(c.media) == {"audio"} for c in folder.clips)
    manifest = tmp_path / "folder" / "clips.csv"
    manifest.write_text(
        "path,label,speaker,split\nhappy/1002_DFA_HAP_XX.mp3,happy,a,train\nsad/1002_DFA_SAD_XX.mp3,sad,b,test\n"
    )
    listed = load_corpus(CorpusConfig(format="manifest", root=manifest, name="listed"))
    assert [c.speaker for c in listed.clips] == ["listed:a", "listed:b"]
    assert listed.partitions == [
        {"listed/happy/1002_DFA_HAP_XX.mp3": "train", "listed/sad/1002_DFA_SAD_XX.mp3": "test"}
    ]
    manifest.write_text("path,label,split\nhappy/1002_DFA_HAP_XX.mp3,happy,Valid\n")
    (partition,) = load_corpus(CorpusConfig(format="manifest", root=manifest)).partitions or []
    assert list(partition.values()) == ["dev"]  # FER+'s word for its development split
    attributes = tmp_path / "folder" / "attributes.csv"
    attributes.write_text("path,arousal,valence\nhappy/1002_DFA_HAP_XX.mp3,0.8,0.9\n")
    regression = load_corpus(
        CorpusConfig(format="manifest", root=attributes), ("arousal", "valence")
    )
    assert regression.clips[0].attributes == {"arousal": 0.8, "valence": 0.9}


def test_manifest_votes_are_soft_labels_and_name_the_unlabelled(tmp_path: Path) -> None:
    """FER+-style rows: ten raters' votes per image; the most voted class where the label is
    empty; votes for a class mapped away leave the soft label (renormalised in preparation)."""
    source = require_shared_data() / "crema-d-samples" / "AudioMP3"
    for name in ("1002_DFA_HAP_XX.mp3", "1002_DFA_SAD_XX.mp3"):
        shutil.copy(source / name, tmp_path / name)
    manifest = tmp_path / "votes.csv"
    manifest.write_text(
        "path,label,votes_happy,votes_sad,votes_unknown\n"
        "1002_DFA_HAP_XX.mp3,happy,6,2,2\n"
        "1002_DFA_SAD_XX.mp3,,1,5,4\n"
    )
    spec = CorpusConfig(format="manifest", root=manifest, label_map={"unknown": None})
    clips = load_corpus(spec).clips
    assert [c.label for c in clips] == ["happy", "sad"]  # the second: its most voted class
    assert clips[0].soft_label == pytest.approx({"happy": 0.6, "sad": 0.2, "unknown": 0.2})
    mapped, dropped = map_labels(clips, label_map_of(spec), ("happy", "sad"))
    assert not dropped and mapped[1].soft_label == pytest.approx({"happy": 0.1, "sad": 0.5})
    manifest.write_text("path,label,votes_happy\n1002_DFA_HAP_XX.mp3,happy,many\n")
    with pytest.raises(DataError, match=r"votes.csv:2: .*must be numbers"):
        load_corpus(spec)


def test_leaving_one_corpus_out_tests_each_corpus_once() -> None:
    data = require_shared_data()
    ravdess = load_corpus(CorpusConfig(format="ravdess", root=data / "ravdess-speech-16k"))
    tess = load_corpus(CorpusConfig(format="tess", root=data / "tess-16k"))
    crema = load_corpus(CorpusConfig(format="crema-d", root=data / "crema-d-samples"))
    corpora = [ravdess, tess, crema]
    split = SplitConfig(method="corpora", dev_share=0.25, seed=1)
    folds = fold_assignments(corpora, ["all"] * 3, split)
    assert len(folds) == 3 and folds == fold_assignments(corpora, ["all"] * 3, split)
    for fold, left_out in zip(folds, corpora, strict=True):
        tested = {clip_id for clip_id, where in fold.items() if where == "test"}
        assert tested == {clip.id for clip in left_out.clips}
        check_clips([c for corpus in corpora for c in corpus.clips], fold)  # no shared speaker
    # A quarter of RAVDESS's 8 actors develop, in every fold that trains on RAVDESS.
    developing = {c.speaker for c in ravdess.clips if folds[1][c.id] == "dev"}
    assert len(developing) == 2 and developing == {
        c.speaker for c in ravdess.clips if folds[2][c.id] == "dev"
    }
    only = SplitConfig(method="corpora", corpora=("tess",))
    assert len(fold_assignments(corpora, ["all"] * 3, only)) == 1
    with pytest.raises(DataError, match="names corpora the data does not have: nosuch"):
        fold_assignments(corpora, ["all"] * 3, SplitConfig(method="corpora", corpora=("nosuch",)))


def test_shares_of_every_corpus_develop_and_test() -> None:
    data = require_shared_data()
    ravdess = load_corpus(CorpusConfig(format="ravdess", root=data / "ravdess-speech-16k"))
    tess = load_corpus(CorpusConfig(format="tess", root=data / "tess-16k"))
    split = SplitConfig(method="shares", dev_share=0.25, test_share=0.25)
    (fold,) = fold_assignments([ravdess, tess], ["all", "all"], split)
    where = {(c.corpus, c.speaker, fold[c.id]) for corpus in (ravdess, tess) for c in corpus.clips}
    per_corpus = Counter((corpus, split) for corpus, _, split in where)
    # TESS has 2 speakers: a quarter of them rounds to none.
    expected = {"train": 4, "dev": 2, "test": 2}
    assert per_corpus == {("ravdess", k): v for k, v in expected.items()} | {("tess", "train"): 2}
    shipping = SplitConfig(method="shares", dev_share=0.25, test_share=0.0)
    (only,) = fold_assignments([ravdess, tess], ["all", "all"], shipping)
    assert "test" not in set(only.values())


def test_speaker_folds_test_every_speaker_once() -> None:
    speakers = [f"s{i}" for i in range(13)]
    folds = speaker_folds(speakers, 5, seed=3)
    assert len(folds) == 5 and folds == speaker_folds(speakers, 5, seed=3)
    tested = [s for fold in folds for s, split in fold.items() if split == "test"]
    assert sorted(tested) == sorted(speakers)
    for fold in folds:
        assert {"train", "dev", "test"} == set(fold.values())


def test_named_speakers_split(tmp_path: Path) -> None:
    data = require_shared_data()
    ravdess = load_corpus(CorpusConfig(format="ravdess", root=data / "ravdess-audio-samples"))
    folds = [
        {"test": ["ravdess:07", "ravdess:08"], "dev": ["ravdess:06"]},
        {"test": ["ravdess:01"]},
    ]
    split = SplitConfig.model_validate({"method": "speakers", "speakers": folds})
    first, second = fold_assignments([ravdess], ["all"], split)
    assert Counter(first.values()) == {"train": 40, "dev": 8, "test": 16}
    assert Counter(second.values()) == {"train": 56, "test": 8}
    unknown = SplitConfig.model_validate(
        {"method": "speakers", "speakers": [{"test": ["ravdess:99"]}]}
    )
    with pytest.raises(DataError, match="ravdess:99"):
        fold_assignments([ravdess], ["all"], unknown)


def test_bad_corpora_fail_before_training(tmp_path: Path) -> None:
    data = require_shared_data()
    with pytest.raises(DataError, match=r"nowhere: CREMA-D corpus folder not found"):
        load_corpus(CorpusConfig(format="crema-d", root=tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a CREMA-D folder"):
        load_corpus(CorpusConfig(format="crema-d", root=tmp_path / "empty"))
    bad_partitions = tmp_path / "partitions"
    bad_partitions.mkdir()
    (bad_partitions / "label_consensus_1.csv").write_text(
        "FileName,angry,bored,SpkrID,Gender,Split_Set\n1001_DFA_ANG_XX.wav,0.5,0.5,1001,Male,Train\n"
    )
    with pytest.raises(DataError, match="unknown columns \\['bored'\\]"):
        read_partitions(bad_partitions)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nmissing.wav,happy\n")
    corpus = load_corpus(CorpusConfig(format="manifest", root=manifest))
    with pytest.raises(
        DataError, match=r"missing\.wav: media file of clip 'manifest/missing\.wav'"
    ):
        check_clips(corpus.clips)
    clip = load_corpus(CorpusConfig(format="crema-d", root=data / "crema-d-samples")).clips[0]
    with pytest.raises(DataError, match="appears twice"):
        check_clips([clip, clip])
    with pytest.raises(DataError, match="speaker 'crema-d:1001' is in both test and train"):
        check_clips(
            [clip, clip.__class__(**{**clip.__dict__, "id": "crema-d/other"})],
            {clip.id: "train", "crema-d/other": "test"},
        )
    unknown = Corpus("x", [clip.__class__(**{**clip.__dict__, "label": "bored"})])
    with pytest.raises(DataError, match="label 'bored', which is not one of the task's labels"):
        map_labels(unknown.clips, {}, CREMA_D_EMOTIONS)
    with pytest.raises(DataError, match="unknown label map 'klingon'"):
        label_map_of(CorpusConfig(format="ravdess", root=data, label_map="klingon"))


def test_shipped_configs_load_and_carry_the_authors_speaker_lists() -> None:
    from vavl.config_data import CorporaDataConfig
    from vavl.config_files import load_config

    for name in ("crema-d", "msp-improv", "ravdess"):
        assert isinstance(load_config(name).data, CorporaDataConfig)
    split = load_config("crema-d").data.split  # type: ignore[union-attr]
    _, partitions, speakers = read_partitions(partitions_dir("CREMA-D"))
    assert len(split.speakers) == len(partitions) == 5
    for named, partition in zip(split.speakers, partitions, strict=True):
        for part in ("dev", "test"):
            actors = {f"crema-d:{speakers[c]}" for c, s in partition.items() if s == part}
            assert set(getattr(named, part)) == actors
