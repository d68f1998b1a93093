"""The collection database: one SQLite file per collection folder, written by one process at a time.

Every unit of work (a page of results, a batch of audio features, a downloaded cover) is one transaction, so a
process killed at any point leaves the database at the last finished unit and a restart repeats at most the unit
that was in flight. Rows are keyed by Spotify ids, so overlapping queries store nothing twice.
"""

from __future__ import annotations

import csv
import math
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path

from ganzoo import GanzooError
from ganzoo_conditions import AUDIO_FEATURES

DATABASE_FILE = "collection.sqlite"
METADATA_FILE = "metadata.csv"
COVERS_DIR = "covers"
SCHEMA_VERSION = 1
API_FEATURES = [name for name in AUDIO_FEATURES if name != "popularity"]
"""The audio-features endpoint's fields; popularity comes with the track object."""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS queries (
    kind TEXT NOT NULL, value TEXT NOT NULL, next_offset INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (kind, value));
CREATE TABLE IF NOT EXISTS artists (id TEXT PRIMARY KEY, name TEXT);
CREATE TABLE IF NOT EXISTS albums (id TEXT PRIMARY KEY, name TEXT, release_date TEXT);
CREATE TABLE IF NOT EXISTS tracks (
    id TEXT PRIMARY KEY, name TEXT, album_id TEXT, popularity REAL, duration_ms INTEGER);
CREATE TABLE IF NOT EXISTS track_artists (
    track_id TEXT NOT NULL, position INTEGER NOT NULL, artist_id TEXT NOT NULL, PRIMARY KEY (track_id, position));
CREATE TABLE IF NOT EXISTS track_sources (
    track_id TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (track_id, kind, value));
CREATE TABLE IF NOT EXISTS features (
    track_id TEXT PRIMARY KEY, source TEXT NOT NULL, {", ".join(f"{name} REAL" for name in API_FEATURES)});
CREATE TABLE IF NOT EXISTS covers (
    album_id TEXT PRIMARY KEY, url TEXT, width INTEGER, status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, file TEXT, sha256 TEXT, bytes INTEGER, error TEXT);
CREATE INDEX IF NOT EXISTS queries_done ON queries (done);
CREATE INDEX IF NOT EXISTS tracks_album ON tracks (album_id);
CREATE INDEX IF NOT EXISTS covers_status ON covers (status);
"""


class Catalog:
    """The collection folder: ``collection.sqlite``, ``covers/`` and the exported ``metadata.csv``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.covers = self.folder / COVERS_DIR
        try:
            self.covers.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.folder / DATABASE_FILE, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise GanzooError(f"cannot open the collection in {self.folder}: {error}") from None
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif version != str(SCHEMA_VERSION):
            raise GanzooError(f"{self.folder} holds a collection of schema {version}; this ganzoo reads "
                              f"{SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (key, value))

    def scalar(self, sql: str, *args) -> int:
        return self.db.execute(sql, args).fetchone()[0]

    def counts(self) -> dict[str, int]:
        """How much the collection holds, for reports."""
        return {
            "tracks": self.scalar("SELECT COUNT(*) FROM tracks"),
            "albums": self.scalar("SELECT COUNT(*) FROM albums"),
            "artists": self.scalar("SELECT COUNT(*) FROM artists"),
            "tracks_with_features": self.scalar(
                "SELECT COUNT(*) FROM features WHERE danceability IS NOT NULL"),
            "covers_done": self.scalar("SELECT COUNT(*) FROM covers WHERE status = 'done'"),
            "covers_failed": self.scalar("SELECT COUNT(*) FROM covers WHERE status = 'failed'"),
            "covers_pending": self.scalar("SELECT COUNT(*) FROM covers WHERE status = 'pending'"),
        }

    def add_query(self, kind: str, value: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO queries (kind, value) VALUES (?, ?)", (kind, value))

    def record_track(self, db: sqlite3.Connection, track: dict, album: dict | None, source: tuple[str, str],
                     cover: tuple[str, int] | None) -> None:
        """Store one track (a Web API track object), its album, artists, cover URL and where it was found."""
        album = album or track["album"]
        db.execute("INSERT OR IGNORE INTO albums VALUES (?, ?, ?)",
                   (album["id"], album.get("name"), album.get("release_date")))
        if cover:
            db.execute("INSERT OR IGNORE INTO covers (album_id, url, width) VALUES (?, ?, ?)",
                       (album["id"], cover[0], cover[1]))
        db.execute("INSERT INTO tracks VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                   "popularity = COALESCE(excluded.popularity, tracks.popularity)",
                   (track["id"], track.get("name"), album["id"], track.get("popularity"),
                    track.get("duration_ms")))
        for position, artist in enumerate(track.get("artists") or []):
            if artist.get("id"):
                db.execute("INSERT OR IGNORE INTO artists VALUES (?, ?)", (artist["id"], artist.get("name")))
                db.execute("INSERT OR IGNORE INTO track_artists VALUES (?, ?, ?)",
                           (track["id"], position, artist["id"]))
        db.execute("INSERT OR IGNORE INTO track_sources VALUES (?, ?, ?)", (track["id"], *source))

    def store_features(self, db: sqlite3.Connection, track_id: str, source: str,
                       values: dict[str, float | None]) -> None:
        """Insert or update a track's features; a value given as None keeps the one already stored."""
        db.execute(f"INSERT INTO features VALUES (?, ?, {', '.join('?' * len(API_FEATURES))}) "
                   f"ON CONFLICT (track_id) DO UPDATE SET source = excluded.source, "
                   + ", ".join(f"{name} = COALESCE(excluded.{name}, {name})" for name in API_FEATURES),
                   (track_id, source, *[values.get(name) for name in API_FEATURES]))

    def export_metadata(self) -> int:
        """Write ``metadata.csv``: one row per downloaded cover, with the mean features of its tracks.

        Returns the number of rows. ``ganzoo data prepare`` reads this file to attach conditions to covers.
        """
        feature_columns = API_FEATURES + ["popularity"]
        means = ", ".join(f"AVG(f.{name})" for name in API_FEATURES)
        rows = self.db.execute(f"""
            SELECT c.file, c.album_id, a.name,
                   (SELECT ar.name FROM tracks t2 JOIN track_artists ta ON ta.track_id = t2.id AND ta.position = 0
                    JOIN artists ar ON ar.id = ta.artist_id WHERE t2.album_id = c.album_id ORDER BY t2.id LIMIT 1),
                   (SELECT MIN(s.kind || ':' || s.value) FROM tracks t3 JOIN track_sources s ON s.track_id = t3.id
                    WHERE t3.album_id = c.album_id),
                   COUNT(t.id), {means}, AVG(t.popularity)
            FROM covers c JOIN albums a ON a.id = c.album_id
            LEFT JOIN tracks t ON t.album_id = c.album_id
            LEFT JOIN features f ON f.track_id = t.id
            WHERE c.status = 'done' GROUP BY c.album_id ORDER BY c.album_id""").fetchall()
        target = self.folder / METADATA_FILE
        partial = target.with_name(target.name + ".partial")
        with open(partial, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "album_id", "album", "artist", "query", "tracks", *feature_columns])
            for row in rows:
                writer.writerow(["" if v is None else (round(v, 6) if isinstance(v, float) and math.isfinite(v)
                                                       else v) for v in row])
        os.replace(partial, target)
        return len(rows)
