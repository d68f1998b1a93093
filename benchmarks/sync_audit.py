"""Host synchronisations inside training steps, counted by CUDA's sync debug mode.

    python benchmarks/sync_audit.py --recipe wgan --size 64 --steps 20
    python benchmarks/sync_audit.py --smoke      # tiny sizes, seconds: that the script still runs

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
from pathlib import Path

import torch

from ganzoo.apps import toolkit


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="wgan")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: seconds, to check the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.batch, args.warmup = 16, 8, 1
        args.overrides += ["model.width=8", "options.synthcovers.count=64"]
    cuda = torch.cuda.is_available()
    config = toolkit.build_config({"recipe": args.recipe, "data": {"image_size": args.size, "on_device": True},
                                   "schedule": {"batch_size": args.batch},
                                   "system": {"device": "cuda" if cuda else "cpu"}}, overrides=tuple(args.overrides))
    run = toolkit.set_up(config, Path("sync-audit"), None, toolkit.get_registry(), progress=False)
    model, trainer = run.model, toolkit.Trainer(run.model, run.batches, run.context)

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
                      "amp": run.plan.config.system.amp, "steps": args.steps, "synchronising_calls": len(caught),
                      "per_step": round(len(caught) / args.steps, 2), "messages": messages}))


if __name__ == "__main__":
    main()
