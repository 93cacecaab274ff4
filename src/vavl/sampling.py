"""What each training epoch reads: audio-only and visual-only clips joined into pairs, draws
that balance corpora, and batches of clips of similar length. Every choice depends only on the
seed and the epoch, so a resumed run sees exactly the batches it would have seen, and every
process of a distributed run the same ones."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np
from torch.utils.data import Sampler

from vavl.data import Item
from vavl.normalization import SOURCE


def pair_unpaired(items: Sequence[Item], seed: Sequence[int]) -> list[Item]:
    """``items`` with audio-only and visual-only clips of the same class joined into pairs.

    Within each class, audio-only and visual-only clips are shuffled (from ``seed``) and joined
    one to one; the clips left over, and every clip that has both modalities or no label, stay as
    they are. Every clip is still used once, but the fusion head now sees pairs from corpora that
    have only one modality: the two halves share a class, not a recording.
    """
    rng = np.random.default_rng(list(seed))
    kept: list[Item] = []
    audio_only: dict[int, list[Item]] = {}
    visual_only: dict[int, list[Item]] = {}
    for item in items:
        has_audio, has_visual = item.has("audio"), item.has("visual")
        if item.label is None or has_audio == has_visual:
            kept.append(item)
        else:
            (audio_only if has_audio else visual_only).setdefault(item.label, []).append(item)

    def shuffled(group: dict[int, list[Item]], label: int) -> list[Item]:
        clips = group.get(label, [])
        return [clips[i] for i in rng.permutation(len(clips))]

    for label in sorted(set(audio_only) | set(visual_only)):
        sounds, faces = shuffled(audio_only, label), shuffled(visual_only, label)
        for sound, face in zip(sounds, faces, strict=False):
            kept.append(
                replace(
                    sound.with_modality_of(face, "visual"),
                    id=f"{sound.id}+{face.id}",
                    metadata={
                        **sound.metadata,
                        "paired_with": face.id,
                        f"visual_{SOURCE}": face.metadata.get(SOURCE),
                    },
                )
            )
        pairs = min(len(sounds), len(faces))
        kept += sounds[pairs:] + faces[pairs:]
    return kept


def balanced_draw(items: Sequence[Item], by: str, seed: Sequence[int]) -> list[Item]:
    """As many clips as ``items``, drawn with replacement (from ``seed``) so that every group
    weighs the same: ``by`` "corpus" (``metadata["corpus"]``) or "corpus-class"."""
    groups = [
        (item.metadata.get("corpus"), item.label if by == "corpus-class" else None)
        for item in items
    ]
    sizes = Counter(groups)
    weights = np.array([1.0 / sizes[group] for group in groups])
    rng = np.random.default_rng(list(seed))
    chosen = rng.choice(len(items), size=len(items), p=weights / weights.sum())
    return [items[i] for i in np.sort(chosen)]


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of clips of similar length, reshuffled every epoch from (seed, epoch).

    Under torch.distributed (``rank``, ``world_size``) every process draws the same batches and
    takes its share of each.

    Indices are shuffled, cut into pools of ``pool_batches`` batches, sorted by length inside each
    pool and chunked; the batch order is shuffled too. The order depends only on the seed and the
    epoch, so a resumed run sees exactly the batches it would have seen, and ``start_batch`` skips
    those already done.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        pool_batches: int = 50,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.rank, self.world_size = rank, world_size
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pool_batches = pool_batches
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        count = len(self.lengths)
        order = rng.permutation(count) if self.shuffle else np.arange(count)
        pool_size = self.batch_size * self.pool_batches
        batches: list[list[int]] = []
        for start in range(0, count, pool_size):
            pool = order[start : start + pool_size]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches += [
                pool[i : i + self.batch_size].tolist() for i in range(0, len(pool), self.batch_size)
            ]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        """This process's share of each batch (every ``world_size``-th clip from ``rank``; a
        share may be empty), so that batches are the same whatever the number of processes."""
        for batch in self.batches()[self.start_batch :]:
            yield batch[self.rank :: self.world_size]

    def __len__(self) -> int:
        return max(0, -(-len(self.lengths) // self.batch_size) - self.start_batch)
