"""Fine-tuning against training from scratch, at equal steps, for several sizes of the target set.

    python benchmarks/bench_finetune.py --base /tmp/covers64-64-split/train --target ../shared/data/covers640 \\
        --recipe dcgan+ns+diffaug --base-cpu-minutes 20 --cpu-minutes 5 --sizes 40 120 0 --seeds 0 1 2
    python benchmarks/bench_finetune.py --smoke      # a tiny base, target and budget: that the script runs

1. The target folder is packed at ``--size`` px and split (``--held-out`` of it, seed 0): its held-out part is
   the reference every run is scored against.
2. A base model trains on ``--base`` (a store at the same size) for ``--base-cpu-minutes``.
3. For each size n of the target's training part (0: all of it) and each seed, a random subset of n covers is
   drawn (by the seed) and two runs train on it for ``--cpu-minutes`` of CPU time each: one from scratch, one
   with ``--init-from`` the base model. Both evaluate FID and KID against the held-out covers every
   ``--eval-every`` steps (``eval_reference``), ``--eval-images`` generated covers against all held-out ones.
4. One JSON line per run with its curve; at the end a summary per size: each mode's scores at the largest step
   both reached (equal steps), mean and spread over seeds.

Runs finished in ``--work`` are read, not trained again (an interrupted one is trained again).
"""

from __future__ import annotations

import argparse
import json
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tempfile

from ganzoo.apps import toolkit
from runner import ganzoo, set_flags, train_once


def subset(store: Path, size: int, seed: int, out: Path) -> Path:
    """``size`` covers of ``store`` drawn by ``seed`` (all of them for 0), as a store of their own."""
    if out.exists():
        return out
    return toolkit.store_subset(store, size or len(toolkit.load_store(store).images), seed, out)


def curve(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{"step": r["step"], "fid": r["eval/fid"], "kid": r["eval/kid_mean"]} for r in rows if "eval/fid" in r]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="store the base model trains on")
    parser.add_argument("--target", type=Path, help="folder of covers to fine-tune on")
    parser.add_argument("--recipe", default="dcgan+ns+diffaug")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--held-out", type=float, default=0.2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[40, 120, 0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--base-cpu-minutes", type=float, default=20)
    parser.add_argument("--cpu-minutes", type=float, default=5)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-images", type=int, default=150)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="for every run")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ganzoo-finetune"))
    parser.add_argument("--smoke", action="store_true", help="a tiny base, target and budget made here: seconds")
    args = parser.parse_args()
    if not args.smoke:
        return compare(args)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        args.target = toolkit.write_cover_folder(scratch / "target-covers", 24, 16)
        ganzoo("data", "prepare", toolkit.write_cover_folder(scratch / "base-covers", 32, 16), "--size", "16",
               "--out", scratch / "base-store", "--quiet")
        args.base, args.work = scratch / "base-store", scratch / "work"
        args.size, args.width, args.sizes, args.seeds = 16, 8, [8], [0]
        args.base_cpu_minutes = args.cpu_minutes = 0.03
        args.eval_every, args.eval_images, args.parallel = 1, 4, 1
        args.set = ["schedule.batch_size=4", "model.latent_dim=16"]
        compare(args)


def compare(args):
    args.work.mkdir(parents=True, exist_ok=True)
    common = ["--set", f"data.image_size={args.size}", "--set", f"model.width={args.width}", "--set",
              "schedule.sample_every=100000", "--set", "schedule.log_every=50", "--quiet", *set_flags(args.set)]
    target = args.work / "target"
    if not (args.work / "split").exists():
        ganzoo("data", "prepare", args.target, "--size", args.size, "--out", target, "--quiet")
        ganzoo("data", "split", target, "--held-out", args.held_out, "--seed", 0, "--out", args.work / "split")
    train_part, held_out = args.work / "split" / "train", args.work / "split" / "held-out"
    base = args.work / "base"
    train_once(base, args.recipe, "--set", f"data.name={args.base}", "--cpu-minutes", args.base_cpu_minutes, *common,
               threads=args.parallel)
    evaluation = ["--set", f"evaluation.every={args.eval_every}", "--set", f"evaluation.images={args.eval_images}",
                  "--set", f"evaluation.reference={held_out}", "--set", "evaluation.metrics=[fid, kid]",
                  "--set", f"options.kid.subset_size={args.eval_images}"]

    def run(job):
        size, seed, mode = job
        data = subset(train_part, size, seed, args.work / f"subset-{size}-{seed}")
        folder = args.work / f"{mode}-{size}-{seed}"
        train_once(folder, args.recipe, "--set", f"data.name={data}", "--set", f"system.seed={seed}",
                   "--cpu-minutes", args.cpu_minutes, *common, *evaluation,
                   *(["--init-from", base] if mode == "finetune" else []))
        result = {"size": len(toolkit.load_store(data).images), "seed": seed, "mode": mode, "curve": curve(folder)}
        print(json.dumps(result), flush=True)
        return result

    jobs = [(size, seed, mode) for size in args.sizes for seed in args.seeds for mode in ("scratch", "finetune")]
    for size in args.sizes:  # subsets first, in this process, so that parallel runs never race to write one
        for seed in args.seeds:
            subset(train_part, size, seed, args.work / f"subset-{size}-{seed}")
    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(run, jobs))
    print(f"\n{len(toolkit.load_store(held_out).images)} held-out covers; {args.eval_images} generated per evaluation\n")
    print("| covers | mode | step | FID | KID |\n| --- | --- | --- | --- | --- |")
    for size in sorted({r["size"] for r in results}):
        group = [r for r in results if r["size"] == size]
        step = min(max(point["step"] for point in r["curve"]) for r in group)
        for mode in ("scratch", "finetune"):
            at = [next(p for p in r["curve"] if p["step"] == step) for r in group if r["mode"] == mode]
            fid, kid = [p["fid"] for p in at], [p["kid"] for p in at]
            print(f"| {size} | {mode} | {step} | {statistics.mean(fid):.1f} ± {statistics.pstdev(fid):.1f} | "
                  f"{statistics.mean(kid):.3f} ± {statistics.pstdev(kid):.3f} |")


if __name__ == "__main__":
    main()
