"""Titles and artists set on covers, legibly: fonts (``ganzoo fonts``) and placement (flattest region, WCAG
contrast)."""

from ganzoo.lettering.fonts import DEFAULT_FONT, Font, find_font, font_for, installed_fonts
from ganzoo.lettering.layout import LAYOUTS, MIN_CONTRAST, Placement, contrast_ratio, letter

__all__ = ["DEFAULT_FONT", "Font", "LAYOUTS", "MIN_CONTRAST", "Placement", "contrast_ratio", "find_font", "font_for",
           "installed_fonts", "letter"]
