"""Generated feature sets with a known answer, for the demo, tests and benchmarks.

Each clip's frames are noise plus a per-speaker offset; in the modalities listed as informative,
about half of the frames also carry a pattern that encodes the label (one pattern per class, or a
weighted sum of one pattern per attribute). A single frame is ambiguous; a clip is not. Splits have
disjoint speakers. One visual frame in ten is marked as having no face and filled with large junk
values, so a model that lets masked frames leak is penalised.
"""

from __future__ import annotations

import numpy as np

from vavl.config import TaskConfig
from vavl.config_data import SyntheticDataConfig
from vavl.data import Item
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
