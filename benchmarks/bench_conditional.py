"""Do covers follow their audio features? Conditional recipes on synthcovers under one CPU budget, scored with
``ganzoo bench --metric cond`` (rank correlation between requested and measured-back features, for the six
features synthcovers draws) and FID.

    python benchmarks/bench_conditional.py --cpu-minutes 20 --recipes acgan+wgan "resnet+hinge@model.width=16" \\
        "acgan+resnet+hinge@model.width=16" --work /tmp/conditional

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

from runner import ganzoo, settings_flags, slug, train_once

DRIVEN = ("valence", "energy", "loudness", "acousticness", "danceability", "instrumentalness")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--cpu-minutes", type=float, default=20)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--cond-images", type=int, default=2000)
    parser.add_argument("--fid-images", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ganzoo-conditional"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    def run(job):
        row, seed = job
        recipe, _, settings = row.partition("@")
        folder = args.work / f"{slug(row)}-seed{seed}"
        conditional = "conditions=" not in settings  # every run is conditional unless its settings say otherwise
        train_once(folder, recipe, "--set", "data.image_size=32", "--set", f"model.width={args.width}",
                   "--set", f"seed={seed}", "--set", "sample_every=100000", "--set", "log_every=100",
                   *(["--set", 'conditions=["audio-features"]'] if conditional else []),
                   *settings_flags(settings), "--cpu-minutes", args.cpu_minutes, "--quiet", threads=args.threads)
        if not (folder / "cond.json").is_file():
            ganzoo("bench", folder, "--metric", "cond", "-n", args.cond_images, "--out", folder / "cond.json",
                   threads=args.threads)
            ganzoo("bench", folder, "--metric", "fid", "-n", args.fid_images, "--real", args.fid_images,
                   "--out", folder / "fid.json", threads=args.threads)
        cond = json.loads((folder / "cond.json").read_text())["scores"]["cond"]
        fid = json.loads((folder / "fid.json").read_text())["scores"]["fid"]
        steps = [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()][-1]
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
