"""Training throughput of `ganzoo train wgan` against a plain hand-written WGAN-GP loop, in one process.

Both use the same DCGAN modules, batch, data, n_critic and optimisers; the hand-written loop also keeps an EMA of
the generator, as the engine does. The plain loop holds the data as one NCHW float tensor in [-1, 1] (the usual
TensorDataset set-up) and slices batches from it in order; the engine converts shuffled uint8 batches each step.
Rounds alternate (engine, plain, engine with channels_last) so drift in the machine
affects all alike; each times `--steps` generator steps after as many untimed warm-up steps.

    python benchmarks/bench_train.py --size 64 --batch 64 --rounds 3
    python benchmarks/bench_train.py --smoke      # tiny sizes, seconds: that the script still runs
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from ganzoo import ArchitectureSpec
from ganzoo.apps import toolkit
from ganzoo_dcgan import DCGAN, DCGANOptions
from ganzoo_synthcovers import synthcovers


def engine_throughput(args, channels_last: bool) -> float:
    """Critic images/s over the second half of a 2 x steps run: the metrics line at step 2 x steps covers
    exactly the timed steps (the first half warms up)."""
    config = toolkit.config(
        recipe="wgan", data={"image_size": args.size}, options={"synthcovers": {"count": args.count}},
        model={"width": args.width},
        schedule={"batch_size": args.batch, "steps": 2 * args.steps, "log_every": args.steps,
                  "sample_every": 10 ** 9, "checkpoint_every": 10 ** 9},
        system={"channels_last": channels_last, "device": args.device})
    with tempfile.TemporaryDirectory() as run_dir:
        toolkit.run_training(config, run_dir, progress=False)
        lines = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return lines[-1]["critic_images_per_s"]


def plain_throughput(args) -> float:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    data = synthcovers(args.count, args.size)
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2).float().div(127.5).sub(1).contiguous().to(device)
    generator, critic = DCGAN(DCGANOptions()).build(ArchitectureSpec(image_size=args.size, latent_dim=128,
                                                                     width=args.width, critic_batchnorm=False))
    generator, critic = generator.to(device), critic.to(device)
    ema = [p.detach().clone() for p in generator.parameters()]
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.0, 0.9))
    n_critic, cursor = 5, 0

    def step():
        nonlocal cursor
        for _ in range(n_critic):
            if cursor + args.batch > len(images):
                cursor = 0
            real = images[cursor:cursor + args.batch]
            cursor += args.batch
            with torch.no_grad():
                fake = generator(torch.randn(args.batch, 128, device=device))
            eps = torch.rand(args.batch, 1, 1, 1, device=device)
            x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
            grad, = torch.autograd.grad(critic(x_hat).score.sum(), x_hat, create_graph=True)
            penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
            loss_d = critic(fake).score.mean() - critic(real).score.mean() + 10 * penalty
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
        for p in critic.parameters():
            p.requires_grad_(False)
        loss_g = -critic(generator(torch.randn(args.batch, 128, device=device))).score.mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        for p in critic.parameters():
            p.requires_grad_(True)
        with torch.no_grad():
            for average, p in zip(ema, generator.parameters()):
                average.lerp_(p, 0.001)

    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * n_critic * args.batch / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--count", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json-line", action="store_true", help="the summary as one JSON line, rounds on stderr")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: seconds, to check the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.width, args.batch, args.count, args.steps, args.rounds = 16, 8, 8, 64, 1, 1
    results = {"engine": [], "engine_channels_last": [], "plain": []}
    for _ in range(args.rounds):
        results["engine"].append(engine_throughput(args, channels_last=False))
        results["plain"].append(plain_throughput(args))
        results["engine_channels_last"].append(engine_throughput(args, channels_last=True))
        print({k: [round(v, 1) for v in vs] for k, vs in results.items()}, flush=True,
              file=sys.stderr if args.json_line else sys.stdout)
    medians = {k: statistics.median(v) for k, v in results.items()}
    machine = (torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else
               f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(json.dumps({
        "benchmark": "engine against a plain loop", "machine": f"{machine}, torch {torch.__version__}",
        "settings": vars(args),
        "critic_images_per_s": {k: [round(v, 1) for v in vs] for k, vs in results.items()},
        "critic_images_per_s_median": {k: round(v, 1) for k, v in medians.items()},
        "ratio_engine_over_plain": round(medians["engine"] / medians["plain"], 3),
        "ratio_engine_channels_last_over_plain": round(medians["engine_channels_last"] / medians["plain"], 3),
    }, indent=None if args.json_line else 1))


if __name__ == "__main__":
    main()
