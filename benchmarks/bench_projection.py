"""How close `ganzoo project` comes to real covers the generator never saw: for each of N held-out covers, the
distance (pixels at three scales; the projected critic's frozen features when the run has them) of the best of
64 random latents, and after the search on the latent.

    python benchmarks/bench_projection.py runs/a runs/b --held-out SPLIT/held-out -n 8 --steps 200 --out p.json
    python benchmarks/bench_projection.py --smoke      # a tiny run made here: that the script runs
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from ganzoo.apps import toolkit
from runner import report, runs_parser, tiny_run


def projection_distances(run: Path, held_out: str, count: int, steps: int, seed: int) -> dict:
    device = torch.device("cpu")
    sampler = toolkit.load_sampler(run, device)
    critic = toolkit.trained_critic(run, device)
    data = toolkit.load_store(held_out) if (Path(held_out) / "manifest.json").is_file() else toolkit.training_data(held_out)
    picked = np.random.default_rng(seed).permutation(len(data.images))[:count]
    rows = []
    for index in picked:
        target = torch.from_numpy(np.asarray(data.images[index]).copy()).permute(2, 0, 1)
        found = toolkit.project(sampler, critic, target, steps, seed, progress=False)
        rows.append({"cover": int(index), "start": found.start, "end": found.end})
    mean = {when: {term: float(np.mean([row[when][term] for row in rows])) for term in rows[0][when]}
            for when in ("start", "end")}
    return {"run": str(run), "step": sampler.step, "image_size": sampler.image_size, "held_out": held_out,
            "covers": len(rows), "steps": steps, "mean": mean, "each": rows}


def main() -> None:
    parser = runs_parser(__doc__)
    parser.add_argument("--held-out", help="a store of covers the runs never trained on (or a run: its training data)")
    parser.add_argument("-n", "--count", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory() as scratch:
            run = tiny_run(Path(scratch) / "run")
            print(json.dumps(projection_distances(run, str(run), 2, 3, 0)["mean"]))
        return
    results = [projection_distances(run, args.held_out, args.count, args.steps, args.seed) for run in args.runs]
    report(results, args.out, ("run", "covers", "steps", "mean"))


if __name__ == "__main__":
    main()
