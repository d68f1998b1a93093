"""How close `ganzoo project` comes to real covers the generator never saw: for each of N held-out covers, the
distance (pixels at three scales; the projected critic's frozen features when the run has them) of the best of
64 random latents, and after the search in each space asked for (z; w and w+ for a generator with a W space),
from the same start.

    python benchmarks/bench_projection.py runs/a runs/b --held-out SPLIT/held-out -n 8 --steps 200 --out p.json
    python benchmarks/bench_projection.py runs/stylegan2 --held-out SPLIT/held-out --spaces z w w+ --out p.json
    python benchmarks/bench_projection.py --smoke      # a tiny run made here: that the script runs
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from ganzoo.apps import toolkit
from runner import ganzoo, report, runs_parser


def projection_distances(run: Path, held_out: str, count: int, steps: int, seed: int, space: str = "z") -> dict:
    device = torch.device("cpu")
    sampler = toolkit.load_sampler(run, device)
    critic = toolkit.trained_critic(run, device)
    data = toolkit.load_store(held_out) if (Path(held_out) / "manifest.json").is_file() else toolkit.training_data(held_out)
    picked = np.random.default_rng(seed).permutation(len(data.images))[:count]
    rows = []
    for index in picked:
        target = torch.from_numpy(np.asarray(data.images[index]).copy()).permute(2, 0, 1)
        found = toolkit.project(sampler, critic, target, steps, seed, space, progress=False)
        rows.append({"cover": int(index), "start": found.start, "end": found.end})
    mean = {when: {term: float(np.mean([row[when][term] for row in rows])) for term in rows[0][when]}
            for when in ("start", "end")}
    return {"run": str(run), "space": space, "step": sampler.step, "image_size": sampler.image_size,
            "held_out": held_out, "covers": len(rows), "steps": steps, "mean": mean, "each": rows}


def main() -> None:
    parser = runs_parser(__doc__)
    parser.add_argument("--held-out", help="a store of covers the runs never trained on (or a run: its training data)")
    parser.add_argument("-n", "--count", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--spaces", nargs="+", choices=["z", "w", "w+"], default=["z"])
    args = parser.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory() as scratch:
            run = Path(scratch) / "run"
            ganzoo("train", "stylegan2+ns", "--set", "data.image_size=32", "--set", "model.width=8", "--set",
                   "model.latent_dim=16", "--set", "options.stylegan2.mapping_layers=2", "--set",
                   "schedule.batch_size=8", "--set", "options.synthcovers.count=64", "--steps", "2", "--out", run,
                   "--quiet")
            for space in ("z", "w+"):
                print(json.dumps(projection_distances(run, str(run), 2, 3, 0, space)["mean"]))
        return
    results = [projection_distances(run, args.held_out, args.count, args.steps, args.seed, space)
               for run in args.runs for space in args.spaces]
    report(results, args.out, ("run", "space", "covers", "steps", "mean"))


if __name__ == "__main__":
    main()
