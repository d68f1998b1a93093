"""A track's conditions from a features file (``--tracks FILE.csv``): looked up by an id, URI or URL that a
track id plugin understands (``spotify``), or taken from a pasted CSV row. The studio's track box and
``ganzoo generate --track`` both go through ``track_request``."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ganzoo.conditions import condition_for
from ganzoo.errors import GanzooError
from ganzoo.interfaces import Condition, TrackIds
from ganzoo.plugins import Registry


@dataclass
class TrackTable:
    """A features file keyed by track id (lower-cased column names), and the reader of its ids."""

    ids: TrackIds
    header: list[str] = field(default_factory=list)
    rows: dict[str, dict[str, str]] = field(default_factory=dict)
    path: str = ""

    def lookup(self, text: str) -> tuple[str, dict[str, str]] | None:
        """(id, row) of the track ``text`` names, or None when ``text`` names no track; a track that is not in the
        file is a GanzooError."""
        track = self.ids.parse(text)
        if track is None:
            return None
        if not self.rows:
            raise GanzooError(f"track {track} cannot be looked up: no features file was given (--tracks FILE.csv)")
        row = self.rows.get(track)
        if row is None:
            raise GanzooError(f"track {track} is not in the features file {self.path}")
        return track, row


def read_tracks(path: str | Path | None, registry: Registry, reader: str | None = None) -> TrackTable:
    """A features file (Kaggle-style CSV with a track id column) read with the track id plugin ``reader`` (the
    default one when None); an empty table when ``path`` is None."""
    ids = registry.create("track_ids", reader or registry.default("track_ids").name)
    if path is None:
        return TrackTable(ids)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip().lower() for h in next(reader, [])]
            id_column = next((c for c in ids.columns if c in header), None)
            if id_column is None:
                raise GanzooError(f"{path} has no track id column ({', '.join(ids.columns)})")
            rows = {}
            for values in reader:
                row = dict(zip(header, values))
                track = ids.parse(row.get(id_column, ""))
                if track is not None:
                    rows[track] = row
    except OSError as error:
        raise GanzooError(f"cannot read {path}: {error.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise GanzooError(f"{path} is not a readable CSV file: {error}") from None
    return TrackTable(ids, header, rows, str(path))


def track_request(text: str, table: TrackTable, conditions: Mapping[str, Condition]) -> tuple[str | None, dict]:
    """The condition values a track gives: ``text`` is a track id, URI or URL looked up in ``table``, or a CSV
    row of features (with its header line, or in the table's columns). Returns (track id or None, request with
    every column the checkpoint is conditioned on that the row has a value for)."""
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
                          f"({', '.join(sorted(known)) or 'none'})")
    return track, request
