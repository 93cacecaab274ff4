"""The ``vavl`` subcommands, in groups: each module declares its commands' arguments
(``add_parsers``) next to the handlers that call the library. Nothing here imports torch at
module level, so that ``--help`` and argument errors answer at once."""

from __future__ import annotations

from vavl.commands import experiments, extraction, predictions, serving

GROUPS = (experiments, extraction, predictions, serving)
