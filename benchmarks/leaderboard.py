"""A StudioGAN-style leaderboard: every recipe trained under one protocol and budget, scored against held-out
real covers, with several seeds.

    ganzoo data prepare ../shared/data/covers64 --size 32 --out /tmp/covers32
    ganzoo data split /tmp/covers32 --held-out 0.15 --seed 0 --out /tmp/covers32-split
    python benchmarks/leaderboard.py --split /tmp/covers32-split --cpu-minutes 20 --seeds 0 1 2 \\
        --recipes dcgan+wgan resnet+hinge+diffaug r3gan+rpgan+ada --parallel 2 --work /tmp/leaderboard \\
        --grids docs/grids --out benchmarks/leaderboard-cpu.json
    python benchmarks/leaderboard.py --smoke      # a tiny split and budget made here: that the script runs

A recipe may carry its own settings after an ``@``: ``resnet+hinge+diffaug@model.width=16,options.hinge.n_critic=1``
(a row of the table is a recipe with its settings, as a row of StudioGAN's table is a paper's config).

Each run trains on the split's training store with ``--cpu-minutes`` of CPU time (``--threads`` threads each,
``--parallel`` runs at once), or ``--minutes`` of wall-clock time on ``--device`` (the GPU table: runs side by
side on one GPU), then is scored by ``ganzoo bench`` against the held-out store: FID, KID, precision
and recall from ``--generated`` covers against every held-out cover, with the same Inception features for all. The
floor is the same protocol applied to real training covers instead of generated ones: what a perfect generator
of the training set would score. A row per recipe: mean and spread over seeds, critic images/s, parameters,
wall time, steps; a sample grid per recipe (its first seed) under ``--grids``. Runs already in ``--work`` are
scored, not trained again, so an interrupted leaderboard continues (a run it interrupted is trained again).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

import tempfile

from ganzoo.apps import toolkit
from runner import ganzoo, set_flags, settings_flags, slug, train_once

SCORES = ("fid", "kid_mean", "precision", "recall")


def train_run(row: str, seed: int, args) -> Path:
    recipe, _, settings = row.partition("@")
    run = args.work / f"{slug(row)}-seed{seed}"
    budget = ["--minutes", args.minutes] if args.minutes else ["--cpu-minutes", args.cpu_minutes]
    if train_once(run, recipe, "--set", f"data.name={args.split / 'train'}", "--set", f"data.image_size={args.size}",
                  *(["--set", f"model.width={args.width}"] if args.width else []), "--set", f"system.seed={seed}",
                  "--set", "schedule.sample_every=100000",
                  "--set", "schedule.checkpoint_every=500", "--set", "schedule.log_every=50", *set_flags(args.set),
                  *settings_flags(settings), *budget, "--device", args.device, "--quiet", threads=args.threads):
        print(f"trained {run.name} in {float((run / 'wall_seconds.txt').read_text()):.0f} s", file=sys.stderr,
              flush=True)
    return run


def score(source: Path, out: Path, args, size_flag: bool = False) -> dict:
    if not out.is_file():
        ganzoo("bench", source, "--metric", "fid", "--metric", "kid", "--metric", "pr",
               "--ref", args.split / "held-out", "-n", args.generated, "--real", args.real, "--out", out,
               *(["--size", args.size] if size_flag else []), threads=args.threads * args.parallel)
    return json.loads(out.read_text())


def run_facts(run: Path, budget_seconds: float) -> dict:
    """Steps, throughput over the budget (steps x n_critic x batch per budgeted second: per CPU-second for a CPU
    budget, the same on a busy or an idle machine), parameters of both networks and the wall time the run took."""
    state = toolkit.load_checkpoint(run)
    config = toolkit.checkpoint_config(state)
    n_critic = toolkit.plan_run(config, toolkit.get_registry()).loss.n_critic
    return {"steps": state["step"],
            "critic_images_per_s": state["step"] * n_critic * config.schedule.batch_size / budget_seconds,
            "parameters": toolkit.checkpoint_parameters(run),
            "wall_seconds": float((run / "wall_seconds.txt").read_text())}


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3g}"
    return f"{statistics.mean(values):.3g} ± {statistics.stdev(values):.2g}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, help="a folder made by `ganzoo data split`")
    parser.add_argument("--recipes", nargs="+", default=["dcgan+wgan", "resnet+hinge+diffaug", "r3gan+rpgan+ada"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--width", type=int, help="model.width of every run (default: each recipe's own, as "
                                                  "`ganzoo train` chooses it on this device)")
    parser.add_argument("--cpu-minutes", type=float, default=20)
    parser.add_argument("--minutes", type=float, help="a wall-clock budget instead (for a GPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--generated", type=int, default=1000)
    parser.add_argument("--real", type=int, default=100000, help="reference images (all held-out ones by default)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="for every run")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ganzoo-leaderboard"))
    parser.add_argument("--grids", type=Path, help="folder for one small sample grid per recipe")
    parser.add_argument("--out", type=Path, help="JSON file for every figure")
    parser.add_argument("--smoke", action="store_true", help="a tiny split, two recipes, seconds each: that it runs")
    args = parser.parse_args()
    if not args.smoke:
        return leaderboard(args)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        ganzoo("data", "prepare", toolkit.write_cover_folder(scratch / "covers", 40, 16), "--size", "16", "--out",
               scratch / "store", "--quiet")
        ganzoo("data", "split", scratch / "store", "--held-out", "0.25", "--out", scratch / "split", "--quiet")
        args.split, args.work, args.size, args.width, args.seeds = scratch / "split", scratch / "work", 16, 8, [0]
        args.recipes, args.cpu_minutes, args.generated, args.parallel = ["dcgan+wgan", "dcgan+ns+diffaug"], 0.02, 8, 1
        args.set += ["schedule.batch_size=8", "model.latent_dim=16"]
        leaderboard(args)


def leaderboard(args):
    args.work.mkdir(parents=True, exist_ok=True)
    jobs = [(recipe, seed) for seed in args.seeds for recipe in args.recipes]
    with ThreadPoolExecutor(args.parallel) as pool:
        runs = dict(zip(jobs, pool.map(lambda job: train_run(*job, args), jobs)))
    floor = score(args.split / "train", args.work / "floor.json", args, size_flag=True)
    rows = []
    for recipe in args.recipes:
        results = [score(runs[recipe, seed], runs[recipe, seed] / "bench.json", args) for seed in args.seeds]
        facts = [run_facts(runs[recipe, seed], 60 * (args.minutes or args.cpu_minutes)) for seed in args.seeds]
        rows.append({"recipe": recipe, "seeds": args.seeds,
                     "scores": {name: [r["scores"][name] for r in results] for name in SCORES},
                     "facts": {name: [f[name] for f in facts] for name in facts[0]}})
        if args.grids:
            args.grids.mkdir(parents=True, exist_ok=True)
            ganzoo("generate", runs[recipe, args.seeds[0]], "-n", "36", "--out", args.grids / f"{slug(recipe)}.png",
                   threads=args.threads)
    protocol = {key: floor["protocol"].get(key) for key in ("generated_images", "real_images", "image_size",
                                                             "reference_fingerprint")}
    machine = (torch.cuda.get_device_name() if args.device.startswith("cuda") else
               f"{platform.machine()}, {os.cpu_count()} cores") + f", torch {torch.__version__}"
    budget = f"{args.minutes:g} minutes on {args.device}" if args.minutes else f"{args.cpu_minutes:g} CPU-minutes"
    print(f"Protocol: {args.size} px, {budget} per run ({args.threads} thread, {args.parallel} runs at once), "
          f"{protocol['generated_images']} generated vs {protocol['real_images']} held-out covers; {machine}.\n")
    unit = "s" if args.minutes else "CPU-s"
    print(f"| recipe | FID | KID | precision | recall | critic images per {unit} | parameters | wall time | steps |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| real training covers (floor) | {floor['scores']['fid']:.3g} | {floor['scores']['kid_mean']:.3g} | "
          f"{floor['scores']['precision']:.3g} | {floor['scores']['recall']:.3g} | | | | |")
    for row in sorted(rows, key=lambda r: statistics.mean(r["scores"]["fid"])):
        s, f = row["scores"], row["facts"]
        print(f"| {row['recipe']} | {spread(s['fid'])} | {spread(s['kid_mean'])} | {spread(s['precision'])} | "
              f"{spread(s['recall'])} | {statistics.mean(f['critic_images_per_s']):.0f} | "
              f"{f['parameters'][0] / 1e6:.2f} M | {statistics.mean(f['wall_seconds']) / 60:.1f} min | "
              f"{spread(f['steps'])} |")
    if args.out:
        args.out.write_text(json.dumps({"machine": machine, "settings": {k: str(v) for k, v in vars(args).items()},
                                        "protocol": protocol, "floor": floor["scores"], "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
