"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from vavl.errors import TrainingError

try:
    import fcntl
except ImportError:  # not a POSIX system: runs are not locked
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".vavl.lock"


def write_atomically(
    path: str | Path, write: Callable[[IO[bytes]], object], sync: bool = True
) -> Path:
    """Call ``write`` on a temporary file beside ``path``, flush it to disk, then rename it over
    (``sync`` False: not flushed to disk, for data that can be made again, such as a
    benchmark's)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    if not sync:
        return path
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def printable(text: str) -> str:
    """``text`` as valid Unicode: the bytes of a file name that is not UTF-8 (which Python keeps
    as lone surrogates) written as ``\\xe9`` escapes, everything else as it is."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Valid UTF-8 text (names that are not UTF-8 escaped: :func:`printable`)."""

    def write(handle: IO[bytes]) -> None:
        handle.write(printable(text).encode("utf-8"))

    return write_atomically(path, write)


def write_json_atomically(path: str | Path, value: Any) -> Path:
    text = json.dumps(_printable_strings(value), indent=2, ensure_ascii=False)
    return write_text_atomically(path, text + "\n")


def _printable_strings(value: Any) -> Any:
    """``value`` with every string (keys too) :func:`printable`."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {_printable_strings(k): _printable_strings(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable_strings(item) for item in value]
    return value


def cache_dir() -> Path:
    """Where vavl keeps files it derives once (``$VAVL_CACHE``, else the XDG cache)."""
    root = os.environ.get("VAVL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vavl"
    )
    return Path(root)


def read_json(path: str | Path) -> Any:
    """A JSON file written by :func:`write_json_atomically` (file names as their own bytes)."""
    return json.loads(Path(path).read_text(encoding="utf-8", errors="surrogateescape"))


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def csv_text(rows: Sequence[Mapping[str, Any]], fields: Sequence[str] | None = None) -> str:
    """Rows as CSV text with a header: ``fields``, or every key of the rows in order of first
    appearance (a row without one gets an empty cell). The one CSV writer of vavl's outputs."""
    names = list(fields) if fields is not None else list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _lock(handle: IO[str]) -> bool:
    """Take ``handle``'s exclusive lock without waiting; False while another process holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def claim_folder(folder: Path) -> IO[str]:
    """Lock a folder of this process's own for as long as the returned handle stays open, so
    that another process can tell it from one whose owner was killed."""
    handle = open(folder / LOCK_NAME, "w", encoding="utf-8")  # noqa: SIM115 (held open)
    _lock(handle)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def remove_abandoned(parent: Path, pattern: str) -> list[Path]:
    """Remove the folders in ``parent`` matching ``pattern`` that were claimed by a process now
    gone (killed before it could clean up); a folder still claimed, or never claimed, stays."""
    removed = []
    for folder in sorted(parent.glob(pattern)):
        lock = folder / LOCK_NAME
        if not lock.is_file() or fcntl is None:
            continue
        try:
            with open(lock, encoding="utf-8") as handle:
                if not _lock(handle):
                    continue
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue  # another user's folder, or one going away: not ours to clean
        removed.append(folder)
    return removed


@contextmanager
def run_directory_lock(folder: str | Path) -> Iterator[None]:
    """Hold ``folder``'s lock for the block: a second process writing the same run directory
    is refused with one line naming the holder's PID. The kernel releases the lock when its
    holder ends, however it ends (the file ``.vavl.lock`` stays, with the last holder's PID)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_NAME, "a+", encoding="utf-8") as handle:
        if not _lock(handle):
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise TrainingError(
                f"{folder}: in use by another vavl process (PID {holder}); wait for it to "
                "end, or give another --run-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
