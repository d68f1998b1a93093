"""A song to a lettered cover at the size distributors ask for, as a user runs it: the whole ``ganzoo generate
RUN --audio SONG --size 3000 --title ... --artist ...`` command (interpreter, imports, model, audio, enlarging,
lettering, JPEG), its wall time and peak memory, and the same command given the features instead of a song.

    python benchmarks/bench_song_cover.py --work /tmp/song-cover --runs 3 --out song-cover.json
    python benchmarks/bench_song_cover.py --smoke      # a short song and a tiny model: that the script runs

The song: a 4-minute stereo MP3 at 44.1 kHz (clicks at 120 BPM over an A major triad, written by soundfile). The
model: ``acgan+wgan`` at 64 px on loudness, tempo, energy and valence, 20 steps on synthcovers (its quality does
not matter here, its size does). Memory: the command's processes (it measures the song in a second one) sampled
every 10 ms from /proc, their summed proportional resident memory (PSS) at its highest, and the largest single
process's peak resident memory (the kernel's figure).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from runner import ganzoo

RATE = 44100
TITLE, ARTIST = "Midnight Drive", "The Velvet Echo"


def write_song(path: Path, seconds: int) -> None:
    """Clicks at 120 BPM over an A major triad, stereo MP3."""
    import soundfile

    t = np.arange(seconds * RATE) / RATE
    song = 0.15 * sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63))
    click = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(441) / RATE) * np.linspace(1, 0, 441)
    for start in (np.arange(0, seconds, 0.5) * RATE).astype(int):
        song[start:start + 441] += click[:len(song) - start]
    soundfile.write(path, np.stack([song, song], 1).astype(np.float32), RATE, format="MP3",
                    subtype="MPEG_LAYER_III")


def tree_pss_kib(pid: int) -> int:
    """Proportional resident memory (PSS: shared pages split between their sharers) of a process and all its
    descendants, KiB (0 once it has ended)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/smaps_rollup") as rollup:
                total += next((int(line.split()[1]) for line in rollup if line.startswith("Pss:")), 0)
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending += map(int, children.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def timed(args: list, sample_memory: bool = False) -> dict:
    """One whole command: wall seconds, the peak RSS of its largest process (the kernel's), its last line and, if
    ``sample_memory`` (reading PSS costs CPU: those runs are not timed), its process tree's summed peak PSS."""
    environment = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "ganzoo", *map(str, args)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=environment)
    peak, ended = 0, 0
    while not ended:
        peak = max(peak, tree_pss_kib(process.pid)) if sample_memory else 0
        time.sleep(0.01)
        ended, status, usage = os.wait4(process.pid, os.WNOHANG)
    seconds = time.perf_counter() - started
    output = process.stdout.read().strip().splitlines()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"ganzoo {' '.join(map(str, args[:3]))}: {output[-1] if output else '(no output)'}")
    figures = {"seconds": round(seconds, 2), "largest_process_peak_rss_mib": round(usage.ru_maxrss / 1024),
               "last_line": output[-1]}
    return figures | ({"tree_peak_pss_mib": round(peak / 1024)} if sample_memory else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("song-cover"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=3000)
    parser.add_argument("--out", type=Path, help="JSON file for every figure")
    parser.add_argument("--smoke", action="store_true", help="a 4-second song, a 16 px model, 256 px: seconds")
    args = parser.parse_args()
    if args.smoke:
        import tempfile

        args.work, args.runs, args.size = Path(tempfile.mkdtemp()), 1, 256
    args.work.mkdir(parents=True, exist_ok=True)
    song, run = args.work / "song.mp3", args.work / "cond"
    if not song.exists():
        write_song(song, 4 if args.smoke else 240)
    if not (run / "checkpoint.pt").exists():
        size, width = (16, 8) if args.smoke else (64, 16)
        ganzoo("train", "acgan+wgan", "--set", f"data.image_size={size}", "--set", f"model.width={width}",
               "--set", 'model.conditions=["audio-features"]',
               "--set", 'options.audio-features.features=["loudness","tempo","energy","valence"]',
               "--set", "options.synthcovers.count=512", "--set", "schedule.batch_size=16",
               "--steps", 2 if args.smoke else 20, "--out", run, "--quiet")
    finish = ["--size", args.size, "--title", TITLE, "--artist", ARTIST]
    commands = {"song": ["generate", run, "--audio", song, *finish, "--out", args.work / "song.jpg"],
                "features": ["generate", run, "--features", "loudness=-12.5,tempo=120", *finish,
                             "--out", args.work / "features.jpg"]}
    rows = {name: [] for name in commands}
    for _ in range(args.runs):  # interleaved, so both see the same machine
        for name, command in commands.items():
            rows[name].append(timed(command))
    result = {"song_seconds": 4 if args.smoke else 240, "size": args.size, "cpus": os.cpu_count(),
              **{f"{name}_median_seconds": statistics.median(row["seconds"] for row in runs)
                 for name, runs in rows.items()},
              **{f"{name}_tree_peak_pss_mib": timed(command, sample_memory=True)["tree_peak_pss_mib"]
                 for name, command in commands.items()}, "runs": rows}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
