"""Does the generator draw a feature, or only convince the critic's ACGAN head? Three rank correlations per
audio feature, for a checkpoint trained with `acgan` and `audio-features` on synthcovers:

  head on real       the critic's head on real covers against their features (what the head learnt)
  head on generated  the head on covers generated for random training rows against the requested features
  measured           synthcovers' measuring function on the same generated covers (the independent check)

A feature the head reads on generated covers but the measuring function does not is one the generator fakes.

    python benchmarks/bench_acgan_head.py RUN_DIR [--count 1000]
    python benchmarks/bench_acgan_head.py --smoke      # a tiny run, seconds: that the script still runs
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from torchmetrics.functional import spearman_corrcoef

import tempfile
from pathlib import Path

from ganzoo.apps import toolkit
from ganzoo_acgan import head_name
from runner import tiny_run

DEVICE = torch.device("cpu")


def spearman(a, b) -> float:
    return round(float(spearman_corrcoef(torch.as_tensor(a, dtype=torch.float64),
                                         torch.as_tensor(b, dtype=torch.float64))), 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a tiny run trained here, 16 covers: seconds")
    args = parser.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory() as scratch:
            args.run, args.count = tiny_run(Path(scratch) / "run", "acgan+wgan", "--set",
                                            "model.conditions=[audio-features]"), 16
            report(args)
    else:
        report(args)


def report(args):
    sampler = toolkit.load_sampler(args.run, DEVICE)
    critic = toolkit.trained_critic(args.run, DEVICE)
    condition = sampler.conditions["audio-features"]
    head = head_name("audio-features")
    data = toolkit.training_data(args.run, args.count)

    real_rows = np.arange(min(args.count, len(data.images)))
    real = torch.from_numpy(data.images[real_rows]).permute(0, 3, 1, 2).float() / 127.5 - 1
    requested = data.random_rows(args.count, args.seed + 1)
    generated = torch.cat(list(sampler.generate(args.count, args.seed, requested)))
    with torch.no_grad():
        on_real = critic(real).aux[head].numpy()
        on_generated = critic(generated.float() / 127.5 - 1).aux[head].numpy()
    measured = data.measure(generated.permute(0, 2, 3, 1).numpy())
    result = {"run": str(args.run), "step": sampler.step, "count": args.count, "features": {}}
    for i, column in enumerate(condition.columns):
        row = {"head_on_real": spearman(on_real[:, i], data.metadata[column][real_rows]),
               "head_on_generated": spearman(on_generated[:, i], requested[column])}
        if column in measured:
            row["measured"] = spearman(measured[column], requested[column])
        result["features"][column] = row
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
