"""Print the lowest versions pyproject.toml declares, as pins (``name==floor``), for pip.

``make test-min`` installs these (``--constraint``) and runs the fast tests, so that every
``>=`` in pyproject.toml is a version the code was seen to work with. torch is left out: only
the local CPU build can be installed here (its floor is stated from the APIs used).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

UNTESTED = {"torch"}


def floors(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    pins = []
    for requirement in wanted:
        if ";" in requirement:  # an environment marker: not for this interpreter
            continue
        found = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)\s*>=\s*([^,\s]+).*", requirement)
        if found and found.group(1).split("[")[0] not in UNTESTED:
            pins.append(f"{found.group(1)}=={found.group(2)}")
    return pins


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    print("\n".join(floors(root / "pyproject.toml", sys.argv[1:])))
