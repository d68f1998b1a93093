"""Do covers follow their audio features? Conditional recipes on synthcovers under one CPU budget, scored with
``ganzoo bench --metric cond`` (rank correlation between requested and measured-back features, for the six
features synthcovers draws) and FID.

    python benchmarks/bench_conditional.py --cpu-minutes 20 --recipes acgan+wgan "resnet+hinge@model.width=16" \\
        "acgan+resnet+hinge@model.width=16" --work /tmp/conditional
    python benchmarks/bench_conditional.py --smoke      # one tiny run: that the script still runs

A recipe may carry settings after an ``@`` (comma-separated KEY=VALUE), as in benchmarks/leaderboard.py. Every
run: 32 px, synthcovers (8,192 covers), ``conditions=["audio-features"]``, ``--threads`` threads, ``--parallel``
runs at once. One JSON line per run; a markdown table at the end. Runs finished in ``--work`` are scored, not
trained again.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tempfile

from ganzoo.apps import toolkit
from runner import ganzoo, set_flags, settings_flags, slug, train_once

DRIVEN = ("valence", "energy", "loudness", "acousticness", "danceability", "instrumentalness")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["acgan+wgan"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--cpu-minutes", type=float, default=20)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--cond-images", type=int, default=2000)
    parser.add_argument("--fid-images", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ganzoo-conditional"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="for every run")
    parser.add_argument("--smoke", action="store_true", help="one tiny run, a few images scored: seconds")
    args = parser.parse_args()
    if not args.smoke:
        return compare(args)
    with tempfile.TemporaryDirectory() as scratch:
        args.work, args.cpu_minutes, args.width, args.parallel = Path(scratch), 0.02, 8, 1
        args.cond_images, args.fid_images = 16, 8
        args.set += ["options.synthcovers.count=64", "schedule.batch_size=8", "model.latent_dim=16"]
        compare(args)


def compare(args):
    args.work.mkdir(parents=True, exist_ok=True)

    def run(job):
        row, seed = job
        recipe, _, settings = row.partition("@")
        folder = args.work / f"{slug(row)}-seed{seed}"
        conditional = "model.conditions=" not in settings  # every run is conditional unless its settings say otherwise
        train_once(folder, recipe, "--set", "data.image_size=32", "--set", f"model.width={args.width}",
                   "--set", f"system.seed={seed}", "--set", "schedule.sample_every=100000", "--set", "schedule.log_every=100",
                   *(["--set", 'model.conditions=["audio-features"]'] if conditional else []),
                   *set_flags(args.set), *settings_flags(settings), "--cpu-minutes", args.cpu_minutes, "--quiet",
                   threads=args.threads)
        if not (folder / "cond.json").is_file():
            ganzoo("bench", folder, "--metric", "cond", "-n", args.cond_images, "--out", folder / "cond.json",
                   threads=args.threads)
            ganzoo("bench", folder, "--metric", "fid", "-n", args.fid_images, "--real", args.fid_images,
                   "--out", folder / "fid.json", threads=args.threads)
        cond = json.loads((folder / "cond.json").read_text())["scores"]["cond"]
        fid = json.loads((folder / "fid.json").read_text())["scores"]["fid"]
        steps = toolkit.load_checkpoint(folder)["step"]
        result = {"recipe": row, "seed": seed, "steps": steps, "fid": fid,
                  "spearman": {f: cond[f]["spearman"] for f in DRIVEN}}
        result["mean"] = sum(result["spearman"].values()) / len(DRIVEN)
        print(json.dumps(result), flush=True)
        return result

    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(run, [(row, seed) for row in args.recipes for seed in args.seeds]))
    print(f"\n| recipe | seed | steps | {' | '.join(DRIVEN)} | mean | FID |")
    print("| --- | --- | --- |" + " --- |" * (len(DRIVEN) + 2))
    for r in results:
        features = " | ".join(f"{r['spearman'][f]:.3f}" for f in DRIVEN)
        print(f"| {r['recipe']} | {r['seed']} | {r['steps']} | {features} | **{r['mean']:.3f}** | {r['fid']:.1f} |")


if __name__ == "__main__":
    main()
