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
