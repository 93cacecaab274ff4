"""Still images: which format a file's first bytes announce, and decoding one safely (its
size checked before a single pixel is decoded) into an upright RGB array."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from vavl.errors import MediaError

# First bytes of the still-image formats we read (Pillow's name for each).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
IMAGE_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"BM", "BMP"))
# Larger images are refused before they are decoded (a 16-bit 8K photo has 33 megapixels).
MAX_IMAGE_PIXELS = 64_000_000


def image_format_of(head: bytes) -> str | None:
    """``JPEG``, ``PNG``, ``WEBP`` or ``BMP`` when these first 12 bytes start such an image."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((name for signature, name in IMAGE_SIGNATURES if head.startswith(signature)), None)


def image_format(path: str | Path) -> str | None:
    """The still-image format a file's first bytes announce, whatever its name (None: not one)."""
    with open(path, "rb") as handle:
        return image_format_of(handle.read(12))


def opened_image(source: str | Path | BinaryIO, name: str) -> Image.Image:
    """An image opened (its header read, nothing decoded) and checked to be of a size worth
    decoding: a small file can declare billions of pixels (a decompression bomb)."""
    try:
        image = Image.open(source)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise MediaError(f"{name}: cannot be read as an image: {reason}") from None
    except Image.DecompressionBombError:
        image = None
    if image is None or image.width * image.height > MAX_IMAGE_PIXELS:
        size = "" if image is None else f" ({image.width} x {image.height} pixels)"
        raise MediaError(
            f"{name}: image too large{size}: at most {MAX_IMAGE_PIXELS // 10**6} megapixels "
            "are read"
        )
    return image


def decode_image(
    source: str | Path | BinaryIO, name: str, max_side: int | None = None
) -> NDArray[np.uint8]:
    """An image file (or its bytes) as an upright (height, width, 3) RGB array, downscaled to
    ``max_side``."""
    with opened_image(source, name) as opened:
        try:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        except (OSError, ValueError, SyntaxError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise MediaError(f"{name}: cannot be read as an image: {reason}") from None
    width, height = scaled_size(image.width, image.height, max_side)
    if (width, height) != image.size:
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def read_image(path: str | Path, max_side: int | None = None) -> NDArray[np.uint8]:
    """A still image file as an upright (height, width, 3) RGB array, downscaled to
    ``max_side``."""
    return decode_image(path, str(path), max_side)


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    # Even sizes keep swscale's chroma handling exact.
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)
