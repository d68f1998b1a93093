"""The fonts lettering can use: those matplotlib ships (the DejaVu family, open licences) and the system's (found
afresh in every process: a font installed a minute ago counts), named by their file's stem (``DejaVuSans-Bold``),
or any TrueType/OpenType file (or a collection's first face) given by path. A text is set in one font: the one
asked for when it has a glyph for every character, else the first installed font that has them all."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ganzoo.api.errors import GanzooError

DEFAULT_FONT = "DejaVuSans-Bold"
FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
PLACEHOLDER_FONTS = ("LastResort",)
"""Fonts whose glyphs are boxes naming a code point's block (every character "found", none legible): never a
fallback."""


@dataclass(frozen=True)
class Font:
    name: str
    family: str
    style: str
    weight: int
    path: Path


@lru_cache(maxsize=1)
def installed_fonts() -> tuple[Font, ...]:
    """Every TrueType/OpenType font file matplotlib ships and the system has (matplotlib's font search, not its
    cached list, which misses fonts installed after it was made), one per file, matplotlib's own first."""
    from matplotlib import font_manager

    bundled = Path(font_manager.__file__).parent / "mpl-data" / "fonts" / "ttf"
    paths = [*sorted(font_manager.findSystemFonts(fontpaths=[str(bundled)])), *sorted(font_manager.findSystemFonts())]
    seen, fonts = set(), []
    for path in map(Path, paths):
        if path.suffix.lower() not in FONT_SUFFIXES or path in seen or path.stem.startswith(PLACEHOLDER_FONTS):
            continue
        seen.add(path)
        try:
            entry = font_manager.ttfFontProperty(font_manager.get_font(str(path)))
        except (OSError, RuntimeError, ValueError):
            continue
        fonts.append(Font(path.stem, entry.name, entry.style, int(entry.weight), path))
    return tuple(sorted(fonts, key=lambda font: (not font.path.is_relative_to(bundled), font.name)))


def find_font(name_or_path: str | None) -> Font:
    """The font a ``--font`` value names: an installed font's name, or a font file's path."""
    wanted = name_or_path or DEFAULT_FONT
    path = Path(wanted)
    if path.suffix.lower() in FONT_SUFFIXES:
        if not path.is_file():
            raise GanzooError(f"no such font file: {wanted}")
        return Font(path.stem, path.stem, "normal", 400, path)
    for font in installed_fonts():
        if font.name.lower() == wanted.lower():
            return font
    raise GanzooError(f"unknown font {wanted!r}: `ganzoo fonts` lists the installed ones; or give a .ttf/.otf file")


@lru_cache(maxsize=256)
def characters_of(path: Path) -> frozenset[int]:
    """The code points a font file has glyphs for (its best Unicode cmap)."""
    from fontTools.ttLib import TTFont, TTLibError

    try:
        with TTFont(path, lazy=True, fontNumber=0) as font:
            return frozenset(font.getBestCmap() or {})
    except (OSError, TTLibError, KeyError, AssertionError) as error:
        raise GanzooError(f"{path} is not a font ganzoo can read ({error})") from None


def font_for(text: str, wanted: Font) -> Font:
    """``wanted`` when it has every character of ``text``, else the first installed font that has them all."""
    needed = {ord(character) for character in text if not character.isspace()}
    missing = needed - characters_of(wanted.path)
    if not missing:
        return wanted
    for font in installed_fonts():
        if needed <= safe_characters(font.path):
            return font
    readable = set().union(*(safe_characters(font.path) for font in installed_fonts()))
    absent = [character for character in text if not character.isspace() and ord(character) not in readable]
    if absent:
        raise GanzooError(f"no installed font has the character {absent[0]!r} (U+{ord(absent[0]):04X}) of {text!r}: "
                          "give --font a file that has it (e.g. a Noto font for its script)")
    raise GanzooError(f"no one installed font has every character of {text!r}: give --font a file that has them all")


def safe_characters(path: Path) -> frozenset[int]:
    try:
        return characters_of(path)
    except GanzooError:
        return frozenset()
