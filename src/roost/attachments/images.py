"""Image sizes and thumbnails with Pillow, off the event loop (the caller runs ``probe`` in a thread).

A decompression bomb (a small file that decodes to billions of pixels) is refused before it is decoded: Pillow
reads the size from the header first, and ``probe`` refuses more than ``max_pixels`` (Pillow's own
``DecompressionBombError`` past twice its limit is caught too). A file whose type was sniffed as an image but does
not decode is kept as a plain download (no width, height or thumbnail), not refused: its bytes are served with
``nosniff`` as what they were sniffed as, and a browser that fails to show it shows nothing.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["THUMB_PX", "Probe", "probe"]

THUMB_PX: Final = 320
"""A thumbnail fits in a square of this many pixels (never enlarged)."""


@dataclass(frozen=True)
class Probe:
    width: int
    height: int
    thumb: bytes | None
    """A PNG (for images with transparency or a palette) or JPEG no larger than ``THUMB_PX`` square; None when the
    image is small enough to be its own thumbnail."""
    thumb_type: str | None


class TooManyPixels(Exception):
    """The image's header declares more pixels than allowed: refused before decoding."""


def probe(path: Path, max_pixels: int) -> Probe | None:
    """The image's size and a thumbnail; None when the file does not decode as an image. Blocking: run it in a
    thread (``asyncio.to_thread``). Raises ``TooManyPixels`` past ``max_pixels``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise TooManyPixels(f"{width}x{height} pixels")
                image.load()
                if width <= THUMB_PX and height <= THUMB_PX and getattr(image, "n_frames", 1) == 1:
                    return Probe(width, height, None, None)
                thumb = ImageOps.exif_transpose(image) or image
                thumb = thumb.convert("RGBA" if _has_alpha(thumb) else "RGB")
                thumb.thumbnail((THUMB_PX, THUMB_PX))
                out = io.BytesIO()
                if thumb.mode == "RGBA":
                    thumb.save(out, "PNG", optimize=True)
                    kind = "image/png"
                else:
                    thumb.save(out, "JPEG", quality=80)
                    kind = "image/jpeg"
                return Probe(width, height, out.getvalue(), kind)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels(str(exc)) from None
    except (OSError, ValueError, SyntaxError, EOFError, UnidentifiedImageError):
        return None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
