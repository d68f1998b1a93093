"""The collector: walk queries page by page, fetch audio features and popularity in batches, download covers.

Each phase reads its remaining work from the database, so any phase can be interrupted and run again.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable, Iterator

import requests
import spotipy
from PIL import Image
from tqdm import tqdm

from ganzoo import GanzooError
from ganzoo_spotify.catalog import COVERS_DIR, Catalog
from ganzoo_spotify.web import RetryPolicy, SpotifyAPI, Transient, classify_status

PAGE_LIMIT = 50
FEATURES_BATCH = 100
TRACKS_BATCH = 50
IMAGE_ATTEMPTS = 5
IMAGE_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif"}
FEATURES_FORBIDDEN = (
    "Spotify answered 403 to audio-features: since 27 November 2024 it refuses them to new apps and apps in "
    "development mode. "
    "Covers and metadata are still collected; attach features from a file with "
    "`ganzoo data spotify attach-features FILE.csv --collection DIR`.")


def choose_image(images: list[dict], size: int) -> tuple[str, int] | None:
    """The URL and width of the smallest image at least ``size`` wide, else the largest one."""
    usable = [(image.get("width") or 0, image["url"]) for image in images or [] if image.get("url")]
    if not usable:
        return None
    large_enough = sorted(w for w in usable if w[0] >= size)
    width, url = large_enough[0] if large_enough else max(usable)
    return url, width


def check_image(body: bytes) -> str:
    """The image format of ``body`` after decoding it completely; raises ValueError when it is not one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(body)) as image:
                if image.format == "JPEG":
                    image.draft("RGB", (64, 64))
                image.load()
                return image.format
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise ValueError(f"not a readable image ({type(error).__name__})") from None


class Collector:
    def __init__(self, catalog: Catalog, api: SpotifyAPI | None, policy: RetryPolicy, image_size: int | None = None,
                 concurrency: int = 8, timeout_s: float = 10.0, progress: bool = True,
                 echo: Callable[[str], None] = print):
        self.catalog, self.api, self.policy = catalog, api, policy
        self.image_size, self.concurrency, self.timeout_s = image_size, concurrency, timeout_s
        self.progress, self.echo = progress, echo
        self.skipped = 0
        known_size = catalog.get_meta("image_size")
        if image_size is None:  # downloads only: the images were chosen already
            return
        if known_size is None:
            catalog.set_meta("image_size", str(image_size))
        elif int(known_size) != image_size:
            raise GanzooError(f"{catalog.folder} collects {known_size} px covers; pass --image-size {known_size} "
                              "or collect into another folder")

    def bar(self, total: int | None, desc: str, unit: str):
        return tqdm(total=total, desc=desc, unit=unit, disable=not self.progress, leave=False)

    def walk(self) -> None:
        """Walk every unfinished query; artists enqueue their albums as queries of their own."""
        db = self.catalog.db
        with self.bar(None, "walk", "track") as bar:
            while row := db.execute("SELECT kind, value, next_offset FROM queries WHERE done = 0 "
                                    "ORDER BY rowid LIMIT 1").fetchone():
                kind, value, offset = row
                page = self.fetch_page(kind, value, offset)
                items = page.get("items") or []
                with self.catalog.transaction() as tx:
                    bar.update(self.record_page(tx, kind, value, items))
                    finished = not items or not page.get("next")
                    tx.execute("UPDATE queries SET next_offset = ?, done = ? WHERE kind = ? AND value = ?",
                               (offset + len(items), int(finished), kind, value))

    def fetch_page(self, kind: str, value: str, offset: int) -> dict:
        try:
            if kind == "playlist":
                return self.api.get(f"playlists/{value}/items", limit=PAGE_LIMIT, offset=offset,
                                    additional_types="track")
            if kind == "search":
                return self.api.get("search", q=value, type="track", limit=PAGE_LIMIT, offset=offset)["tracks"]
            if kind == "artist":
                return self.api.get(f"artists/{value}/albums", include_groups="album,single,compilation",
                                    limit=PAGE_LIMIT, offset=offset)
            if kind == "album":
                return self.api.get(f"albums/{value}/tracks", limit=PAGE_LIMIT, offset=offset)
        except spotipy.SpotifyException as error:
            if error.http_status in (400, 404):
                self.echo(f"skipped {kind} {value}: Spotify answered {error.http_status}")
                return {"items": [], "next": None}
            raise GanzooError(f"{kind} {value}: Spotify answered {error.http_status}") from None
        raise GanzooError(f"unknown query kind {kind!r} in {self.catalog.folder}")

    def record_page(self, tx, kind: str, value: str, items: list) -> int:
        recorded = 0
        if kind == "artist":
            for album in items:
                if album and album.get("id"):
                    tx.execute("INSERT OR IGNORE INTO albums VALUES (?, ?, ?)",
                               (album["id"], album.get("name"), album.get("release_date")))
                    cover = choose_image(album.get("images"), self.image_size)
                    if cover:
                        tx.execute("INSERT OR IGNORE INTO covers (album_id, url, width) VALUES (?, ?, ?)",
                                   (album["id"], *cover))
                    tx.execute("INSERT OR IGNORE INTO queries (kind, value) VALUES ('album', ?)", (album["id"],))
            return 0
        album = {"id": value} if kind == "album" else None
        for item in items:
            track = (item.get("item") or item.get("track")) if kind == "playlist" and item else item
            if not track or track.get("type", "track") != "track" or not track.get("id") or track.get("is_local"):
                self.skipped += 1
                continue
            cover = choose_image((album or track.get("album") or {}).get("images"), self.image_size)
            if album is None and not (track.get("album") or {}).get("id"):
                self.skipped += 1
                continue
            self.catalog.record_track(tx, track, album, (kind, value), cover)
            recorded += 1
        return recorded

    def pending_tracks(self, where: str) -> Iterator[str]:
        """Track ids matching ``where``, in id order, read in keyset pages so writes can interleave."""
        last = ""
        while rows := self.catalog.db.execute(f"SELECT id FROM tracks t WHERE id > ? AND {where} "
                                              "ORDER BY id LIMIT 1000", (last,)).fetchall():
            for (track_id,) in rows:
                yield track_id
            last = rows[-1][0]

    def fetch_popularity(self) -> None:
        """Album walks give tracks without popularity; fetch it in batches of 50 track ids."""
        todo = self.catalog.scalar("SELECT COUNT(*) FROM tracks WHERE popularity IS NULL")
        with self.bar(todo, "popularity", "track") as bar:
            for batch in batches(self.pending_tracks("popularity IS NULL"), TRACKS_BATCH):
                tracks = self.api.get("tracks", ids=",".join(batch)).get("tracks") or []
                with self.catalog.transaction() as tx:
                    for track in tracks:
                        if track and track.get("id") and track.get("popularity") is not None:
                            tx.execute("UPDATE tracks SET popularity = ? WHERE id = ?",
                                       (track["popularity"], track["id"]))
                bar.update(len(batch))

    def fetch_features(self) -> bool:
        """Audio features in batches of 100; False (said once) when the endpoint answers 403."""
        where = "NOT EXISTS (SELECT 1 FROM features f WHERE f.track_id = t.id)"
        todo = self.catalog.scalar(f"SELECT COUNT(*) FROM tracks t WHERE {where}")
        with self.bar(todo, "audio features", "track") as bar:
            for batch in batches(self.pending_tracks(where), FEATURES_BATCH):
                try:
                    entries = self.api.get("audio-features", ids=",".join(batch)).get("audio_features") or []
                except spotipy.SpotifyException as error:
                    if error.http_status == 403:
                        self.catalog.set_meta("audio_features_api", "forbidden (403)")
                        self.echo(FEATURES_FORBIDDEN)
                        return False
                    raise GanzooError(f"audio-features: Spotify answered {error.http_status}") from None
                by_id = {entry["id"]: entry for entry in entries if entry and entry.get("id")}
                with self.catalog.transaction() as tx:
                    for track_id in batch:
                        self.catalog.store_features(tx, track_id, "api", by_id.get(track_id) or {})
                bar.update(len(batch))
        self.catalog.set_meta("audio_features_api", "available")
        return True

    def download_covers(self) -> None:
        """Download every cover not yet done, ``concurrency`` at a time; the main thread alone writes the database."""
        self.adopt_finished_files()
        todo = self.catalog.scalar("SELECT COUNT(*) FROM covers WHERE status != 'done'")
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=self.concurrency)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        rows = self.pending_covers()
        with self.bar(todo, "covers", "img") as bar, ThreadPoolExecutor(self.concurrency) as pool:
            in_flight = {}
            try:
                while True:
                    while len(in_flight) < 2 * self.concurrency and (row := next(rows, None)):
                        in_flight[pool.submit(self.fetch_cover, session, *row)] = row[0]
                    if not in_flight:
                        break
                    finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in finished:
                        self.record_cover(in_flight.pop(future), future.result())
                        bar.update(1)
            finally:
                for future in in_flight:
                    future.cancel()

    def pending_covers(self) -> Iterator[tuple[str, str]]:
        last = ""
        while rows := self.catalog.db.execute("SELECT album_id, url FROM covers WHERE album_id > ? AND "
                                              "status != 'done' AND url IS NOT NULL ORDER BY album_id LIMIT 1000",
                                              (last,)).fetchall():
            yield from rows
            last = rows[-1][0]

    def adopt_finished_files(self) -> None:
        """After a kill: drop partial files, and mark done the covers whose file was renamed into place."""
        for leftover in self.catalog.covers.glob("*.part"):
            leftover.unlink()
        names = {path.stem: path for path in self.catalog.covers.iterdir()}
        for (album_id,) in self.catalog.db.execute("SELECT album_id FROM covers WHERE status != 'done'").fetchall():
            path = names.get(album_id)
            if path is None:
                continue
            body = path.read_bytes()
            try:
                check_image(body)
            except ValueError:
                path.unlink()
                continue
            self.record_cover(album_id, ("done", path.name, hashlib.sha256(body).hexdigest(), len(body), None))

    def fetch_cover(self, session: requests.Session, album_id: str, url: str) -> tuple:
        """Download, check and atomically write one cover (in a worker thread). Returns the row's new state."""
        def attempt() -> tuple[bytes, str]:
            try:
                response = session.get(url, timeout=self.timeout_s)
                classify_status(response.status_code, response.headers, "cover")
                body = response.content
            except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as error:
                raise Transient(f"cover: {type(error).__name__}") from None
            if response.status_code != 200:
                raise PermissionError(f"HTTP {response.status_code}")
            expected = response.headers.get("Content-Length")
            if expected is not None and expected.isdigit() and int(expected) != len(body):
                raise Transient(f"cover: truncated ({len(body)} of {expected} bytes)")
            try:
                return body, check_image(body)
            except ValueError as error:
                raise Transient(f"cover: {error}") from None

        try:
            body, image_format = self.policy.call(attempt, "cover", attempts=IMAGE_ATTEMPTS)
        except (Transient, PermissionError) as error:
            return ("failed", None, None, None, str(error))
        name = album_id + IMAGE_EXTENSIONS.get(image_format, ".img")
        partial = self.catalog.covers / (name + ".part")
        partial.write_bytes(body)
        os.replace(partial, self.catalog.covers / name)
        return ("done", name, hashlib.sha256(body).hexdigest(), len(body), None)

    def record_cover(self, album_id: str, state: tuple) -> None:
        status, name, sha256, size, error = state
        with self.catalog.transaction() as tx:
            tx.execute("UPDATE covers SET status = ?, file = ?, sha256 = ?, bytes = ?, error = ?, "
                       "attempts = attempts + 1 WHERE album_id = ?",
                       (status, f"{COVERS_DIR}/{name}" if name else None, sha256, size, error, album_id))

    def run(self, features: bool = True) -> dict:
        """All phases in order; returns the report."""
        started = time.perf_counter()
        self.walk()
        self.fetch_popularity()
        features_available = self.fetch_features() if features else None
        self.download_covers()
        rows = self.catalog.export_metadata()
        return {**self.catalog.counts(), "metadata_rows": rows, "skipped_items": self.skipped,
                "audio_features_api": features_available, **dict(self.policy.stats),
                "seconds": round(time.perf_counter() - started, 2)}


def batches(items: Iterator[str], size: int) -> Iterator[list[str]]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
