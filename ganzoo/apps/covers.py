"""Writing covers as image files, optionally upscaled. Upscaling resamples (Lanczos by default): it makes larger
files, not more detail. Grids are written as a stream of pixel rows, one row of covers at a time, each cover
upscaled on its own, so a grid never has to fit in memory whole."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import numpy as np
import png
from PIL import Image

from ganzoo.runtime.files import atomic_file
from ganzoo.runtime.limits import RESAMPLING_FILTERS

RESAMPLING = {name: getattr(Image.Resampling, name.upper()) for name in RESAMPLING_FILTERS}
GRID_PADDING = 2
"""Black pixels around and between the covers of a grid (a grid of one cover is the cover alone)."""


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


def grid_padding(count: int) -> int:
    return GRID_PADDING if count > 1 else 0


def grid_shape(count: int, side: int, columns: int, scale: int = 1) -> tuple[int, int]:
    """(height, width) in pixels of a grid of ``count`` covers of ``side`` px, ``scale`` times larger."""
    padding = grid_padding(count)
    rows = -(-count // columns)
    cell = side * scale + padding
    return rows * cell + padding, columns * cell + padding


def grid_band_bytes(side: int, columns: int, scale: int = 1) -> int:
    """Memory one row of covers takes while a grid is written."""
    return (side * scale + GRID_PADDING) * grid_shape(columns, side, columns, scale)[1] * 3


def grid_rows(covers: np.ndarray, columns: int, scale: int = 1, resampling: str = "lanczos",
              ) -> Iterator[bytes]:
    """The pixel rows (RGB bytes) of a grid of uint8 covers (N, S, S, 3), built one row of covers at a time."""
    count, side = len(covers), covers.shape[1]
    padding = grid_padding(count)
    width = grid_shape(count, side, columns, scale)[1]
    cell = side * scale + padding
    for _ in range(padding):
        yield bytes(width * 3)
    for start in range(0, count, columns):
        band = np.zeros((cell, width, 3), dtype=np.uint8)
        for column, cover in enumerate(covers[start:start + columns]):
            left = padding + column * cell
            band[:side * scale, left:left + side * scale] = np.asarray(cover_image(cover, scale, resampling))
        for row in band:
            yield row.tobytes()


def write_grid(path: str | Path, covers: np.ndarray, columns: int, scale: int = 1, resampling: str = "lanczos",
               ) -> None:
    """Write uint8 covers (N, S, S, 3) as one PNG grid, streamed row by row, atomically."""
    height, width = grid_shape(len(covers), covers.shape[1], columns, scale)
    writer = png.Writer(width, height, greyscale=False, bitdepth=8)
    with atomic_file(path) as f:
        writer.write(f, grid_rows(covers, columns, scale, resampling))


def grid_array(covers: np.ndarray, columns: int, scale: int = 1, resampling: str = "lanczos") -> np.ndarray:
    """A grid of uint8 covers (N, S, S, 3) as one uint8 (H, W, 3) array, in memory (a frame of an animation)."""
    height, width = grid_shape(len(covers), covers.shape[1], columns, scale)
    return np.frombuffer(b"".join(grid_rows(covers, columns, scale, resampling)), np.uint8).reshape(height, width, 3)


def write_gif(path: str | Path, frames: list[np.ndarray], frame_ms: int) -> None:
    """Write uint8 (H, W, 3) frames as an animated GIF that loops forever, atomically."""
    images = [Image.fromarray(frame) for frame in frames]
    with atomic_file(path) as f:
        images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0)


JPEG_QUALITIES = (95, 90, 85, 75, 65)


def finished_cover(array: np.ndarray, size: int, upscaler, title: str | None = None, artist: str | None = None,
                   font: str | None = None, layout: str = "auto"):
    """A uint8 (S, S, 3) cover made ``size`` px by ``upscaler`` (an :class:`~ganzoo.Upscaler`), then lettered
    with ``title`` and ``artist`` at that size; with the lettering's placement (None without a title)."""
    from ganzoo.lettering import letter

    image = Image.fromarray(array)
    if size != image.width:
        image = upscaler.upscale(image, size)
    if not title:
        return image.convert("RGB"), None
    return letter(image, title, artist, font, layout)


def encoded_cover(image: Image.Image, file_format: str) -> bytes:
    """An RGB cover as PNG, or as JPEG (sRGB, no alpha) at the highest quality under distributors' 10 MB."""
    from ganzoo.runtime.limits import MAX_JPEG_BYTES

    buffer = io.BytesIO()
    if file_format == "png":
        image.save(buffer, "PNG")
        return buffer.getvalue()
    for quality in JPEG_QUALITIES:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality, subsampling=0 if quality >= 90 else 2)
        if buffer.tell() <= MAX_JPEG_BYTES:
            break
    return buffer.getvalue()
