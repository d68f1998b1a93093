"""Training images/s for wgan and wgan+logan, with and without bf16 autocast and torch.compile, and peak memory.

    python benchmarks/bench_speed.py --sizes 64 128 --device cuda            # on a GPU
    python benchmarks/bench_speed.py --sizes 32 --width 32 --steps 10       # a quick CPU run

Each configuration trains in this process on synthcovers: ``--steps`` generator steps of warm-up (compilation
included), then ``--steps`` timed ones; the rate is the engine's own ``critic_images_per_s`` over the timed steps
(critic batches x batch size per second). Peak memory is CUDA's max_memory_allocated (CUDA only).
"""

import argparse
import itertools
import json
import platform
import tempfile
from pathlib import Path

import torch

from ganzoo.config import build_config
from ganzoo.train import train


def measure(recipe: str, size: int, amp: bool, compiled: bool, args) -> dict:
    config = build_config({"recipe": recipe, "data": {"name": "synthcovers", "image_size": size},
                           "options": {"synthcovers": {"count": 2048}},
                           "model": {"width": args.width}, "batch_size": args.batch, "steps": 2 * args.steps,
                           "log_every": args.steps, "sample_every": 10 ** 6, "checkpoint_every": 10 ** 6,
                           "device": args.device, "amp": amp, "compile": compiled})
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as run:
        train(config, run, progress=False)
        timed = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()][-1]
    result = {"recipe": recipe, "size": size, "amp": amp, "compile": compiled,
              "critic_images_per_s": round(timed["critic_images_per_s"])}
    if torch.cuda.is_available():
        result["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--recipes", nargs="+", default=["wgan", "wgan+logan"])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = (torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu"
              else f"CPU {platform.machine()}, {torch.get_num_threads()} threads")
    results = [measure(recipe, size, amp, compiled, args) for recipe, size, amp, compiled
               in itertools.product(args.recipes, args.sizes, (False, True), (False, True))]
    print(json.dumps({"device": device, "torch": torch.__version__, "width": args.width, "batch": args.batch,
                      "timed_steps": args.steps, "results": results}, indent=1))


if __name__ == "__main__":
    main()
