"""What every command module shares."""

from __future__ import annotations

import argparse
from pathlib import Path

# What ``ArgumentParser.add_subparsers()`` returns, where each module adds its commands.
Subcommands = argparse._SubParsersAction


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None


def positive_seconds(text: str) -> float:
    """An argparse type: a duration in seconds above zero (checked before any model loads)."""
    value = _seconds(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def seconds_into(text: str) -> float:
    """An argparse type: a time in a file, seconds from its start (0 or more)."""
    value = _seconds(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 seconds or more, not {text}")
    return value


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError:
        whole = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"'{text}' is not {whole}") from None


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    value = int(_number(text, int))
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {text}")
    return value


def at_least_one(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text}")
    return value


def positive_megabytes(text: str) -> float:
    """An argparse type: a size in MiB above zero."""
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 MiB, not {text}")
    return value


def face_choice(text: str) -> int | str:
    """An argparse type: whose face answers: ``speaker``, ``all``, ``largest`` (rank 0) or a
    face's rank, 0 or more."""
    if text in ("speaker", "all"):
        return text
    if text == "largest":
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not speaker, largest, all or a face number (0, 1, ...)"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"face numbers start at 0, not {text}")
    return value


def add_checkpoint_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--checkpoint FILE`` (``args.checkpoint``): the trained model a command uses. ``--model``
    still works for it, unlisted: it names a method in ``vavl train`` and ``vavl cv``."""
    parser.add_argument("--checkpoint", type=Path, metavar="FILE", help=help)
    parser.add_argument("--model", type=Path, dest="checkpoint", help=argparse.SUPPRESS)
