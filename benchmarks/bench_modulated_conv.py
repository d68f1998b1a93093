"""Where a StyleGAN2 step's time goes on a CPU, and the modulated convolution in its two forms: one grouped
convolution of per-sample weights (the paper's fused form) against the form ``ganzoo_stylegan2`` uses (styles
scale the input, one convolution shared by the batch, demodulation coefficients scale the output).

    python benchmarks/bench_modulated_conv.py --size 64 --batch 16 --width 16 --threads 2
    python benchmarks/bench_modulated_conv.py --smoke

Each form is timed twice, in turn, in one process (median of ``--repeats`` calls each): the synthesis forward,
the critic forward, a generator step (forward and backward through the critic) and a critic step with R1's
double backward. Prints each figure and the ratios of the second round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

import ganzoo_stylegan2
from ganzoo import ArchitectureSpec


def grouped(x, weight, styles, demodulate):
    """The fused form: each sample's weight scaled by its styles (and demodulated), one grouped convolution."""
    batch, channels, height, width = x.shape
    w = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        w = w * (w.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).rsqrt()
    out = F.conv2d(x.reshape(1, batch * channels, height, width), w.reshape(-1, channels, *weight.shape[2:]),
                   padding=weight.shape[-1] // 2, groups=batch)
    return out.reshape(batch, -1, height, width)


def timed(call, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(size: int, batch: int, width: int, repeats: int) -> dict:
    torch.manual_seed(0)
    generator, critic = ganzoo_stylegan2.StyleGAN2(ganzoo_stylegan2.StyleGAN2Options()).build(
        ArchitectureSpec(image_size=size, latent_dim=128, width=width))
    z, real = torch.randn(batch, 128), torch.randn(batch, 3, size, size)

    def generator_step():
        generator.zero_grad()
        critic(generator(z)).score.mean().backward()

    def critic_step_with_r1():
        critic.zero_grad()
        images = real.clone().requires_grad_(True)
        score = critic(images).score
        (gradient,) = torch.autograd.grad(score.sum(), images, create_graph=True)
        (score.mean() + gradient.square().sum()).backward()

    shared = ganzoo_stylegan2.modulated_conv
    rounds = {}
    for name, form in (("grouped", grouped), ("shared", shared), ("grouped again", grouped), ("shared again", shared)):
        ganzoo_stylegan2.modulated_conv = form
        with torch.no_grad():
            w = generator.mapping(z)
            figures = {"synthesis_forward": timed(lambda: generator.synthesis(w), repeats),
                       "critic_forward": timed(lambda: critic(real), repeats)}
        figures["generator_step"] = timed(generator_step, repeats)
        figures["critic_step_with_r1"] = timed(critic_step_with_r1, repeats)
        rounds[name] = figures
    ganzoo_stylegan2.modulated_conv = shared
    second_grouped, second_shared = rounds["grouped again"], rounds["shared again"]
    return {"rounds": rounds,
            "shared_over_grouped": {k: round(second_shared[k] / second_grouped[k], 3) for k in second_grouped},
            "synthesis_over_critic_forward": round(second_shared["synthesis_forward"]
                                                   / second_shared["critic_forward"], 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="32 px, batch 4, one repeat: seconds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.size, args.batch, args.width, args.repeats = 32, 4, 8, 1
    print(json.dumps(measure(args.size, args.batch, args.width, args.repeats)))


if __name__ == "__main__":
    main()
