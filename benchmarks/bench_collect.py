"""Collection throughput against the fake Web API on 127.0.0.1 with no injected delay or fault.

    python benchmarks/bench_collect.py --covers ../shared/data/covers640
    python benchmarks/bench_collect.py --smoke      # a tiny catalogue: that the script still runs

The server (tests/helpers/fake_spotify.py) runs in this process; the collector runs as `ganzoo data spotify collect` in
a child process, so its CPU time is measured alone. With --covers, the server answers image requests with real
640 px JPEG bytes from that folder (cycled), so downloads decode and check real covers.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "helpers"))

from fake_spotify import CLIENT_ID, CLIENT_SECRET, Catalogue, FakeSpotify, spotify_id  # noqa: E402


class RealCovers(Catalogue):
    def __init__(self, covers: list[Path], **sizes):
        super().__init__(**sizes)
        self.files = covers

    def cover(self, album_index: int) -> bytes:
        return self.files[album_index % len(self.files)].read_bytes()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--covers", type=Path, help="A folder of real JPEG covers to serve.")
    parser.add_argument("--albums", type=int, default=1000)
    parser.add_argument("--tracks-per-album", type=int, default=10)
    parser.add_argument("--artists", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--smoke", action="store_true", help="20 albums by 3 artists: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.albums, args.tracks_per_album, args.artists = 20, 2, 3
    sizes = dict(albums=args.albums, tracks_per_album=args.tracks_per_album, artists=args.artists, playlists=10,
                 playlist_length=500)
    catalogue = (RealCovers(sorted(args.covers.glob("*.jpg")), **sizes) if args.covers else Catalogue(**sizes))
    server = FakeSpotify(catalogue=catalogue).start()
    queries = [arg for p in range(10) for arg in ("--playlist", server.playlist_id(p))]
    queries += [arg for a in range(args.artists) for arg in ("--artist", spotify_id("artist", a))]
    env = {**os.environ, "SPOTIPY_CLIENT_ID": CLIENT_ID, "SPOTIPY_CLIENT_SECRET": CLIENT_SECRET,
           "GANZOO_SPOTIFY_API_URL": server.api_url, "GANZOO_SPOTIFY_TOKEN_URL": server.token_url}
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "collection"
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "ganzoo", "data", "spotify", "collect", *queries, "--out",
                                 str(out), "--quiet", "--concurrency", str(args.concurrency)],
                                env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    server.stop()
    if result.returncode:
        sys.exit(result.stderr)
    api = [url for _, url, status in server.log if url.startswith("/v1/")]
    images = [url for _, url, status in server.log if url.startswith("/image/")]
    walk_end = max(t for t, url, _ in server.log if url.startswith("/v1/"))
    first = min(t for t, _, _ in server.log)
    image_times = [t for t, url, _ in server.log if url.startswith("/image/")]
    tracks = catalogue.track_count()
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, server and collector on the same cores",
        "catalogue": sizes, "covers": "real JPEG from " + str(args.covers) if args.covers else "synthetic 48 px",
        "collector_output": result.stdout.strip().splitlines(),
        "wall_s_including_start": round(wall, 2),
        "api_requests": len(api), "api_phase_s": round(walk_end - first, 2),
        "api_requests_per_s": round(len(api) / (walk_end - first), 1),
        "tracks_per_s_api_phase": round(tracks / (walk_end - first), 1),
        "image_requests": len(images), "image_phase_s": round(max(image_times) - min(image_times), 2),
        "covers_per_s": round(len(images) / (max(image_times) - min(image_times)), 1),
        "collector_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "collector_cpu_ms_per_request": round(1000 * (usage.ru_utime + usage.ru_stime) / (len(api) + len(images)),
                                              2),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
