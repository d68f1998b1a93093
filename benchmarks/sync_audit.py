"""Host synchronisations inside training steps, counted by CUDA's sync debug mode.

    python benchmarks/sync_audit.py --recipe wgan --size 64 --steps 20

Builds a run the way ``ganzoo train`` does (plan, model, batches resident on the device, trainer), warms up for a
few steps, then runs ``--steps`` steps (critic phase, generator phase, average update: what happens between
logging steps) with ``torch.cuda.set_sync_debug_mode("warn")``, and prints one JSON line: the number of
synchronising calls per step and each distinct message. On a CPU there is nothing to synchronise with: the steps
run (a smoke test of this script) and the line says so.
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch

from ganzoo import context as run_context
from ganzoo.conditions import encode
from ganzoo.config import build_config
from ganzoo.data.loader import BatchSampler, ResidentBatches
from ganzoo.data.sources import open_dataset
from ganzoo.model import build_model, plan_run
from ganzoo.plugins import get_registry
from ganzoo.train import Trainer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="wgan")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    config = build_config({"recipe": args.recipe, "data": {"image_size": args.size}, "batch_size": args.batch,
                           "device": "cuda" if cuda else "cpu"}, overrides=tuple(args.overrides))
    registry = get_registry()
    plan = plan_run(config, registry)
    context = run_context.setup(config.device, config.amp)
    data = open_dataset(plan.dataset, config.data.image_size, registry, config.options, progress=False)
    model = build_model(plan, data, context)
    sampler = BatchSampler(len(data.images), config.batch_size, config.seed, context, context.device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    batches = ResidentBatches(data.images, lambda rows: encode(model.conditions, data.rows(rows), "cpu"), sampler,
                              context, memory_format)
    trainer = Trainer(model, batches, context, config)

    def step(index):
        trainer.critic_phase(index)
        trainer.generator_phase(index)
        model.ema.update(model.generator)

    for index in range(args.warmup):
        step(index)
    if not cuda:
        print(json.dumps({"benchmark": "sync audit", "skipped": "no CUDA device: nothing to synchronise with"}))
        return
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for index in range(args.warmup, args.warmup + args.steps):
                step(index)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    messages = sorted({str(w.message).splitlines()[0][:200] for w in caught})
    print(json.dumps({"benchmark": "sync audit", "recipe": args.recipe, "size": args.size, "batch": args.batch,
                      "amp": config.amp, "steps": args.steps, "synchronising_calls": len(caught),
                      "per_step": round(len(caught) / args.steps, 2), "messages": messages}))


if __name__ == "__main__":
    main()
