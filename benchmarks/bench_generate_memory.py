"""Peak memory of the generate side on large requests: a 4,096-cover grid upscaled 16 times, and a track looked
up in a 200 MB features file.

Trains a tiny conditional run on synthcovers at 32 px (a few steps: the weights do not matter here), writes a
features CSV of about ``--tracks-mb`` MB with the track to look up near its end, then runs each command in a
child process that reports its own peak resident memory. The floor is `generate -n 1` of the same run.

    python benchmarks/bench_generate_memory.py
    PYTHONPATH=/path/to/old/checkout:/path/to/old/checkout/plugins python benchmarks/bench_generate_memory.py
    python benchmarks/bench_generate_memory.py --smoke      # small sizes: that the script still runs
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

from runner import ganzoo, peak_of

FEATURES = ("danceability", "energy", "valence", "tempo", "loudness", "acousticness", "instrumentalness",
            "speechiness", "liveness", "popularity")
TRACK = "0123456789abcdefABCDEF"


def write_tracks(path: Path, megabytes: float) -> int:
    """A Kaggle-style features CSV of about ``megabytes`` MB; the looked-up track is its second-to-last row."""
    rng = random.Random(0)
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    rows = 0
    with open(path, "w") as f:
        f.write("track_id," + ",".join(FEATURES) + "\n")
        while f.tell() < megabytes * 1e6:
            track = "".join(rng.choice(alphabet) for _ in range(22))
            f.write(track + "," + ",".join(f"{rng.random():.6f}" for _ in FEATURES) + "\n")
            rows += 1
        f.write(TRACK + "," + ",".join("0.5" for _ in FEATURES) + "\n")
        f.write("zzzzzzzzzzzzzzzzzzzzzz," + ",".join("0.5" for _ in FEATURES) + "\n")
    return rows + 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks-mb", type=float, default=200)
    parser.add_argument("--count", type=int, default=4096, help="covers in the upscaled grid")
    parser.add_argument("--smoke", action="store_true", help="a 1 MB features file and 16 covers: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.tracks_mb, args.count = 1, 16
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        run = root / "run"
        ganzoo("train", "--set", "data.image_size=32", "--set", "model.width=8", "--set", "model.latent_dim=16",
               "--set", "schedule.batch_size=16", "--set", "options.synthcovers.count=256", "--set",
               "model.conditions=[audio-features]", "--steps", "2", "--out", run, "--quiet")
        tracks = root / "tracks.csv"
        rows = write_tracks(tracks, args.tracks_mb)
        report = {
            "floor: generate -n 1": peak_of(["generate", run, "-n", "1", "--out", root / "one.png"], root),
            f"generate -n {args.count} --upscale 16": peak_of(["generate", run, "-n", args.count, "--upscale", "16",
                                                                "--out", root / "grid.png"], root),
            f"generate --track (features file of {tracks.stat().st_size / 1e6:.0f} MB, {rows} rows)": peak_of(
                ["generate", run, "-n", "4", "--track", TRACK, "--tracks", tracks, "--out", root / "track.png"],
                root),
        }
        grid = root / "grid.png"
        report["grid file"] = f"{grid.stat().st_size / 1e6:.1f} MB" if grid.is_file() else "not written"
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
