"""The ``vavl`` command. Thin: it parses arguments (each command's own in :mod:`vavl.commands`)
and calls the library.

Every command has a Python twin: ``vavl demo`` -> :func:`vavl.run_demo`, ``vavl train`` ->
:func:`vavl.run_experiment`, ``vavl cv`` -> :func:`vavl.run_cv`, ``vavl evaluate`` ->
:func:`vavl.evaluate_run`, ``vavl extract`` -> :func:`vavl.run_extraction`, ``vavl config`` ->
:func:`vavl.load_config`, ``vavl info`` -> :func:`vavl.load_checkpoint`.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from vavl import __version__
from vavl.commands import GROUPS
from vavl.errors import VavlError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vavl",
        description="Audio-visual emotion recognition: one model for audio, visual or both.",
    )
    parser.add_argument("--version", action="version", version=f"vavl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    overrides = argparse.ArgumentParser(add_help=False)
    overrides.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set training.epochs=5 (repeatable)",
    )
    overrides.add_argument(
        "--force",
        action="store_true",
        help="start over: replace a run (train, cv) that the run directory holds, even one made "
        "with another config (only its own files are removed)",
    )
    overrides.add_argument(
        "--model",
        metavar="METHOD",
        help="train this method instead of the config's model: vavl, auxformer, mult, unimodal, "
        "late-fusion, early-fusion, vavl-small (the default model's size, for CPUs), or a VAVL "
        "ablation (vavl-no-shared, vavl-no-residual, "
        "vavl-no-reconstruction, vavl-joint, vavl-modality-dropout) or the reference's choices "
        "(vavl-reference, vavl-ref-attention, -heads, -optimizer, -selection); --set applies "
        "after it",
    )

    for group in GROUPS:
        group.add_parsers(commands, overrides)
    for command in commands.choices.values():
        command.set_defaults(parser=command)  # whose usage an argument error shows
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The arguments; an unknown option is the command's own error (its usage), with the
    option it most resembles."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command: argparse.ArgumentParser = args.parser
        known = [o for action in command._actions for o in action.option_strings]
        guesses = difflib.get_close_matches(unknown[0].split("=")[0], known, n=1)
        hint = f" (did you mean {guesses[0]}?)" if guesses else ""
        command.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)  # --help and argument errors end here, before torch
    from vavl import distributed

    # A service manager's stop (SIGTERM) is handled like Ctrl-C: work stops where it is, the
    # reports of what was done are written, and the exit code says it was interrupted.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None

    env = distributed.environment()
    # Under torchrun, the main process speaks for all.
    logging.basicConfig(
        level=logging.INFO if env.is_main else logging.WARNING, format="vavl: %(message)s"
    )
    try:
        # Under torchrun the run itself joins the process group, on its configured device.
        if env.world_size > 1 and args.command in ("train", "cv") and not env.is_main:
            args.quiet = True
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process
        return int(args.handler(args))
    except VavlError as error:
        print(f"vavl: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a read-only folder: the path and what went wrong
        where = f"{error.filename}: " if error.filename else ""
        print(f"vavl: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2

    except KeyboardInterrupt:
        print("vavl: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


# Commands whose work is done when main() returns and that hold nothing to clean up at exit:
# their process ends at once instead of tearing torch and the models down (a third of a second).
QUICK_EXIT = {"predict", "info", "config", "extractors", "evaluate"}


def run() -> None:
    """The console script ``vavl``: :func:`main`, then exit."""
    code = main()
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    # A torchrun worker ends the same way once its process group is destroyed: tearing torch
    # down beside gloo's threads can abort the worker ("terminate called without an active
    # exception", seen once in CI after a finished run), and torchrun then fails the whole job.
    from vavl import distributed  # main() imported it already; its variables were checked

    if command in QUICK_EXIT or distributed.environment().world_size > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
