"""A fake Spotify Web API and image CDN over real HTTP on 127.0.0.1, with injectable faults.

It speaks what the collector uses: the client-credentials token endpoint, playlist items, track search, artist
albums, album tracks, tracks and audio features by id (batched), and cover images as real JPEG bytes. The
catalogue is generated from a seed, so two servers with the same settings serve the same data. Faults hit the
first request for chosen URLs (chosen by a hash of the URL), so a run under faults must retry to get the same
result as a run without them.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

from PIL import Image

CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret-d41d8cd98f00b204"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PAGE_MAX = 50


def spotify_id(kind: str, index: int) -> str:
    number = int.from_bytes(hashlib.sha256(f"{kind}:{index}".encode()).digest()[:17], "big")
    digits = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        digits.append(ALPHABET[digit])
    return "".join(digits)


@dataclass
class Faults:
    """Each ``*_every = N`` picks the URLs whose CRC32 modulo N is a fixed residue; the first request for them
    fails in that way, later requests succeed."""
    rate_limit_every: int = 0
    retry_after_s: int = 1
    server_error_every: int = 0
    slow_every: int = 0
    slow_s: float = 2.0
    truncate_every: int = 0
    garbage_every: int = 0
    forbid_audio_features: bool = False
    broken_albums: frozenset = frozenset()
    delay_s: float = 0.0


@dataclass
class Catalogue:
    albums: int = 24
    tracks_per_album: int = 4
    artists: int = 6
    playlists: int = 3
    playlist_length: int = 40
    image_side: int = 48

    def album(self, i: int) -> dict:
        return {"id": spotify_id("album", i), "name": f"Album {i}", "release_date": f"{1960 + i % 60}-01-01",
                "type": "album", "artists": [self.artist(i % self.artists)]}

    def artist(self, i: int) -> dict:
        return {"id": spotify_id("artist", i), "name": f"Artist {i}", "type": "artist"}

    def track_count(self) -> int:
        return self.albums * self.tracks_per_album

    def track(self, t: int, base: str, full: bool = True) -> dict:
        album_index = t // self.tracks_per_album
        track = {"id": spotify_id("track", t), "name": f"Track {t}", "type": "track", "duration_ms": 180000 + t,
                 "artists": [self.artist(album_index % self.artists), self.artist((t + 1) % self.artists)]}
        if full:
            track["popularity"] = (t * 37) % 101
            track["album"] = dict(self.album(album_index), images=self.images(album_index, base))
        return track

    def images(self, album_index: int, base: str) -> list[dict]:
        album = spotify_id("album", album_index)
        return [{"url": f"{base}/image/{album}/{w}", "width": w, "height": w} for w in (640, 300, 64)]

    def features(self, t: int) -> dict | None:
        if t % 17 == 5:
            return None
        digest = hashlib.sha256(f"features:{t}".encode()).digest()
        unit = [b / 255 for b in digest[:9]]
        return {"id": spotify_id("track", t), "danceability": unit[0], "energy": unit[1], "valence": unit[2],
                "tempo": 60 + 140 * unit[3], "loudness": -30 + 28 * unit[4], "acousticness": unit[5],
                "instrumentalness": unit[6], "speechiness": unit[7], "liveness": unit[8]}

    def playlist_tracks(self, p: int) -> list[int | None]:
        """Overlapping windows of the track list; every 13th entry is a local file or an episode (skipped)."""
        start = p * self.playlist_length // 2
        entries = [(start + k) % self.track_count() for k in range(self.playlist_length)]
        return [None if k % 13 == 12 else t for k, t in enumerate(entries)]

    def search_tracks(self, query: str) -> list[int]:
        seed = zlib.crc32(query.encode())
        return sorted(range(self.track_count()), key=lambda t: zlib.crc32(f"{seed}:{t}".encode()))[:30]

    def cover(self, album_index: int) -> bytes:
        """Albums 8, 18, ... share the previous album's art byte for byte; 9, 19, ... re-encode the same art."""
        source = {8: album_index - 1, 9: album_index - 2}.get(album_index % 10, album_index)
        quality = 60 if album_index % 10 == 9 else 90
        digest = hashlib.sha256(f"cover:{source}".encode()).digest()
        side = self.image_side
        image = Image.new("RGB", (side, side), tuple(digest[:3]))
        for k in range(4):
            x, y = digest[3 + k] % side, digest[7 + k] % side
            image.paste(tuple(digest[11 + 3 * k:14 + 3 * k]), (x // 2, y // 2, x // 2 + side // 3, y // 2 + side // 3))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return buffer.getvalue()


@dataclass
class FakeSpotify:
    catalogue: Catalogue = field(default_factory=Catalogue)
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self):
        self.attempts: Counter = Counter()
        self.log: list[tuple[float, str, int]] = []
        self.lock = threading.Lock()
        self.album_index = {spotify_id("album", i): i for i in range(self.catalogue.albums)}
        self.artist_index = {spotify_id("artist", i): i for i in range(self.catalogue.artists)}
        self.playlist_index = {spotify_id("playlist", i): i for i in range(self.catalogue.playlists)}
        self.track_index = {spotify_id("track", t): t for t in range(self.catalogue.track_count())}
        self.covers: dict[int, bytes] = {}

    def start(self) -> "FakeSpotify":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.handle(self, "GET")

            def do_POST(self):
                server.handle(self, "POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def api_url(self) -> str:
        return self.base + "/v1/"

    @property
    def token_url(self) -> str:
        return self.base + "/api/token"

    def playlist_id(self, p: int) -> str:
        return spotify_id("playlist", p)

    def requests_to(self, prefix: str, status: int | None = None) -> list[tuple[float, str, int]]:
        with self.lock:
            return [entry for entry in self.log if entry[1].startswith(prefix)
                    and (status is None or entry[2] == status)]

    def picked(self, every: int, residue: int, url: str) -> bool:
        return every > 0 and zlib.crc32(url.encode()) % every == residue % every

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        url = request.path
        with self.lock:
            self.attempts[url] += 1
            first = self.attempts[url] == 1
        if self.faults.delay_s:
            time.sleep(self.faults.delay_s)
        status, headers, body, truncate = self.respond(request, method, url, first)
        with self.lock:
            self.log.append((time.monotonic(), url, status))
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(body)))
        if truncate:
            request.send_header("Connection", "close")
            request.close_connection = True
        request.end_headers()
        try:
            request.wfile.write(body[:len(body) // 2] if truncate else body)
        except (BrokenPipeError, ConnectionResetError):
            request.close_connection = True

    def respond(self, request, method: str, url: str, first: bool):
        faults = self.faults
        parsed = urlparse(url)
        path, query = parsed.path, {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        if path == "/api/token" and method == "POST":
            return self.token(request)
        if path.startswith("/image/"):
            _, _, album, _width = path.split("/")
            index = self.album_index.get(album)
            if index is None:
                return self.json(404, {"error": "no such image"})
            if first and self.picked(faults.slow_every, 2, url):
                time.sleep(faults.slow_s)
            if index in faults.broken_albums or (first and self.picked(faults.garbage_every, 1, url)):
                return 200, {"Content-Type": "text/html"}, b"<html>Service temporarily unavailable</html>", False
            if first and self.picked(faults.server_error_every, 3, url):
                return self.json(500, {"error": "cdn"})
            cover = self.covers.setdefault(index, self.catalogue.cover(index))
            truncate = first and self.picked(faults.truncate_every, 0, url)
            return 200, {"Content-Type": "image/jpeg"}, cover, truncate
        if request.headers.get("Authorization") != "Bearer fake-token":
            return self.json(401, {"error": {"status": 401, "message": "No token provided"}})
        if first and self.picked(faults.rate_limit_every, 0, url):
            return 429, {"Retry-After": str(faults.retry_after_s)}, b"", False
        if first and self.picked(faults.server_error_every, 1, url):
            return self.json(500, {"error": {"status": 500, "message": "Server error"}})
        if first and self.picked(faults.slow_every, 2, url):
            time.sleep(faults.slow_s)
        return self.api(path.removeprefix("/v1/").rstrip("/"), query)

    def token(self, request):
        import base64
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        length = int(request.headers.get("Content-Length") or 0)
        request.rfile.read(length)
        if request.headers.get("Authorization") != f"Basic {expected}":
            return self.json(400, {"error": "invalid_client", "error_description": "Invalid client"})
        return self.json(200, {"access_token": "fake-token", "token_type": "Bearer", "expires_in": 3600})

    def json(self, status: int, payload) -> tuple:
        return status, {"Content-Type": "application/json"}, json.dumps(payload).encode(), False

    def page(self, path: str, query: dict, items: list) -> tuple:
        limit = min(int(query.get("limit", 20)), PAGE_MAX)
        offset = int(query.get("offset", 0))
        chunk = items[offset:offset + limit]
        following = offset + limit < len(items)
        next_url = f"{self.api_url}{path}?{urlencode(dict(query, offset=offset + limit))}" if following else None
        return {"items": chunk, "offset": offset, "limit": limit, "total": len(items), "next": next_url}

    def api(self, path: str, query: dict) -> tuple:
        catalogue, base = self.catalogue, self.base
        parts = path.split("/")
        if parts[0] == "playlists" and len(parts) == 3 and parts[2] in ("items", "tracks"):
            p = self.playlist_index.get(parts[1])
            if p is None:
                return self.json(404, {"error": {"status": 404, "message": "Not found."}})
            items = [{"track": catalogue.track(t, base)} if t is not None
                     else {"track": {"id": None, "type": "track", "is_local": True, "name": "local.mp3"}}
                     for t in catalogue.playlist_tracks(p)]
            return self.json(200, self.page(path, query, items))
        if parts == ["search"]:
            items = [catalogue.track(t, base) for t in catalogue.search_tracks(query.get("q", ""))]
            return self.json(200, {"tracks": self.page(path, query, items)})
        if parts[0] == "artists" and len(parts) == 3 and parts[2] == "albums":
            a = self.artist_index.get(parts[1])
            if a is None:
                return self.json(404, {"error": {"status": 404, "message": "Not found."}})
            items = [dict(catalogue.album(i), images=catalogue.images(i, base))
                     for i in range(catalogue.albums) if i % catalogue.artists == a]
            return self.json(200, self.page(path, query, items))
        if parts[0] == "albums" and len(parts) == 3 and parts[2] == "tracks":
            i = self.album_index.get(parts[1])
            if i is None:
                return self.json(404, {"error": {"status": 404, "message": "Not found."}})
            items = [catalogue.track(t, base, full=False)
                     for t in range(i * catalogue.tracks_per_album, (i + 1) * catalogue.tracks_per_album)]
            return self.json(200, self.page(path, query, items))
        if parts == ["tracks"]:
            ids = query.get("ids", "").split(",")
            if len(ids) > 50:
                return self.json(400, {"error": {"status": 400, "message": "Too many ids requested"}})
            return self.json(200, {"tracks": [catalogue.track(self.track_index[i], base)
                                              if i in self.track_index else None for i in ids]})
        if parts == ["audio-features"]:
            if self.faults.forbid_audio_features:
                return self.json(403, {"error": {"status": 403, "message": "Forbidden"}})
            ids = query.get("ids", "").split(",")
            if len(ids) > 100:
                return self.json(400, {"error": {"status": 400, "message": "Too many ids requested"}})
            return self.json(200, {"audio_features": [catalogue.features(self.track_index[i])
                                                      if i in self.track_index else None for i in ids]})
        return self.json(404, {"error": {"status": 404, "message": "Service not found"}})
