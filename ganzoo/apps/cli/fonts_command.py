"""``ganzoo fonts``: the fonts ``generate --title`` can letter with."""

from __future__ import annotations

import click

from ganzoo.api.errors import GanzooError


@click.command("fonts")
@click.option("--has", "text", metavar="TEXT", help="Only fonts with a glyph for every character of TEXT.")
def fonts_command(text):
    """List the installed fonts lettering can use (matplotlib's own first, then the system's), by the name
    --font takes."""
    from ganzoo.lettering.fonts import DEFAULT_FONT, installed_fonts, safe_characters

    needed = {ord(character) for character in text or "" if not character.isspace()}
    listed = [font for font in installed_fonts() if needed <= safe_characters(font.path)]
    if not listed:
        raise GanzooError(f"no installed font has every character of {text!r}")
    for font in listed:
        default = " (default)" if font.name == DEFAULT_FONT else ""
        click.echo(f"{font.name}{default}: {font.family}, {font.style}, weight {font.weight}  {font.path}")
