"""Lettering a cover: a title (and an artist under it) set as large as the cover's width allows, where the cover
is flattest, in a colour that contrasts with everything under it by at least 4.5:1 (WCAG 2's ratio for text),
on a translucent band only where no colour reaches that on the bare cover. Text is drawn on the image it is
given, at that image's resolution: letter a cover after upscaling it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ganzoo.api.errors import GanzooError
from ganzoo.lettering.fonts import Font, find_font, font_for
from ganzoo.runtime.limits import LAYOUTS
MIN_CONTRAST = 4.5
ROWS = {"top": 0.13, "centre": 0.5, "bottom": 0.87}
"""Where each fixed layout centres the text block, as a share of the cover's height; auto tries these and the
rows between them."""
AUTO_ROWS = (0.13, 0.3, 0.5, 0.7, 0.87)
WIDTH_SHARE, HEIGHT_SHARE = 0.8, 0.24
"""The text block's largest share of the cover's width and height."""
PADDING, MARGIN = 0.03, 0.04
"""Space around the text inside its box (and band), and between the box and the cover's edges, as shares of the
cover's side."""
ARTIST_SCALE = 0.55
"""The artist line's size as a share of the title's."""
MAX_TEXT = 200
BAND_OPACITIES = tuple(round(0.1 * step, 1) for step in range(3, 11))


@dataclass(frozen=True)
class Placement:
    """Where and how a text was set: its block's box (left, top, right, bottom), the font and title size, the
    text colour, the band's colour and opacity (0: no band) and the lowest contrast of the text colour against
    any pixel under the box."""

    box: tuple[int, int, int, int]
    font: str
    size: int
    colour: tuple[int, int, int]
    band: tuple[tuple[int, int, int], float]
    contrast: float


_CHANNEL = np.arange(256) / 255.0
LINEAR = np.where(_CHANNEL <= 0.04045, _CHANNEL / 12.92, ((_CHANNEL + 0.055) / 1.055) ** 2.4)
"""sRGB's transfer function undone, for each 8-bit channel value."""


def relative_luminance(rgb) -> np.ndarray:
    """WCAG 2's relative luminance of 8-bit sRGB colours (..., 3)."""
    channels = np.clip(np.rint(np.asarray(rgb, dtype=np.float64)), 0, 255).astype(np.uint8)
    return LINEAR[channels] @ np.array([0.2126, 0.7152, 0.0722])


def contrast_ratio(first, second) -> np.ndarray:
    """WCAG 2's contrast ratio (1 to 21) between 8-bit sRGB colours, elementwise."""
    a, b = relative_luminance(first), relative_luminance(second)
    return (np.maximum(a, b) + 0.05) / (np.minimum(a, b) + 0.05)


def lowest_contrast(luminance: np.ndarray, colour) -> float:
    """The lowest contrast of ``colour`` against pixels of these luminances: against the one nearest its own."""
    own = float(relative_luminance(np.array(colour)))
    nearest = float(luminance.reshape(-1)[np.abs(luminance.reshape(-1) - own).argmin()])
    return (max(own, nearest) + 0.05) / (min(own, nearest) + 0.05)


def text_lines(title: str, artist: str | None) -> list[str]:
    lines = [" ".join(text.split()) for text in (title, artist or "")]
    if not lines[0]:
        raise GanzooError("the title is empty")
    for line in lines:
        if len(line) > MAX_TEXT:
            raise GanzooError(f"a title or artist of {len(line)} characters is too long to letter (at most {MAX_TEXT})")
        if any(not character.isprintable() for character in line):
            raise GanzooError(f"{line!r} holds a control character")
    return [line for line in lines if line]


class Block:
    """The lines of a text set in one font: the title at ``size`` px, the artist at ``ARTIST_SCALE`` of it."""

    def __init__(self, lines: list[str], font: Font, size: int):
        self.lines, self.font, self.size = lines, font, size
        self.fonts = [ImageFont.truetype(str(font.path), max(1, round(size * (1 if i == 0 else ARTIST_SCALE))))
                      for i in range(len(lines))]
        self.boxes = [f.getbbox(line, anchor="ms") for f, line in zip(self.fonts, lines)]
        self.gap = round(0.25 * size)
        self.width = max(right - left for left, _, right, _ in self.boxes)
        self.height = sum(bottom - top for _, top, _, bottom in self.boxes) + self.gap * (len(lines) - 1)

    def centre_near(self, side: int, y: float) -> float:
        """The row nearest ``y`` that keeps the block's box inside the cover's margins."""
        half = self.height / 2 + max(2, round(PADDING * side))
        low, high = MARGIN * side + half, side - MARGIN * side - half
        return min(max(y, low), high) if low <= high else side / 2

    def box_at(self, side: int, centre_y: float) -> tuple[int, int, int, int]:
        pad = max(2, round(PADDING * side))
        top = round(centre_y - self.height / 2)
        left = round((side - self.width) / 2)
        box = (left - pad, top - pad, left + self.width + pad, top + self.height + pad)
        return (max(0, box[0]), max(0, box[1]), min(side, box[2]), min(side, box[3]))

    def draw(self, image: Image.Image, centre_y: float, colour: tuple[int, int, int]) -> None:
        draw = ImageDraw.Draw(image)
        y = centre_y - self.height / 2
        for font, line, (left, top, right, bottom) in zip(self.fonts, self.lines, self.boxes):
            draw.text((image.width / 2 - (left + right) / 2, y - top), line, font=font, fill=colour, anchor="ms")
            y += bottom - top + self.gap


def fitted_block(lines: list[str], font: Font, side: int) -> Block:
    """The lines at the largest title size (a binary search) whose block fits the cover's width and height
    shares."""
    low, high = 1, max(2, side)
    while high - low > 1:
        middle = (low + high) // 2
        block = Block(lines, font, middle)
        if block.width <= WIDTH_SHARE * side and block.height <= HEIGHT_SHARE * side:
            low = middle
        else:
            high = middle
    return Block(lines, font, low)


FLATNESS_SIDE = 256
"""The side of the copy whose luminance says where a cover is flat."""


def flatness(luminance: np.ndarray, side: int, box: tuple[int, int, int, int]) -> float:
    """How busy the cover is under a box: the standard deviation of its luminance there (lower is flatter), read
    on a ``luminance`` map of a copy of the ``side`` px cover."""
    scale = len(luminance) / side
    left, top, right, bottom = (int(round(edge * scale)) for edge in box)
    return float(luminance[top:max(bottom, top + 1), left:max(right, left + 1)].std())


def best_colour(under: np.ndarray) -> tuple[tuple[int, int, int], float]:
    """The text colour whose lowest contrast against the pixels ``under`` (N, 3) is highest: white, black, or the
    pixels' mean hue made very light or very dark (preferred when it reaches ``MIN_CONTRAST``)."""
    mean = under.mean(axis=0)
    candidates = [tuple(int(round(255 - 0.12 * (255 - c))) for c in mean), tuple(int(round(0.12 * c)) for c in mean),
                  (255, 255, 255), (0, 0, 0)]
    luminance = relative_luminance(under)
    scored = [(colour, lowest_contrast(luminance, colour)) for colour in candidates]
    tinted = [pair for pair in scored[:2] if pair[1] >= MIN_CONTRAST]
    return max(tinted or scored, key=lambda pair: pair[1])


def banded(pixels: np.ndarray, band: tuple[int, int, int], opacity: float) -> np.ndarray:
    """``pixels`` under a band of ``band`` colour at ``opacity``, as uint8."""
    return np.round(pixels * (1 - opacity) + np.array(band) * opacity).astype(np.uint8)


def with_band(under: np.ndarray, colour: tuple[int, int, int]) -> tuple[tuple[int, int, int], float, float]:
    """The least opaque band (black under light text, white under dark) that gives ``colour`` a contrast of at
    least ``MIN_CONTRAST`` against every pixel ``under`` it, and that contrast."""
    band = (0, 0, 0) if relative_luminance(np.array(colour)) > 0.5 else (255, 255, 255)
    for opacity in BAND_OPACITIES:
        contrast = lowest_contrast(relative_luminance(banded(under, band, opacity)), colour)
        if contrast >= MIN_CONTRAST:
            return band, opacity, contrast
    return band, 1.0, float(contrast_ratio(np.array(band), np.array(colour)))


def letter(image: Image.Image, title: str, artist: str | None = None, font: str | None = None,
           layout: str = "auto") -> tuple[Image.Image, Placement]:
    """``image`` (RGB, square) with ``title`` and ``artist`` set on it, and where they went."""
    if layout not in LAYOUTS:
        raise GanzooError(f"unknown layout {layout!r}: one of {', '.join(LAYOUTS)}")
    lines = text_lines(title, artist)
    chosen = font_for("".join(lines), find_font(font))
    side = image.width
    block = fitted_block(lines, chosen, side)
    pixels = np.asarray(image.convert("RGB"))
    rows = AUTO_ROWS if layout == "auto" else (ROWS[layout],)
    small = image.convert("RGB").resize((min(side, FLATNESS_SIDE),) * 2, Image.Resampling.BOX)
    luminance = relative_luminance(np.asarray(small))
    centre_y = min((block.centre_near(side, row * side) for row in rows),
                   key=lambda y: flatness(luminance, side, block.box_at(side, y)))
    box = block.box_at(side, centre_y)
    under = pixels[box[1]:box[3], box[0]:box[2]].reshape(-1, 3).astype(np.float64)
    colour, contrast = best_colour(under)
    band: tuple[tuple[int, int, int], float] = ((0, 0, 0), 0.0)
    if contrast < MIN_CONTRAST:
        band_colour, opacity, contrast = with_band(under, colour)
        band = (band_colour, opacity)
        pixels = pixels.copy()
        pixels[box[1]:box[3], box[0]:box[2]] = banded(pixels[box[1]:box[3], box[0]:box[2]], band_colour, opacity)
    result = Image.fromarray(pixels)
    block.draw(result, centre_y, colour)
    return result, Placement(box, chosen.name, block.size, colour, band, contrast)
