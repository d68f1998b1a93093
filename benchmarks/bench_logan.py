"""LOGAN's cost and benefit: `wgan+logan` against `wgan`, same machine, same run.

cost     Critic images/s of both recipes, alternating rounds; the ratio of time per generator step.
benefit  Per seed and dataset: wgan and wgan+logan trained for --steps generator steps, and wgan continued to
         the step count that takes the same wall time as wgan+logan's --steps (from the measured cost ratio).
         FID of each EMA generator against the training data, real Inception, --fid-images each side.

    python benchmarks/bench_logan.py cost --size 32 --width 32 --rounds 3
    python benchmarks/bench_logan.py benefit --data synthcovers --data ../shared/data/covers64 --seeds 0 1
    python benchmarks/bench_logan.py cost --smoke      # tiny sizes, seconds: that the script still runs
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from ganzoo.apps import toolkit
from ganzoo_metrics import frechet_distance


def config_for(recipe, args, steps, seed=0, data="synthcovers", log_every=None):
    return toolkit.config(
        recipe=recipe, data={"name": data, "image_size": args.size},
        options={"synthcovers": {"count": args.count}} if data == "synthcovers" else {},
        model={"width": args.width}, system={"seed": seed},
        schedule={"batch_size": args.batch, "steps": steps, "log_every": log_every or steps,
                  "sample_every": 10 ** 9, "checkpoint_every": 10 ** 9})


def images_per_second(recipe, args) -> float:
    """Critic images/s over the second half of a 2 x steps run (the first half warms up)."""
    with tempfile.TemporaryDirectory() as run_dir:
        toolkit.run_training(config_for(recipe, args, 2 * args.steps, log_every=args.steps), run_dir, progress=False)
        lines = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return lines[-1]["critic_images_per_s"]


def cost(args):
    rates = {"wgan": [], "wgan+logan": []}
    for _ in range(args.rounds):
        for recipe in rates:
            rates[recipe].append(images_per_second(recipe, args))
        print({k: [round(v, 1) for v in vs] for k, vs in rates.items()}, flush=True)
    medians = {k: statistics.median(v) for k, v in rates.items()}
    return {"critic_images_per_s": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
            "time_per_generator_step_ratio_logan_over_wgan": round(medians["wgan"] / medians["wgan+logan"], 3)}


def fid_of(run_dir, reference, extractor, args):
    sampler = toolkit.load_sampler(run_dir, torch.device("cpu"))
    fake = toolkit.features(extractor, sampler.generate(args.fid_images, seed=1234), total=args.fid_images)
    real = reference.features(extractor, torch.device("cpu"), progress=False)
    return frechet_distance(real, fake)


def benefit(args):
    registry = toolkit.get_registry()
    extractor = toolkit.extractor()
    steps_equal_time = round(args.steps * args.cost_ratio)
    results = []
    for data_name in args.data:
        config = config_for("wgan", args, 1, data=data_name)
        data = toolkit.open_dataset(data_name, args.size, registry, config.options, progress=False)
        reference = toolkit.Reference(data=data, count=args.fid_images, seed=0)
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as root:
                root = Path(root)
                toolkit.run_training(config_for("wgan+logan", args, args.steps, seed, data_name), root / "logan",
                                     progress=False)
                toolkit.run_training(config_for("wgan", args, args.steps, seed, data_name), root / "wgan",
                                     progress=False)
                row = {"data": data_name, "seed": seed,
                       "fid_wgan_logan": fid_of(root / "logan", reference, extractor, args),
                       "fid_wgan_equal_steps": fid_of(root / "wgan", reference, extractor, args)}
                state = toolkit.load_checkpoint(root / "wgan" / "checkpoint.pt")
                toolkit.run_training(config_for("wgan", args, steps_equal_time, seed, data_name), root / "wgan",
                                     resume=state, progress=False)
                row["fid_wgan_equal_time"] = fid_of(root / "wgan", reference, extractor, args)
            results.append(row)
            print(json.dumps(row), flush=True)
    return {"steps": args.steps, "wgan_steps_for_equal_time": steps_equal_time, "fid_images": args.fid_images,
            "runs": results}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["cost", "benefit"])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--count", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=20, help="timed steps (cost) or training steps (benefit)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", action="append", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--fid-images", type=int, default=500)
    parser.add_argument("--cost-ratio", type=float, default=1.0, help="measured by `cost`, for equal wall time")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: seconds, to check the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.width, args.batch, args.count, args.steps, args.rounds = 16, 8, 8, 64, 1, 1
        args.seeds, args.fid_images, args.cost_ratio = [0], 8, 2.0
    args.data = args.data or ["synthcovers"]
    report = {"machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}",
              "settings": {k: v for k, v in vars(args).items()}}
    report |= cost(args) if args.what == "cost" else benefit(args)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
