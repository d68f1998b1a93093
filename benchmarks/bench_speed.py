"""Training speed over a grid of recipes, image sizes, batch sizes, bf16 autocast and torch.compile.

    python benchmarks/bench_speed.py --device cuda --recipes wgan wgan+logan --sizes 64 128 --batches 64 256
    python benchmarks/bench_speed.py --device cpu --sizes 32 --width 32 --steps 5 --no-compile   # a CPU run
    python benchmarks/bench_speed.py --smoke      # tiny sizes, seconds: that the script still runs

Each configuration trains in this process on synthcovers: ``--steps`` generator steps of warm-up (compilation
included), then ``--steps`` timed ones; the rate is the engine's own ``critic_images_per_s`` over the timed steps
(critic batches x batch size per second), and the time per generator step follows from it. Peak memory is CUDA's
max_memory_allocated. One JSON line per configuration goes to stdout as soon as it is measured; a configuration
that fails (or would start after ``--budget`` seconds) is recorded with its error instead, so a grid that runs out
of time still leaves every figure it reached.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from ganzoo.apps import toolkit


def measure(recipe: str, size: int, batch: int, amp: bool, compiled: bool, args) -> dict:
    config = toolkit.config(recipe=recipe, data={"name": "synthcovers", "image_size": size},
                            options={"synthcovers": {"count": max(args.count, 4 * batch)}}, model={"width": args.width},
                            schedule={"batch_size": batch, "steps": 2 * args.steps, "log_every": args.steps,
                                      "sample_every": 10 ** 6, "checkpoint_every": 10 ** 6},
                            system={"device": args.device, "amp": amp, "compile": compiled})
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as run:
        started = time.perf_counter()
        toolkit.run_training(config, run, progress=False)
        rows = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    timed = rows[-1]
    n_critic = toolkit.plan_run(config, toolkit.get_registry()).loss.n_critic
    result = {"recipe": recipe, "size": size, "batch": batch, "amp": amp, "compile": compiled,
              "critic_images_per_s": round(timed["critic_images_per_s"]),
              "ms_per_generator_step": round(1000 * n_critic * batch / timed["critic_images_per_s"], 2),
              "seconds_with_warmup": round(time.perf_counter() - started, 1)}
    if torch.cuda.is_available():
        result["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["wgan", "wgan+logan"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batches", type=int, nargs="+", default=[64])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-amp", action="store_true", help="only fp32")
    parser.add_argument("--no-compile", action="store_true", help="only eager mode")
    parser.add_argument("--compile-only", nargs="*", default=None, metavar="RECIPE@SIZE@BATCH",
                        help="compile only these configurations (compilation takes a minute each on a GPU)")
    parser.add_argument("--budget", type=float, default=float("inf"), help="seconds; later configurations are skipped")
    parser.add_argument("--count", type=int, default=2048, help="synthcovers to train on")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: seconds, to check the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.recipes, args.sizes, args.batches, args.width, args.steps, args.count = ["wgan"], [16], [8], 8, 1, 64
        args.no_compile = True
    device = (torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu"
              else f"CPU {platform.machine()}, {torch.get_num_threads()} threads")
    print(json.dumps({"benchmark": "speed grid", "device": device, "torch": torch.__version__, "width": args.width,
                      "timed_steps": args.steps}), flush=True)
    started = time.perf_counter()
    for recipe, size, batch, amp, compiled in itertools.product(
            args.recipes, args.sizes, args.batches, (False,) if args.no_amp else (False, True),
            (False,) if args.no_compile else (False, True)):
        if compiled and args.compile_only is not None and f"{recipe}@{size}@{batch}" not in args.compile_only:
            continue
        row = {"recipe": recipe, "size": size, "batch": batch, "amp": amp, "compile": compiled}
        if time.perf_counter() - started > args.budget:
            print(json.dumps(row | {"skipped": "out of time"}), flush=True)
            continue
        try:
            row = measure(recipe, size, batch, amp, compiled, args)
        except Exception as error:  # one failed configuration must not lose the rest of the grid
            if args.smoke:
                raise
            row["error"] = " ".join(str(error).split())[:300]
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
