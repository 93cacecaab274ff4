"""Opening media files: only regular files are read, FFmpeg's failures become one line naming
the file, and what a file's header declares (to tell a truncated file) is read here."""

from __future__ import annotations

import errno
import io
import os
import stat
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.logging

from vavl.errors import MediaError
from vavl.images import IMAGE_SUFFIXES


def seconds_of(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


ISO_BOX_TYPES = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot", b"uuid"}


def _ffmpeg_reason(error: Exception, path: Path) -> str:
    """The most telling part of a PyAV error (FFmpeg's own log line says more than errno)."""
    log = getattr(error, "log", None)
    detail = str(log[2]).strip() if isinstance(log, tuple) and len(log) > 2 else ""
    if "moov atom not found" in detail:
        with open(path, "rb") as handle:
            box_type = handle.read(8)[4:]
        if box_type not in ISO_BOX_TYPES:
            return "its content is not MP4/MOV (nor any format FFmpeg knows), whatever its name"
        return "truncated or unfinished MP4/MOV (moov atom not found)"
    if isinstance(error, av.error.InvalidDataError) and not detail:
        return "not audio or video that FFmpeg can read (invalid data)"
    reason = getattr(error, "strerror", None) or str(error)
    return f"{reason} ({detail})" if detail and detail not in reason else reason


class _Unnamed(io.RawIOBase):
    """A file read without its name (see :func:`open_container`)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 - closed with this reader

    def readinto(self, buffer: Any) -> int:
        return self._file.readinto(buffer)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()
        super().close()


def open_container(path: str | Path) -> Any:
    """``av.open`` with the failures a user can act on turned into one-line :class:`MediaError`."""
    path = Path(path)
    check_readable(path)
    # FFmpeg explains failures only in its log: capture it while opening (and keep it quiet).
    previous_level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    # FFmpeg picks a demuxer by the name first: a file named like a picture that is none (an
    # MP3 renamed .jpg, say) is given to it without a name, so that its content decides.
    source: str | _Unnamed = str(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        source = _Unnamed(path)
    try:
        with av.logging.Capture():
            return av.open(source, metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
        reason = _ffmpeg_reason(error, path)
    finally:
        av.logging.set_level(previous_level)
    raise MediaError(f"{path}: cannot be read as audio or video: {reason}")


def check_readable(path: str | Path) -> None:
    """One-line :class:`MediaError` unless ``path`` is a regular file this process can open
    (a named pipe would block a reader forever; a device never ends)."""
    path = Path(path)
    try:
        status = path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise MediaError(f"{path}: a loop of symbolic links") from None
        if path.is_symlink():
            raise MediaError(f"{path}: broken symbolic link (to {os.readlink(path)})") from None
        raise MediaError(f"{path}: file not found") from None
    if stat.S_ISDIR(status.st_mode):
        raise MediaError(f"{path}: is a folder, not a media file")
    if not stat.S_ISREG(status.st_mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(status.st_mode) else "a special file"
        raise MediaError(f"{path}: {kind}, not a media file: only regular files are read")
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise MediaError(f"{path}: cannot be read ({error.strerror or error})") from None
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")


def declared_audio_seconds(path: Path, container: Any, stream: Any) -> float | None:
    """How long the file's header says the audio stream is (the container's length when the
    stream does not say). FFmpeg clamps a WAV's length to the bytes present, so a WAV's own
    header is read."""
    if container.format.name == "wav":
        return _wav_declared_seconds(path)
    own = seconds_of(stream.duration, stream.time_base)
    if own:
        return own
    return container.duration / av.time_base if container.duration else None


WAV_HEADER_BYTES = 4096  # where a WAV's fmt and data chunks start


def _wav_declared_seconds(path: Path) -> float | None:
    """The length a RIFF/WAVE header declares: its data chunk's size over its byte rate (None
    for a header written while streaming, which declares no size)."""
    with open(path, "rb") as handle:
        header = handle.read(WAV_HEADER_BYTES)
    offset, byte_rate = 12, 0
    while offset + 8 <= len(header):
        name, size = (
            header[offset : offset + 4],
            int.from_bytes(header[offset + 4 : offset + 8], "little"),
        )
        if name == b"fmt " and offset + 20 <= len(header):
            byte_rate = int.from_bytes(header[offset + 16 : offset + 20], "little")
        if name == b"data":
            unknown = size in (0, 0xFFFFFFFF)
            return None if unknown or not byte_rate else size / byte_rate
        offset += 8 + size + size % 2
    return None
