"""Generated feature sets with a known answer, for the demo, tests and benchmarks, and a
generated corpus whose features are already in a store (corpus-scale tests and benchmarks).

Each clip's frames are noise plus a per-speaker offset; in the modalities listed as informative,
about half of the frames also carry a pattern that encodes the label (one pattern per class, or a
weighted sum of one pattern per attribute). A single frame is ambiguous; a clip is not. Splits have
disjoint speakers. One visual frame in ten is marked as having no face and filled with large junk
values, so a model that lets masked frames leak is penalised.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np

from vavl.config import TaskConfig
from vavl.config_data import SyntheticDataConfig
from vavl.data import Item
from vavl.features import create_extractor
from vavl.features.records import ModalityFeatures
from vavl.features.store import FeatureStore
from vavl.files import write_text_atomically
from vavl.types import MODALITIES, Modality

SPLITS = ("train", "dev", "test")
CLIPS_PER_SPEAKER = 20


def synthetic_items(data: SyntheticDataConfig, task: TaskConfig) -> dict[str, list[Item]]:
    """Items of the train, dev and test splits described by ``data``, labelled for ``task``."""
    rng = np.random.default_rng(data.seed)
    dims = {"audio": data.audio_dim, "visual": data.visual_dim}
    frames = {"audio": data.audio_frames, "visual": data.visual_frames}
    patterns = {m: rng.standard_normal((task.output_dim, dims[m])) for m in MODALITIES}
    sizes = {"train": data.n_train, "dev": data.n_dev, "test": data.n_test}
    splits: dict[str, list[Item]] = {}
    for split in SPLITS:
        items = []
        speakers = max(1, sizes[split] // CLIPS_PER_SPEAKER)
        offsets = {m: rng.normal(0.0, data.speaker_spread, (speakers, dims[m])) for m in MODALITIES}
        for index in range(sizes[split]):
            speaker = index % speakers
            if task.kind == "classification":
                label: int | None = index % task.output_dim
                weights = np.eye(task.output_dim)[label]
                attributes = None
            elif task.kind == "multilabel":  # each label present in about 40% of clips
                label = None
                weights = (rng.uniform(size=task.output_dim) < 0.4).astype(np.float64)
                attributes = weights.astype(np.float32)
            else:
                label = None
                weights = rng.uniform(-1.0, 1.0, task.output_dim)
                attributes = weights.astype(np.float32)
            draw = rng.uniform()
            missing: Modality | None = None
            if draw < data.missing_audio:
                missing = "audio"
            elif draw < data.missing_audio + data.missing_visual:
                missing = "visual"
            features: dict[Modality, np.ndarray] = {}
            for modality in MODALITIES:
                length = int(rng.integers(frames[modality][0], frames[modality][1] + 1))
                values = rng.standard_normal((length, dims[modality])) + offsets[modality][speaker]
                if modality in data.informative:
                    active = rng.uniform(size=(length, 1)) < 0.5
                    values += data.signal * active * (weights @ patterns[modality])
                features[modality] = values.astype(np.float32)
            visual_valid = rng.uniform(size=len(features["visual"])) >= 0.1
            visual_valid[0] = True
            features["visual"][~visual_valid] = 50.0
            items.append(
                Item(
                    id=f"{split}-{index:05d}",
                    audio=None if missing == "audio" else features["audio"],
                    visual=None if missing == "visual" else features["visual"],
                    visual_valid=None if missing == "visual" else visual_valid,
                    label=label,
                    attributes=attributes,
                    speaker=f"{split}-speaker{speaker:02d}",
                    split=split,
                )
            )
        order = rng.permutation(len(items))
        splits[split] = [items[i] for i in order]
    return splits


def write_synthetic_corpus(
    folder: Path,
    clips: int,
    seconds: tuple[float, float] = (2.0, 12.0),
    seed: int = 0,
    sync: bool = True,
) -> Path:
    """A corpus whose features are already in its store, as if extracted: ``clips`` WAV files
    of 0.25 s (their content tells them apart: the store keys entries by content) listed in
    ``folder/manifest.csv`` (4 classes; 20 clips a speaker, at least 10 speakers; 8 in 10
    speakers train, 1 develops, 1 tests), and each one's log-mel entry in ``folder/store``:
    noise ``seconds`` long (uniform), at log-mel's 80 dimensions and 50 frames/s. For
    corpus-scale tests and benchmarks, with no media to decode. Returns the manifest."""
    extractor = create_extractor("logmel")
    rate = extractor.frame_rate
    store = FeatureStore(folder / "store")
    rng = np.random.default_rng(seed)
    lines = ["path,label,speaker,split"]
    header = _wav_header(8000)
    speakers = max(10, clips // CLIPS_PER_SPEAKER)
    for index in range(clips):
        name = f"media/{index // 1000:03d}/{index:07d}.wav"
        content = header + index.to_bytes(8, "little") * 1000  # 0.25 s of "sound", its own
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
        frames = int(rng.integers(round(seconds[0] * rate), round(seconds[1] * rate) + 1))
        features = ModalityFeatures(
            rng.standard_normal((frames, extractor.dim)).astype(np.float32),
            (np.arange(frames) / rate).astype(np.float32),
            np.ones(frames, bool),
        )
        store.save(extractor.key(), hashlib.sha256(content).hexdigest(), features, sync=sync)
        speaker = index % speakers
        split = ("train",) * 8 + ("dev", "test")
        label = ("angry", "happy", "neutral", "sad")[index % 4]
        lines.append(f"{name},{label},{speaker},{split[speaker % 10]}")
    return write_text_atomically(folder / "manifest.csv", "\n".join(lines) + "\n")


def _wav_header(data_bytes: int) -> bytes:
    """A 16 kHz mono 16-bit WAV header for ``data_bytes`` of samples."""
    layout = struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    size = struct.pack("<I", 36 + data_bytes)
    return b"RIFF" + size + b"WAVEfmt " + layout + b"data" + struct.pack("<I", data_bytes)


def synthetic_corpus_overrides(folder: Path, load: str = "lazy") -> list[str]:
    """Config overrides that train on :func:`write_synthetic_corpus`'s corpus in ``folder``."""
    data = (
        f"{{source: corpora, store: {folder / 'store'}, load: {load}, corpora: [{{format: "
        f"manifest, root: {folder / 'manifest.csv'}, modalities: [audio]}}], split: {{method: "
        "partitions}}"
    )
    return [
        "features.audio=logmel", "features.visual=null", "model.audio_dim=80",
        "task.labels=[angry, happy, neutral, sad]", f"data={data}",
    ]  # fmt: skip
