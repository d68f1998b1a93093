"""A track's conditions from a features file (``--tracks FILE.csv``): looked up by an id, URI or URL that a
track id plugin understands (``spotify``), or taken from a pasted CSV row. The studio's track box and
``ganzoo generate --track`` both go through ``track_request``.

The file is never held in memory: a lookup reads it line by line (lines of at most ``MAX_LINE`` bytes) and
parses only the lines that hold the id's text, so a features file of any size costs one line of memory.
"""

from __future__ import annotations

import csv
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ganzoo.engine.conditioning import condition_for
from ganzoo.api.errors import GanzooError
from ganzoo.api.interfaces import Condition, TrackIds
from ganzoo.registry.components import Registry

MAX_LINE = 64 * 1024
"""The longest line a features file may have, in bytes: a row of features is a few hundred."""
TITLE_COLUMNS = ("track_name", "name", "title")
ARTIST_COLUMNS = ("artist_name", "artists", "artist")
"""Where a features file keeps a track's title and artist (the first of each that the row has a value in)."""


@dataclass
class TrackTable:
    """A features file (lower-cased column names), read line by line on each lookup, and the reader of its ids.
    Without a file (``path`` empty) it knows no track."""

    ids: TrackIds
    header: list[str] = field(default_factory=list)
    id_column: int = 0
    path: str = ""

    def lines(self):
        """(line number, text) of every line after the header, each at most MAX_LINE bytes of UTF-8."""
        with open(self.path, "rb") as f:
            for number, line in enumerate(iter(lambda: f.readline(MAX_LINE + 1), b""), start=1):
                yield number, decoded_line(line, number, self.path)

    def lookup(self, text: str) -> tuple[str, dict[str, str]] | None:
        """(id, row) of the track ``text`` names, or None when ``text`` names no track; a track that is not in the
        file is a GanzooError."""
        track = self.ids.parse(text)
        if track is None:
            return None
        if not self.path:
            raise GanzooError(f"track {track} cannot be looked up: no features file was given (--tracks FILE.csv)")
        for number, line in self.lines():
            if number == 1 or track not in line:
                continue
            values = next(csv.reader([line]), [])
            if len(values) > self.id_column and self.ids.parse(values[self.id_column]) == track:
                return track, dict(zip(self.header, values))
        raise GanzooError(f"track {track} is not in the features file {self.path}")


def decoded_line(line: bytes, number: int, path: str | Path) -> str:
    """One line of a text file as a string; too long or not UTF-8 is a GanzooError naming the line."""
    if len(line) > MAX_LINE:
        raise GanzooError(f"line {number} of {path} is longer than {MAX_LINE // 1024} KiB; this is not a features "
                          "file")
    try:
        return line.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise GanzooError(f"line {number} of {path} is not UTF-8 (byte {line[error.start]:#04x} at column "
                          f"{error.start + 1}); convert it, e.g. iconv -f latin1 -t utf-8") from None


def read_tracks(path: str | Path | None, registry: Registry, reader: str | None = None) -> TrackTable:
    """A features file (Kaggle-style CSV with a track id column) to look tracks up in with the track id plugin
    ``reader`` (the default one when None); only its header is read now. A table without a file when ``path``
    is None."""
    ids = registry.create("track_ids", reader or registry.default("track_ids").name)
    if path is None:
        return TrackTable(ids)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise GanzooError(f"{path} is not a regular file; give a features CSV file")
        with open(path, "rb") as f:
            first = f.readline(MAX_LINE + 1)
    except OSError as error:
        raise GanzooError(f"cannot read {path}: {error.strerror}") from None
    try:
        header = [h.strip().lower() for h in next(csv.reader([decoded_line(first, 1, path)]), [])]
    except csv.Error as error:
        raise GanzooError(f"{path} is not a readable CSV file: {error}") from None
    id_column = next((c for c in ids.columns if c in header), None)
    if id_column is None:
        raise GanzooError(f"{path} has no track id column ({', '.join(ids.columns)})")
    return TrackTable(ids, header, header.index(id_column), str(path))


@dataclass(frozen=True)
class TrackRequest:
    """What a track gives: its id (None for a pasted row), the condition values, and its title and artist when
    the row has them (to letter on its cover)."""

    track: str | None
    request: dict[str, Any]
    title: str | None = None
    artist: str | None = None


def names_of(row: Mapping[str, str]) -> tuple[str | None, str | None]:
    """A row's title and artist; a list of artists as some features files write it (``['A', 'B']``) is "A, B"."""
    def first(columns):
        return next((row[c].strip() for c in columns if (row.get(c) or "").strip()), None)

    artist = first(ARTIST_COLUMNS)
    if artist and artist.startswith("[") and artist.endswith("]"):
        artist = ", ".join(part.strip().strip("'\"") for part in artist[1:-1].split(",") if part.strip()) or None
    return first(TITLE_COLUMNS), artist


def track_request(text: str, table: TrackTable, conditions: Mapping[str, Condition]) -> TrackRequest:
    """The condition values a track gives: ``text`` is a track id, URI or URL looked up in ``table``, or a CSV
    row of features (with its header line, or in the table's columns): every column the checkpoint is
    conditioned on that the row has a value for."""
    text = text.strip()
    if not text:
        raise GanzooError("give a track id, a spotify:track: URI, or a CSV row of features")
    found = table.lookup(text) if "\n" not in text and "," not in text else None
    if found is not None:
        track, row = found
    else:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) == 1 and not table.header:
            raise GanzooError("give the CSV header line too (or a features file with --tracks FILE.csv)")
        header = next(csv.reader([lines[0]])) if len(lines) > 1 else table.header
        track, row = None, dict(zip((h.strip().lower() for h in header), next(csv.reader([lines[-1]]))))
    known = {column for condition in conditions.values() for column in condition.columns}
    request: dict[str, Any] = {}
    for name in sorted(known & set(row)):
        if row[name].strip():
            request[name] = condition_for(conditions, name).parse(name, row[name].strip())
    if not request:
        raise GanzooError(f"the track has no value for any feature this checkpoint knows "
                          f"({', '.join(sorted(known)) or 'no features'})")
    return TrackRequest(track, request, *names_of(row))
