"""Writing covers as image files, optionally upscaled. Upscaling resamples (Lanczos by default): it makes larger
files, not more detail."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

RESAMPLING = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC,
              "nearest": Image.Resampling.NEAREST}
MAX_UPSCALE = 16


def cover_image(array: np.ndarray, scale: int = 1, resampling: str = "lanczos") -> Image.Image:
    """A uint8 (S, S, 3) cover as a PIL image, ``scale`` times larger with the named filter."""
    image = Image.fromarray(array)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), RESAMPLING[resampling])
    return image


def png_bytes(array: np.ndarray, scale: int = 1, resampling: str = "lanczos") -> bytes:
    buffer = io.BytesIO()
    cover_image(array, scale, resampling).save(buffer, "PNG")
    return buffer.getvalue()
