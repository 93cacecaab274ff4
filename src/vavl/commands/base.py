"""What every command module shares."""

from __future__ import annotations

import argparse

# What ``ArgumentParser.add_subparsers()`` returns, where each module adds its commands.
Subcommands = argparse._SubParsersAction


def positive_seconds(text: str) -> float:
    """An argparse type: a duration in seconds above zero (checked before any model loads)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def face_rank(text: str) -> int:
    """An argparse type: a face's rank, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a face number (0, 1, ...)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"face numbers start at 0, not {text}")
    return value
