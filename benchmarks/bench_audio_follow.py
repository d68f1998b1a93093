"""Do covers follow their songs? The whole audio path on synthcovers' paired clips: write covers with clips
(``ganzoo data synthcovers --audio``), prepare them with their descriptors (``data prepare --audio``), train a
model on the ``audio-descriptors`` condition, then make one cover per clip of a new set never trained on
(``generate --audio``) and measure each cover's driven features back (``ganzoo_synthcovers.measure_features``).

    python benchmarks/bench_audio_follow.py --cpu-minutes 10 --work /tmp/audio-follow
    python benchmarks/bench_audio_follow.py --smoke     # tiny: that the script still runs

Per driven feature, Spearman of the generated covers' measurement against the clip's feature. The clips carry
danceability (the beat's tempo), valence (major against minor chords), energy (harmonics) and loudness (level);
acousticness and instrumentalness are not in the clips (their row says what the features' mutual correlation
alone gives). Beside it, the same measurement on the new set's own covers: the renderer's ceiling.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from runner import ganzoo, set_flags, train_once

DRIVEN = ("valence", "energy", "loudness", "danceability", "acousticness", "instrumentalness")
IN_THE_CLIPS = ("valence", "energy", "loudness", "danceability")


def spearman(a, b) -> float:
    ranks = [np.argsort(np.argsort(x)) for x in (np.asarray(a), np.asarray(b))]
    return float(np.corrcoef(*ranks)[0, 1])


def features_of(folder: Path) -> dict[str, np.ndarray]:
    with open(folder / "metadata.csv", newline="") as table:
        rows = list(csv.DictReader(table))
    return {name: np.array([float(row[name]) for row in rows]) for name in DRIVEN}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="acgan+wgan")
    parser.add_argument("--train", type=int, default=4096, help="paired covers to train on")
    parser.add_argument("--test", type=int, default=500, help="new clips to make covers for")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--cpu-minutes", type=float, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ganzoo-audio-follow"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--smoke", action="store_true", help="tiny sets, a few steps: seconds")
    args = parser.parse_args()
    if not args.smoke:
        return measure(args)
    with tempfile.TemporaryDirectory() as scratch:
        args.work, args.train, args.test, args.size, args.cpu_minutes = Path(scratch), 24, 12, 16, 0.05
        args.set += ["model.width=8", "schedule.batch_size=8", "model.latent_dim=16"]
        measure(args)


def measure(args):
    from ganzoo_synthcovers import measure_features

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    for name, count, seed in (("train", args.train, 0), ("test", args.test, 1)):
        if not (work / name).is_dir():
            ganzoo("data", "synthcovers", work / name, "--count", count, "--size", args.size, "--seed", seed,
                   "--audio", threads=args.threads)
    store = work / "store"
    if not store.is_dir():
        ganzoo("data", "prepare", work / "train" / "covers", "--audio", work / "train" / "songs", "--size", args.size,
               "--keep-duplicates", "--out", store, "--quiet", threads=args.threads)
    run = work / "run"
    train_once(run, args.recipe, store, "--set", f"data.image_size={args.size}",
               "--set", "model.conditions=[audio-descriptors]", *set_flags(args.set),
               "--cpu-minutes", args.cpu_minutes, "--quiet", threads=args.threads)
    covers = work / "covers"
    if not covers.is_dir():
        ganzoo("generate", run, "--audio", work / "test" / "songs", "--out-dir", covers, threads=args.threads)
    truth = features_of(work / "test" / "covers")
    names = sorted(path.stem for path in (work / "test" / "songs").iterdir())
    generated = np.stack([np.asarray(Image.open(covers / f"{name}.png").convert("RGB")) for name in names])
    real = np.stack([np.asarray(Image.open(work / "test" / "covers" / f"{name}.png").convert("RGB"))
                     for name in names])
    measured, ceiling = measure_features(generated), measure_features(real)
    steps = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    result = {"recipe": args.recipe, "train": args.train, "test": args.test, "size": args.size,
              "cpu_minutes": args.cpu_minutes, "steps": steps,
              "spearman": {name: round(spearman(measured[name], truth[name]), 3) for name in DRIVEN},
              "ceiling": {name: round(spearman(ceiling[name], truth[name]), 3) for name in DRIVEN}}
    print(json.dumps(result))
    print("| feature | in the clip | covers from new clips | the set's own covers |")
    print("| --- | --- | --- | --- |")
    for name in DRIVEN:
        print(f"| {name} | {'yes' if name in IN_THE_CLIPS else 'no'} | {result['spearman'][name]} | "
              f"{result['ceiling'][name]} |")


if __name__ == "__main__":
    main()
