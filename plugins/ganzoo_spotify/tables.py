"""Kaggle-style CSV files: attach audio features to a collection, or import tracks and covers without the API."""

from __future__ import annotations

import csv
import hashlib
import math
import os
from pathlib import Path
from typing import Iterator

from ganzoo import GanzooError
from ganzoo_conditions import AUDIO_FEATURES
from ganzoo_spotify.catalog import COVERS_DIR, Catalog
from ganzoo_spotify.collect import IMAGE_EXTENSIONS, check_image
from ganzoo_spotify.web import spotify_id

TRACK_ID_COLUMNS = ("track_id", "id", "track_uri", "uri", "spotify_id")
TRACK_NAME_COLUMNS = ("track_name", "name")
ALBUM_NAME_COLUMNS = ("album_name", "album")
ALBUM_ID_COLUMNS = ("album_id", "album_uri")
ARTIST_COLUMNS = ("artist_name", "artist_names", "artists", "artist")
IMAGE_COLUMNS = ("image_url", "album_cover", "cover_url", "album_image", "image", "image_path", "cover", "file")


def first_column(columns: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {column.lower(): column for column in columns}
    return next((lowered[name] for name in names if name in lowered), None)


def read_table(path: Path) -> tuple[list[str], Iterator[dict[str, str]], str]:
    """Columns, a row iterator and the track-id column of a CSV; GanzooError when it has no track ids."""
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as error:
        raise GanzooError(f"cannot read {path}: {error.strerror}") from None
    reader = csv.DictReader(handle)
    columns = list(reader.fieldnames or [])
    id_column = first_column(columns, TRACK_ID_COLUMNS)
    if id_column is None:
        handle.close()
        raise GanzooError(f"{path} has no track id column (one of {', '.join(TRACK_ID_COLUMNS)}); it has: "
                          f"{', '.join(columns) or 'no header'}")

    def rows():
        with handle:
            try:
                yield from reader
            except csv.Error as error:
                raise GanzooError(f"{path} is not valid CSV (line {reader.line_num}): {error}") from None
    return columns, rows(), id_column


def feature_values(row: dict[str, str], columns: dict[str, str]) -> tuple[dict[str, float | None], int]:
    """The row's audio features (None when blank), and how many values were unreadable or out of range."""
    values, invalid = {}, 0
    for name, column in columns.items():
        text = (row.get(column) or "").strip()
        if not text:
            values[name] = None
            continue
        low, high, _ = AUDIO_FEATURES[name]
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low <= value <= high):
            values[name] = None
            invalid += 1
        else:
            values[name] = value
    return values, invalid


def rows_with_track_ids(rows: Iterator[dict[str, str]], id_column: str, report: dict):
    """(track id, row) for each row whose id column holds a bare id, a URI or a URL; counts the rows in ``report``."""
    for row in rows:
        report["rows"] += 1
        track_id = spotify_id(row.get(id_column) or "", "track")
        if track_id is None:
            report["rows_without_track_id"] += 1
            continue
        yield track_id, row


def write_features(catalog: Catalog, tx, track_id: str, values: dict[str, float | None], source: str) -> None:
    popularity = values.pop("popularity", None)
    if any(v is not None for v in values.values()):
        catalog.store_features(tx, track_id, source, values)
    if popularity is not None:
        tx.execute("UPDATE tracks SET popularity = COALESCE(popularity, ?) WHERE id = ?", (popularity, track_id))


def attach_features(catalog: Catalog, path: str | Path) -> dict:
    """Join a features CSV to the collection by track id (bare ids or spotify:track: URIs)."""
    path = Path(path)
    columns, rows, id_column = read_table(path)
    feature_columns = {name: column for name in AUDIO_FEATURES if (column := first_column(columns, (name,)))}
    if not feature_columns:
        raise GanzooError(f"{path} has none of the audio feature columns ({', '.join(AUDIO_FEATURES)})")
    known = {track_id for (track_id,) in catalog.db.execute("SELECT id FROM tracks")}
    report = {"rows": 0, "rows_without_track_id": 0, "matched_rows": 0, "unmatched_rows": 0, "invalid_values": 0}
    matched: set[str] = set()
    with catalog.transaction() as tx:
        for track_id, row in rows_with_track_ids(rows, id_column, report):
            if track_id not in known:
                report["unmatched_rows"] += 1
                continue
            values, invalid = feature_values(row, feature_columns)
            report["invalid_values"] += invalid
            write_features(catalog, tx, track_id, values, f"file:{path.name}")
            report["matched_rows"] += 1
            matched.add(track_id)
    report["matched_tracks"] = len(matched)
    report["tracks_in_collection"] = len(known)
    report["tracks_without_features"] = catalog.scalar(
        "SELECT COUNT(*) FROM tracks t WHERE NOT EXISTS "
        "(SELECT 1 FROM features f WHERE f.track_id = t.id AND f.danceability IS NOT NULL)")
    report["feature_columns"] = sorted(feature_columns)
    return report


def image_key(reference: str) -> str:
    """A stable album key for a cover known only by its URL or path."""
    return "img" + hashlib.sha1(reference.encode()).hexdigest()[:19]


def import_table(catalog: Catalog, path: str | Path) -> dict:
    """Record a Kaggle-style CSV's tracks, albums, features and covers. Image URLs are left pending for the
    downloader; image paths (relative to the CSV's folder) are checked and copied into the collection."""
    path = Path(path)
    columns, rows, id_column = read_table(path)
    feature_columns = {name: column for name in AUDIO_FEATURES if (column := first_column(columns, (name,)))}
    names = {key: first_column(columns, options) for key, options in
             (("track", TRACK_NAME_COLUMNS), ("album", ALBUM_NAME_COLUMNS), ("album_id", ALBUM_ID_COLUMNS),
              ("artist", ARTIST_COLUMNS), ("image", IMAGE_COLUMNS))}
    if names["image"] is None:
        raise GanzooError(f"{path} has no image column (one of {', '.join(IMAGE_COLUMNS)}); to add features to "
                          "a collection, use attach-features")
    report = {"rows": 0, "rows_without_track_id": 0, "rows_without_image": 0, "invalid_values": 0,
              "image_files_copied": 0, "image_files_unusable": 0}
    source = ("import", path.name)
    with catalog.transaction() as tx:
        for track_id, row in rows_with_track_ids(rows, id_column, report):
            image = (row.get(names["image"]) or "").strip()
            album_id = spotify_id(row.get(names["album_id"]) or "", "album") if names["album_id"] else None
            album_id = album_id or (image_key(image) if image else None)
            if album_id is None:
                report["rows_without_image"] += 1
                continue
            artist = (row.get(names["artist"]) or "").strip() if names["artist"] else ""
            track = {"id": track_id, "name": row.get(names["track"]) if names["track"] else None,
                     "artists": [{"id": image_key("artist:" + artist), "name": artist}] if artist else []}
            album = {"id": album_id, "name": row.get(names["album"]) if names["album"] else None}
            cover_url = (image, None) if image.startswith(("http://", "https://")) else None
            catalog.record_track(tx, track, album, source, cover_url)
            if image and cover_url is None:
                copy_local_image(catalog, tx, album_id, path.parent / image, report)
            values, invalid = feature_values(row, feature_columns)
            report["invalid_values"] += invalid
            write_features(catalog, tx, track_id, values, f"file:{path.name}")
    report["image_urls_to_download"] = catalog.scalar(
        "SELECT COUNT(*) FROM covers WHERE status != 'done' AND url IS NOT NULL")
    return report


def copy_local_image(catalog: Catalog, tx, album_id: str, source: Path, report: dict) -> None:
    if tx.execute("SELECT 1 FROM covers WHERE album_id = ?", (album_id,)).fetchone():
        return
    try:
        body = source.read_bytes()
        image_format = check_image(body)
    except (OSError, ValueError) as error:
        report["image_files_unusable"] += 1
        reason = error.strerror if isinstance(error, OSError) else str(error)
        tx.execute("INSERT INTO covers (album_id, status, error) VALUES (?, 'failed', ?)",
                   (album_id, f"{source.name}: {reason}"))
        return
    name = album_id + IMAGE_EXTENSIONS.get(image_format, ".img")
    partial = catalog.covers / (name + ".part")
    partial.write_bytes(body)
    os.replace(partial, catalog.covers / name)
    tx.execute("INSERT INTO covers (album_id, status, file, sha256, bytes) VALUES (?, 'done', ?, ?, ?)",
               (album_id, f"{COVERS_DIR}/{name}", hashlib.sha256(body).hexdigest(), len(body)))
    report["image_files_copied"] += 1
