"""Errors that users see. Each carries one line that names the file and the problem."""

from __future__ import annotations


class VavlError(Exception):
    """Base class: the CLI prints ``str(error)`` as one line and exits non-zero."""


class ConfigError(VavlError):
    """A configuration file or object is invalid (unknown field, wrong value, inconsistent dims)."""


class DataError(VavlError):
    """Training or evaluation data does not fit the task or the model (dims, labels, splits)."""


class TrainingError(VavlError):
    """Training cannot go on (e.g. the loss diverged)."""


class CheckpointError(VavlError):
    """A checkpoint is missing, damaged, or was written by an incompatible version."""


class MediaError(VavlError):
    """A media file cannot be read (missing, empty, not media, damaged)."""


class WeightsError(VavlError):
    """A model's weight file is missing or not the expected file (checksum mismatch)."""


class FeatureMismatchError(VavlError):
    """Features come from a different extractor (or settings) than the model was trained on."""
