"""MSP-Podcast in its release layout (generated from real speech): both tasks on its own split,
alone, and as unpaired audio beside an audio-visual corpus."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import TINY_REAL_MODEL, require_shared_data, write_wav
from vavl.cli import main
from vavl.config_files import apply_overrides, load_config
from vavl.errors import DataError
from vavl.experiment import run_experiment
from vavl.media import read_audio
from vavl.preparation import prepare

EMOTIONS = {"angry": "A", "sad": "S", "happy": "H", "fear": "F", "disgust": "D", "neutral": "N"}
# Speaker, Split_Set, and one word per emotion (six clips each); Test2 is another test set.
SPEAKERS = (
    ("101", "Train"), ("102", "Train"), ("103", "Train"),
    ("104", "Development"), ("105", "Test1"), ("106", "Test2"),
)  # fmt: skip
WORDS = ("back", "soup", "young", "pool", "numb", "tape")


def _release(root: Path) -> list[dict[str, str]]:
    """Audios/*.wav and Labels/labels_consensus.csv; one training clip has no agreed class (X),
    one another class (O); returns the label rows."""
    tess = require_shared_data() / "tess-16k" / "OAF"
    (root / "Audios").mkdir(parents=True)
    (root / "Labels").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for (speaker, split), word in zip(SPEAKERS, WORDS, strict=True):
        for emotion, letter in EMOTIONS.items():
            samples = read_audio(tess / f"OAF_{word}_{emotion}.flac")
            assert samples is not None
            name = f"MSP-PODCAST_{speaker}_{emotion}.wav"
            write_wav(root / "Audios" / name, samples)
            act, val, dom = rng.uniform(1, 7, 3).round(1)
            rows.append({"FileName": name, "EmoClass": letter, "EmoAct": f"{act}",
                         "EmoVal": f"{val}", "EmoDom": f"{dom}", "SpkrID": speaker,
                         "Gender": "Female", "Split_Set": split})  # fmt: skip
    rows[0]["EmoClass"], rows[1]["EmoClass"] = "X", "O"
    rows[2]["EmoAct"] = "7.0"  # the top of the scale
    with open(root / "Labels" / "labels_consensus.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _overrides(tmp_path: Path) -> list[str]:
    return [*TINY_REAL_MODEL, f"data.store={tmp_path / 'store'}", "training.progress=false"]


def test_msp_podcast_trains_on_its_own_split_for_attributes_and_classes(tmp_path: Path) -> None:
    rows = _release(tmp_path / "podcast")
    root = f"data.corpora.0.root={tmp_path / 'podcast'}"
    config = apply_overrides(load_config("msp-podcast"), [*_overrides(tmp_path), root])
    data = prepare(config, progress=False)
    splits = data.split(1)
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [18, 6, 6]  # Test2 left out
    assert {item.speaker for item in splits["test"]} == {"msp-podcast:105"}
    top = next(i for i in splits["train"] if i.id.endswith(rows[2]["FileName"][:-4]))
    assert top.attributes is not None and top.attributes[0] == pytest.approx(1.0)  # (7 - 1) / 6
    result = run_experiment(config, tmp_path / "attributes", progress=False)
    assert set(result.test) == {"audio"} and result.test["audio"]["n"] == 6

    arguments = ["train", "msp-podcast-categorical", "--run-dir", str(tmp_path / "classes")]
    for override in [*_overrides(tmp_path), root, "data.corpora.0.test_set=Test2"]:
        arguments += ["--set", override]
    assert main([*arguments, "--quiet"]) == 0
    metrics = json.loads((tmp_path / "classes" / "metrics.json").read_text())
    assert metrics["test"]["audio"]["n"] == 6  # Test2's speaker now
    assert metrics["train"]["audio"]["n"] == 16  # the X and O turns left out
    assert metrics["test"]["audio"]["labels"][-2:] == ["contempt", "neutral"]


def test_podcast_audio_trains_beside_an_audio_visual_corpus(tmp_path: Path) -> None:
    """The msp-improv-podcast config's data with a manifest of six talking-head videos in
    MSP-IMPROV's place: MSP-Podcast's training turns join every fold's training (audio only,
    rated 1-7, rescaled onto 1-5); development and test are the video corpus's."""
    rows = _release(tmp_path / "podcast")
    videos = sorted((require_shared_data() / "face-video-samples/hdtf-sadtalker").glob("*.mp4"))
    manifest = tmp_path / "videos" / "manifest.csv"
    manifest.parent.mkdir()
    lines = ["path,speaker,split,arousal,dominance,valence"]
    for number, video in enumerate(videos[:6]):
        shutil.copy(video, manifest.parent / video.name)
        split = ("train", "train", "train", "train", "dev", "test")[number]
        lines.append(
            f"{video.name},{number},{split},{1 + number * 0.7:.1f},3,{5 - number * 0.6:.1f}"
        )
    manifest.write_text("\n".join(lines) + "\n")
    corpora = (
        f"[{{format: manifest, root: {manifest}}}, {{format: msp-podcast, root: "
        f"{tmp_path / 'podcast'}, role: train, modalities: [audio], rescale: [1, 5]}}]"
    )
    config = apply_overrides(
        load_config("msp-improv-podcast"),
        [*_overrides(tmp_path), f"data.corpora={corpora}", "data.split.method=partitions"],
    )
    data = prepare(config, progress=False)
    splits = data.split(1)
    train_corpora = [item.metadata["corpus"] for item in splits["train"]]
    assert train_corpora.count("msp-podcast") == 18 and train_corpora.count("manifest") == 4
    assert {item.metadata["corpus"] for item in [*splits["dev"], *splits["test"]]} == {"manifest"}
    top = next(i for i in splits["train"] if i.id.endswith(rows[2]["FileName"][:-4]))
    assert top.attributes is not None and top.attributes[0] == pytest.approx(1.0)  # 7 -> 5 -> 1
    result = run_experiment(config, tmp_path / "run", progress=False)
    assert set(result.test) == {"audio", "visual", "audiovisual"}
    assert result.test["audiovisual"]["n"] == 1


def test_a_layout_without_its_label_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "podcast" / "Audios").mkdir(parents=True)
    config = apply_overrides(
        load_config("msp-podcast"),
        [*_overrides(tmp_path), f"data.corpora.0.root={tmp_path / 'podcast'}"],
    )
    with pytest.raises(DataError, match=r"Labels/labels_consensus\.csv not found"):
        prepare(config, progress=False)
