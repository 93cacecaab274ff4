"""What every command module shares."""

from __future__ import annotations

import argparse

# What ``ArgumentParser.add_subparsers()`` returns, where each module adds its commands.
Subcommands = argparse._SubParsersAction
