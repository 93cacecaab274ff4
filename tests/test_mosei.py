"""CMU-MOSEI in its release layout (generated from real talking-head videos): both tasks the
field reports, multi-label emotions and sentiment, through `vavl cv`."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from helpers import TINY_REAL_MODEL, require_shared_data, write_wav
from vavl.cli import main
from vavl.config_data import CorpusConfig
from vavl.corpora import load_corpus
from vavl.corpora.mosei import VALUES, standard_folds
from vavl.errors import DataError
from vavl.media import read_audio

VIDEOS = "face-video-samples/hdtf-sadtalker"
SEGMENTS = ((0.0, 2.5), (2.5, 5.0), (5.0, 7.5))  # three sentences of each 8 s video
# Real video ids of the standard folds: four train, one develops, one tests.
SPLITS = ("train", "train", "train", "train", "dev", "test")


def _video_ids() -> list[str]:
    folds = standard_folds()
    chosen = []
    for split in ("train", "dev", "test"):
        ids = sorted(video for video, found in folds.items() if found == split)
        chosen += ids[: SPLITS.count(split)]
    return chosen


def _release(root: Path) -> tuple[Path, dict[tuple[str, float], list[float]]]:
    """The release's folders: six full videos (one with its WAV), segmented transcripts and the
    SDK's label sequence (HDF5), with seeded labels; returns the .csd and the labels."""
    sources = sorted((require_shared_data() / VIDEOS).glob("*.mp4"))[:6]
    videos, audio = root / "Raw/Videos/Full/Combined", root / "Raw/Audio/Full/WAV_16000"
    transcripts = root / "Raw/Transcript/Segmented/Combined"
    for folder in (videos, audio, transcripts):
        folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels: dict[tuple[str, float], list[float]] = {}
    csd = root / "CMU_MOSEI_Labels.csd"
    with h5py.File(csd, "w") as handle:
        data = handle.create_group("All Labels").create_group("data")
        for number, (source, video) in enumerate(zip(sources, _video_ids(), strict=True)):
            shutil.copy(source, videos / f"{video}.mp4")
            if number == 0:  # this video's audio comes from its WAV
                samples = read_audio(source)
                assert samples is not None
                write_wav(audio / f"{video}.wav", samples)
            lines, values = [], []
            for segment, (start, end) in enumerate(SEGMENTS):
                begin = -0.4776 if segment == 0 else start  # the transcript's time, as the label's
                lines.append(f"{video}___{segment}___{begin}___{end}___words of segment {segment}")
                row = [
                    rng.uniform(-3, 3),
                    *np.where(rng.uniform(size=6) < 0.5, rng.uniform(0.3, 3, 6), 0.0),
                ]
                row[0] = 0.0 if segment == 1 else row[0]  # some neutral sentences
                values.append(row)
                labels[(video, start)] = row
            (transcripts / f"{video}.txt").write_text("\n".join(lines) + "\n")
            group = data.create_group(video)
            # The SDK's labels start a few segments before 0 s (the first one here), and
            # repeat a few label rows (the last one).
            intervals = [(-0.4776 if k == 0 else a, b) for k, (a, b) in enumerate(SEGMENTS)]
            group["features"] = np.array([*values, values[-1]])
            group["intervals"] = np.array([*intervals, intervals[-1]])
        handle["All Labels"].create_group("metadata")
    return csd, labels


def test_the_release_layout_reads_into_segments_of_full_videos(tmp_path: Path) -> None:
    _, labels = _release(tmp_path / "mosei")
    corpus = load_corpus(CorpusConfig(format="mosei", root=tmp_path / "mosei"))
    assert len(corpus.clips) == 18
    video = _video_ids()[4]
    clip = next(c for c in corpus.clips if c.id == f"mosei/{video}_2")
    assert (clip.span.start, clip.span.end) == (5.0, 7.5)
    assert clip.metadata["text"] == "words of segment 2"
    assert clip.speaker == f"mosei:{video}"
    assert [clip.attributes[name] for name in VALUES] == pytest.approx(labels[(video, 5.0)])
    assert clip.media["visual"].name == f"{video}.mp4"
    first = next(c for c in corpus.clips if c.id == f"mosei/{_video_ids()[0]}_0")
    assert first.media["audio"].suffix == ".wav" and first.media["visual"].suffix == ".mp4"
    assert (first.span.start, first.span.end) == (0.0, 2.5)  # labelled from -0.4776 s
    assert corpus.partitions is not None
    assert [corpus.partitions[0][f"mosei/{v}_0"] for v in _video_ids()] == list(SPLITS)

    # The same labels as a CSV export (the columns by name, a split column of its own).
    export = tmp_path / "labels.csv"
    with open(export, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "start", "end", "split", *VALUES])
        for (name, start), row in labels.items():
            writer.writerow([name, start, start + 2.5, "test", *row])
    again = load_corpus(CorpusConfig(format="mosei", root=tmp_path / "mosei", label_file=export))
    assert sorted(c.id for c in again.clips) == sorted(c.id for c in corpus.clips)
    assert again.partitions is not None and set(again.partitions[0].values()) == {"test"}
    export.write_text("video,start,end\nabc,0,1\n")
    with pytest.raises(DataError, match=r"labels.csv: missing columns \['anger'"):
        load_corpus(CorpusConfig(format="mosei", root=tmp_path / "mosei", label_file=export))


OFFLINE = [part for override in TINY_REAL_MODEL for part in ("--set", override)]


def test_vavl_cv_mosei_scores_both_tasks_on_every_path(tmp_path: Path) -> None:
    _release(tmp_path / "mosei")
    common = [*OFFLINE, "--set", f"data.corpora.0.root={tmp_path / 'mosei'}",
              "--set", f"data.store={tmp_path / 'store'}", "--quiet"]  # fmt: skip
    assert main(["cv", "mosei", "--run-dir", str(tmp_path / "emotions"), *common]) == 0
    table = (tmp_path / "emotions" / "cv.md").read_text()
    for column in ("WA mean", "wF1 mean", "F1-macro", "F1-micro", "WA happiness", "wF1 fear"):
        assert column in table
    assert all(f"| {path} |" in table for path in ("audio only", "visual only", "audio-visual"))
    metrics = json.loads((tmp_path / "emotions" / "fold-1" / "metrics.json").read_text())
    assert metrics["test"]["audiovisual"]["n"] == 3  # the test video's three segments
    assert set(metrics["test"]["visual"]["per_class"]["fear"]) >= {"weighted_accuracy", "f1"}
    report = (tmp_path / "emotions" / "fold-1" / "report.html").read_text()
    assert "wF1 surprise" in report and report.count("<img") == 2  # curves, each label's F1

    assert main(["cv", "mosei-sentiment", "--run-dir", str(tmp_path / "sentiment"), *common]) == 0
    table = (tmp_path / "sentiment" / "cv.md").read_text()
    for column in ("MAE", "Pearson r", "Acc-2", "F1", "Acc-7"):
        assert f"| {column} |" in table or f"| {column} " in table
    metrics = json.loads((tmp_path / "sentiment" / "fold-1" / "metrics.json").read_text())
    scores = metrics["test"]["audio"]["per_attribute"]["sentiment"]
    with open(tmp_path / "sentiment" / "fold-1" / "predictions" / "test.csv") as handle:
        truth = [row["target"] for row in csv.DictReader(handle)]
    assert len(truth) == 9  # three segments, three paths
    assert {"mae", "acc2", "acc2_with_zero", "f1", "acc7"} <= set(scores)
    assert 0.0 <= scores["acc7"] <= 1.0 and scores["mae"] > 0
