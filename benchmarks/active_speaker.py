"""Benchmark: which of two faces speaks, through the whole pipeline (:mod:`vavl.speakers`).

For pairs of the shared talking-head clips with speech (HDTF, VoxCeleb and LivePortrait
samples), two two-person videos are generated (:mod:`vavl.conversation`): side by side, top
and bottom, or at different sizes (the pairs take the layouts in turn), with a soundtrack that
switches every 4 s between A's own voice and B's, A first, then B first (so that every clip's
every second is heard, and what a clip says early or late weighs on neither face). The
feature pipeline reads them as any video (face detection, tracking, FaceMesh on each track's
crops at 15 frames a second, Whisper's third block on the audio) and says who speaks in each
second; the truth is known by construction, and each track's place in the picture tells whose
face it is. The lip-sync model is fitted, for each
pair, on every other clip with speech (the CREMA-D videos and ``FITTING_ONLY`` too), never on A
or B.

    python benchmarks/active_speaker.py [--data ../shared/data] [--pairs N]

``--save FILE`` instead fits the model on every clip but those listed in ``HELD_OUT`` (the
tests' pairs) and writes it: the model vavl ships (``src/vavl/assets/speaker-sync.npz``).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vavl.conversation import LAYOUTS, Conversation, two_person_video
from vavl.features import create_extractor
from vavl.features.base import feature_key
from vavl.features.pipeline import FeaturePipeline
from vavl.features.records import FileFeatures
from vavl.media import read_audio
from vavl.speakers import (
    MIN_MARGIN,
    MIN_SCORE,
    SILENCE,
    SpeakerFinder,
    SyncModel,
    lip_shapes,
    nearest_frames,
)

TESTED = ("hdtf-sadtalker", "voxceleb-pcavs", "liveportrait")
# Other shared clips of one face speaking: fitted on, never tested (as the CREMA-D videos).
FITTING_ONLY = (
    "mead-samples/M030_sad_3_001.mp4",
    "face-video-samples/visualvoice/noisy_restaurant.mp4",
    "face-video-samples/pyfeat/single_face.mp4",
)
# Never fitted on by the shipped model: the tests' two-person videos are made of these.
HELD_OUT = ("WDA_KatieHill_000.mp4", "741400163.mp4")
# (min synchrony, min lead): forced choice, vavl's defaults, and others around them.
THRESHOLDS = ((-np.inf, 0.0), (MIN_SCORE, MIN_MARGIN), (0.3, 0.0), (0.4, 0.0), (0.5, 0.1))


def sync_audio():  # type: ignore[no-untyped-def]
    """The audio features the lip-sync model reads: the default model's."""
    return create_extractor("whisper-base", blocks=3, pool=2)


def recordings(data: Path) -> dict[Path, tuple[np.ndarray, np.ndarray]]:
    """Per clip with speech and a face in every sampled frame: (lip shapes, audio features at
    the lips' frame times)."""
    clips = [
        p for folder in TESTED for p in sorted((data / "face-video-samples" / folder).glob("*.mp4"))
    ]
    clips += sorted((data / "crema-d-samples" / "VideoFlash").glob("*.flv"))
    clips += [data / path for path in FITTING_ONLY]
    faces = FeaturePipeline(None, create_extractor("facemesh"))
    audio = FeaturePipeline(sync_audio(), None)
    found = {}
    for clip in tqdm(clips, "lips and audio", leave=False):
        wave = read_audio(clip)
        if wave is None or np.sqrt(np.mean(wave**2)) < 1e-3:  # no speech to be in sync with
            continue
        visual = faces.extract(clip).visual
        if visual is None or not visual.valid.all():
            continue
        times = np.asarray(visual.times, np.float64)
        sound = audio.extract(clip).audio
        assert sound is not None
        heard = nearest_frames(sound.features, np.asarray(sound.times, np.float64), times)
        found[clip] = (lip_shapes(visual.features), heard)
    return found


def fitted(clips: dict[Path, tuple[np.ndarray, np.ndarray]], without: set[str]) -> SyncModel:
    kept = [clip for clip in clips if clip.name not in without]
    model = SyncModel.fit([clips[clip] for clip in kept])
    about = {"audio_key": feature_key(sync_audio()), "fitted_on": tuple(c.name for c in kept)}
    return SyncModel(**model.__dict__ | about)


@dataclass
class Tally:
    """Each speech second's decision: its best synchrony, its lead, and whether right."""

    videos: int = 0
    seconds: int = 0
    silent: int = 0
    rows: list[tuple[float, float, bool, bool]] | None = None  # ..., next to a change

    def add(self, found: FileFeatures, conversation: Conversation) -> None:
        self.rows = self.rows or []
        self.videos += 1
        whose = {face.track: conversation.person_at(face.centre) for face in found.faces}
        for turn in found.turns:
            if turn.end - turn.start < 0.5:
                continue
            self.seconds += 1
            if turn.status == SILENCE or turn.score is None:
                self.silent += turn.status == SILENCE
                continue
            truth = conversation.speaker_at((turn.start + turn.end) / 2)
            said = whose.get(turn.speaker) if turn.speaker is not None else None
            right = said == truth  # off-screen: right when no face is said
            margin = np.inf if turn.margin is None else turn.margin
            middle = (turn.start + turn.end) / 2
            nearby = {conversation.speaker_at(middle + step) for step in (-1.0, 1.0)}
            edge = turn.context < 1.0 or nearby != {truth}  # the file's end or a switch
            self.rows.append((turn.score, margin, right, edge))

    def forced_choice(self) -> float:
        """The share of speech seconds whose speaker is the face with the best synchrony."""
        return float(np.mean([right for *_, right, _ in self.rows or []]))

    def table(self) -> str:
        """Per threshold pair: the share of seconds whose speaker is said right, said wrong, or
        not said (unclear, off-screen). Off-screen voices are right only when not said."""
        lines = [
            "| min synchrony, min lead | speaker right | wrong | said unclear/off-screen |",
            "|---|---|---|---|",
        ]
        rows = np.array(self.rows or [(0.0, 0.0, False, False)], dtype=float)
        for low, lead in THRESHOLDS:
            said = (rows[:, 0] >= low) & (rows[:, 1] >= lead)
            right = int((said & (rows[:, 2] > 0)).sum())
            wrong = int(said.sum()) - right
            abstained = len(rows) - int(said.sum())
            share = [f"{n / self.seconds:.1%}" for n in (right, wrong, abstained)]
            lines.append(f"| {low:g}, {lead:g} | {' | '.join(share)} |")
        edge = rows[:, 3] > 0
        lines.append(
            f"\nForced choice: {rows[edge, 2].mean():.1%} of the {int(edge.sum())} seconds next "
            f"to a switch or the file's start or end (judged with the other voice, or less, "
            f"around them), {rows[~edge, 2].mean():.1%} of the {int((~edge).sum())} others"
        )
        return "\n".join(lines)

    def off_screen_table(self) -> str:
        lines = [
            "| min synchrony, min lead | given to a face (wrong) | said unclear/off-screen |",
            "|---|---|---|",
        ]
        rows = np.array(self.rows or [(0.0, 0.0, False, False)], dtype=float)
        for low, lead in THRESHOLDS:
            said = int(((rows[:, 0] >= low) & (rows[:, 1] >= lead)).sum())
            share = [f"{n / self.seconds:.1%}" for n in (said, len(rows) - said)]
            lines.append(f"| {low:g}, {lead:g} | {' | '.join(share)} |")
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared" / "data")
    parser.add_argument("--pairs", type=int, default=None, help="at most this many pairs")
    parser.add_argument("--save", type=Path, help="fit on all but HELD_OUT and write the model")
    args = parser.parse_args()
    clips = recordings(args.data)
    if args.save:
        fitted(clips, set(HELD_OUT)).save(args.save)
        print(f"fitted on {len(clips) - len(HELD_OUT)} clips; written to {args.save}")
        return
    tested = [clip for clip in clips if clip.parent.name in TESTED]
    pairs = list(itertools.combinations(tested, 2))[: args.pairs]
    visual = create_extractor("fer", output="features+log-probabilities")
    tally, off_screen = Tally(), Tally()
    by_order = (Tally(), Tally())  # the pair's first clip speaks first; its second does
    with tempfile.TemporaryDirectory() as folder:
        for number, pair in enumerate(tqdm(pairs, "pairs", leave=False)):
            finder = SpeakerFinder(fitted(clips, {c.name for c in pair}), -np.inf, 0.0)
            pipeline = FeaturePipeline(sync_audio(), visual, face="speaker", speakers=finder)
            layout = LAYOUTS[number % len(LAYOUTS)]
            for order, speaking_first in zip(by_order, (pair, pair[::-1]), strict=True):
                conversation = two_person_video(speaking_first, layout, Path(folder) / "pair.mp4")
                found = pipeline.extract(conversation.path)
                tally.add(found, conversation)
                order.add(found, conversation)
            if number % 3 == 0:  # a third clip's voice: nobody on screen speaks
                third = tested[(tested.index(pair[1]) + 1) % len(tested)]
                if third != pair[0]:
                    heard = two_person_video(
                        pair, layout, Path(folder) / "off.mp4", off_screen=third
                    )
                    off_screen.add(pipeline.extract(heard.path), heard)
    print(f"{len(tested)} clips, {len(pairs)} pairs, each way round ({', '.join(LAYOUTS)} in turn)")
    print(f"{tally.seconds} seconds, {tally.silent} without speech heard\n")
    print(tally.table())
    first, second = (f"{order.forced_choice():.1%}" for order in by_order)
    print(f"Forced choice with the pair's first clip speaking first: {first}; second: {second}")
    print(f"\nA voice off-screen ({off_screen.videos} pairs, {off_screen.seconds} s):")
    print(off_screen.off_screen_table())


if __name__ == "__main__":
    main()
