from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch

from helpers import demo_config
from vavl.config import TaskConfig
from vavl.data import Collator, Item, check_items
from vavl.errors import DataError
from vavl.normalization import FeatureNormalizer
from vavl.sampling import BucketBatchSampler, balanced_draw

TASK = TaskConfig(labels=("a", "b", "c"))


def _item(name: str, audio: int | None, visual: int | None, label: int = 0) -> Item:
    rng = np.random.default_rng(len(name))
    return Item(
        id=name,
        audio=None if audio is None else rng.normal(size=(audio, 4)).astype(np.float32),
        visual=None if visual is None else rng.normal(size=(visual, 3)).astype(np.float32),
        label=label,
    )


def test_collate_pads_and_masks_each_modality() -> None:
    items = [_item("x", 5, 3), _item("y", 2, None, 1), _item("z", None, 4, 2)]
    items[0].visual_valid = np.array([True, False, True])
    batch = Collator(TASK)(items)
    assert batch.audio is not None and batch.visual is not None
    assert batch.audio.shape == (3, 5, 4) and batch.visual.shape == (3, 4, 3)
    assert batch.audio_mask is not None and batch.visual_mask is not None
    assert batch.audio_mask.tolist() == [[True] * 5, [True, True, False, False, False], [False] * 5]
    assert batch.visual_mask[0].tolist() == [True, False, True, False]
    assert batch.visual[0, 1].abs().sum() == 0  # a frame without a face is masked, not kept
    assert torch.equal(batch.audio[1, :2], torch.from_numpy(items[1].audio))  # type: ignore[arg-type]
    assert batch.present("audio").tolist() == [True, True, False]
    assert batch.present("visual").tolist() == [True, False, True]
    assert batch.target is not None and batch.target.tolist() == [0, 1, 2]


def test_batch_without_any_video_has_no_visual_tensor() -> None:
    batch = Collator(TASK)([_item("x", 5, None), _item("y", 3, None)])
    assert batch.visual is None and batch.present("visual").tolist() == [False, False]


def test_soft_labels_fall_back_to_one_hot() -> None:
    task = TaskConfig(labels=("a", "b", "c"), soft_labels=True)
    with_votes = _item("x", 3, None, 0)
    with_votes.soft_label = np.array([0.5, 0.5, 0.0], dtype=np.float32)
    batch = Collator(task)([with_votes, _item("y", 3, None, 2)])
    assert batch.target is not None
    assert batch.target.tolist() == [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]


def test_select_keeps_the_rows_and_trims_time() -> None:
    batch = Collator(TASK)([_item("x", 6, 3), _item("y", 2, 5, 1), _item("z", 3, None, 2)])
    subset = batch.select(batch.present("visual"), ("visual",))
    assert subset.ids == ["x", "y"] and subset.audio is None
    assert subset.visual is not None and subset.visual.shape == (2, 5, 3)
    audio = batch.select(torch.tensor([False, True, True]), ("audio",))
    assert audio.audio is not None and audio.audio.shape[1] == 3  # 6-frame clip left out
    assert audio.target is not None and audio.target.tolist() == [1, 2]


def test_normalizer_uses_real_frames_only() -> None:
    item = Item("x", visual=np.array([[1.0], [3.0], [1000.0]], dtype=np.float32), label=0)
    item.visual_valid = np.array([True, True, False])
    normalizer = FeatureNormalizer.fit([item])
    assert normalizer.mean["visual"].tolist() == [2.0]
    assert normalizer.std["visual"].tolist() == [1.0]
    assert "audio" not in normalizer.mean
    restored = FeatureNormalizer.from_state_dict(normalizer.state_dict())
    assert restored.mean["visual"].tolist() == [2.0]


def test_sampler_is_a_seeded_shuffle_of_similar_lengths() -> None:
    lengths = list(np.random.default_rng(0).integers(10, 500, 200))
    sampler = BucketBatchSampler(lengths, batch_size=8, seed=3, pool_batches=5)
    sampler.set_epoch(0)
    first = sampler.batches()
    assert sorted(i for batch in first for i in batch) == list(range(200))
    assert first == sampler.batches()  # same epoch, same order
    sampler.set_epoch(1)
    assert first != sampler.batches()  # a new epoch reshuffles
    spread = np.mean([np.ptp([lengths[i] for i in batch]) for batch in first])
    assert spread < np.ptp(lengths) / 3
    sampler.set_epoch(1, start_batch=20)
    assert list(sampler) == sampler.batches()[20:] and len(sampler) == 5


def test_check_items_names_the_clip_and_the_problem() -> None:
    config = demo_config()
    good = Item("ok", audio=np.zeros((5, 32), np.float32), label=1)
    with pytest.raises(
        DataError, match=r"clip 'bad' has 16-d audio features but model\.audio_dim is 32"
    ):
        check_items(
            [good, Item("bad", audio=np.zeros((5, 16), np.float32), label=1)], config, "set"
        )
    with pytest.raises(DataError, match="clip id 'ok' appears twice"):
        check_items([good, good], config, "set")
    with pytest.raises(DataError, match="has label 7"):
        check_items([Item("x", audio=np.zeros((5, 32), np.float32), label=7)], config, "set")
    with pytest.raises(DataError, match="neither audio nor visual"):
        check_items([Item("x", label=1)], config, "set")
    with pytest.raises(DataError, match="NaN"):
        check_items([Item("x", audio=np.full((5, 32), np.nan, np.float32), label=1)], config, "set")
    with pytest.raises(DataError, match="is empty"):
        check_items([], config, "training set")


def test_balanced_draws_weigh_every_corpus_and_class_alike() -> None:
    """90 clips of one corpus (all class 0) and 10 of another (half class 0, half class 1)."""
    items = [Item(f"big/{i}", label=0, metadata={"corpus": "big"}) for i in range(90)]
    items += [Item(f"small/{i}", label=i % 2, metadata={"corpus": "small"}) for i in range(10)]
    by_corpus = balanced_draw(items, "corpus", (0, 1))
    assert len(by_corpus) == 100 and by_corpus == balanced_draw(items, "corpus", (0, 1))
    small = sum(item.metadata["corpus"] == "small" for item in by_corpus)
    assert 38 <= small <= 62  # half, not a tenth
    assert balanced_draw(items, "corpus", (0, 2)) != by_corpus  # a new draw each epoch
    by_class = balanced_draw(items, "corpus-class", (0, 1))
    groups = Counter((i.metadata["corpus"], i.label) for i in by_class)
    assert all(22 <= count <= 45 for count in groups.values()) and len(groups) == 3


def test_each_source_is_standardised_by_its_own_statistics() -> None:
    """Two corpora whose features sit far apart: by source, each is centred on its own mean
    (a clip of an unknown source falls back on the global statistics); the statistics survive
    a checkpoint; a pair's face is standardised by the face's corpus."""
    rng = np.random.default_rng(0)

    def clips(corpus: str, offset: float, n: int = 20) -> list[Item]:
        return [
            Item(
                f"{corpus}/{i}",
                audio=(rng.normal(offset, 1.0, (30, 4))).astype(np.float32),
                label=0,
                metadata={"corpus": corpus},
            )
            for i in range(n)
        ]

    near, far = clips("near", 0.0), clips("far", 10.0)
    global_only = FeatureNormalizer.fit(near + far)
    by_source = global_only.for_items(near + far, "source")
    assert global_only.for_items(near + far, "global") is global_only
    far_features = far[0].audio
    assert far_features is not None
    assert abs(by_source.apply("audio", far_features, "far").mean()) < 0.5
    assert by_source.apply("audio", far_features, "far").mean() != pytest.approx(
        global_only.apply("audio", far_features).mean(), abs=0.5
    )
    unknown = by_source.apply("audio", far_features, "elsewhere")
    assert np.allclose(unknown, global_only.apply("audio", far_features))
    again = FeatureNormalizer.from_state_dict(by_source.state_dict())
    assert np.allclose(
        again.apply("audio", far_features, "far"), by_source.apply("audio", far_features, "far")
    )
    # A source with no visual statistics: its clips' faces use the global ones.
    visual = [rng.normal(5.0, 2.0, (3, 4)).astype(np.float32) for _ in range(10)]
    faces = [
        Item(f"faces/{i}", visual=v, label=0, metadata={"corpus": "faces"})
        for i, v in enumerate(visual)
    ]
    mixed = FeatureNormalizer.fit(near + faces).for_items(near + faces, "source")
    pair = replace(
        near[0], visual=faces[0].visual, metadata={"corpus": "near", "visual_corpus": "faces"}
    )
    batch = Collator(TaskConfig(labels=("a", "b")), mixed)([pair])
    assert batch.visual is not None
    expected = mixed.apply("visual", faces[0].visual, "faces")  # type: ignore[arg-type]
    assert np.allclose(batch.visual[0].numpy(), expected)
