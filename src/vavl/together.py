"""Files predicted together. A model trained with ``features.normalise: source`` learnt from
corpora each standardised by its own statistics; the short clips predicted in one call are
standardised by theirs in the same way, as one source (a corpus, a folder of one's
recordings): what sets that source apart from the training corpora (its room, microphone,
speakers, language) then weighs less than what sets its clips apart from one another.

This assumes the clips are varied, as a corpus is: the statistics of a few clips of a single
emotion would take that emotion for the source's neutral. So it needs at least
:data:`MIN_TOGETHER` clips, and ``together=False`` (``vavl predict --each-alone``) predicts
every file on its own, whatever else is predicted. A long file is always predicted alone (the
mean of its windows), and so is any file when the model was trained with global statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from vavl.answers import Answers
from vavl.data import Item
from vavl.errors import VavlError
from vavl.features.rebuild import ModelFeatures
from vavl.features.records import FileFeatures
from vavl.features.store import FeatureStore
from vavl.inference import InferenceEngine
from vavl.media import probe
from vavl.normalization import SOURCE
from vavl.results import Prediction
from vavl.spans import WHOLE, Span

MIN_TOGETHER = 16  # fewer clips say too little of their source: each is predicted alone
HELD = 1000  # clips whose features are held at once; the statistics come from the first ones
INPUTS = "<inputs>"  # the source name of the clips predicted together

Outcome = Prediction | VavlError | OSError


class ClipSet:
    """The files of one call to :meth:`~vavl.predict.Predictor.predict_files`: a model's
    features, engine and answers, and how one file is predicted alone."""

    def __init__(
        self,
        features: ModelFeatures,
        engine: InferenceEngine,
        answers: Answers,
        predict_alone: Callable[[Path], Prediction],
        longest: float,
        store: FeatureStore | None = None,
        span: Span = WHOLE,
    ) -> None:
        self.features, self.engine, self.answers = features, engine, answers
        self.predict_alone, self.longest, self.store = predict_alone, longest, store
        self.span = span  # the part of every file predicted
        self.normalizer = engine.normalizer
        self.standardised: int | None = None  # clips whose statistics are used, once known

    def predictions(self, paths: Sequence[Path], alone: bool = False) -> Iterator[Outcome]:
        """Each file's prediction, or why it failed, in order (``alone``: each on its own)."""
        if alone:
            yield from (self._alone(Path(path)) for path in paths)
            return
        for start in range(0, len(paths), HELD):
            yield from self._part([Path(path) for path in paths[start : start + HELD]])

    def _alone(self, path: Path) -> Outcome:
        try:
            return self.predict_alone(path)
        except (VavlError, OSError) as error:
            return error

    def _part(self, paths: Sequence[Path]) -> Iterator[Outcome]:
        """Predict ``paths``: the long ones alone, the clips together."""
        outcomes: list[Outcome | None] = [None] * len(paths)
        clips: list[tuple[int, FileFeatures]] = []
        for index, path in enumerate(paths):
            try:
                if (self.span.check(path, probe(path).duration) or 0.0) > self.longest:
                    continue  # a long file: the mean of its own windows, below
                clips.append((index, self.features.of_file(path, self.store, self.span)))
            except (VavlError, OSError) as error:
                outcomes[index] = error
        items = [
            Item.from_features(str(found.path), found, metadata={SOURCE: INPUTS})
            for _, found in clips
        ]
        if self.standardised is None and len(items) >= MIN_TOGETHER:
            assert self.normalizer is not None
            self.normalizer = self.normalizer.with_sources(items)
            self.standardised = len(items)
        together = self.standardised is not None
        outputs, people = self.engine.with_people(
            [found for _, found in clips], self.normalizer if together else None, {SOURCE: INPUTS}
        )
        for (index, found), produced, persons in zip(clips, outputs, people, strict=True):
            prediction = self.answers.file(found, produced, persons)
            prediction.span = self.span.bounds(prediction.duration)
            if together:
                prediction.notes.append(
                    f"standardised by the statistics of the {self.standardised} clips predicted "
                    "together (as one source; --each-alone predicts each file alone)"
                )
            outcomes[index] = prediction
        for index, path in enumerate(paths):
            yield outcomes[index] or self._alone(path)
