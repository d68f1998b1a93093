"""When does a recipe's grid leave the noise phase? Each snapshot of a run (train it with
`--set schedule.snapshot_every=N --set schedule.keep_snapshots=K`) measured as bench_variety measures a run: KID
against the run's own training data and the spread of the covers' mean colours, generated against real.

    python benchmarks/bench_noise_phase.py runs/covers138 --generated 500 --out noise.json
    python benchmarks/bench_noise_phase.py --smoke      # a tiny run made here: that the script runs

A snapshot has left the noise phase when its KID is at most ``KID_OUT_OF_NOISE`` and its colour spread at least
``SPREAD_OUT_OF_NOISE`` of the data's (one motif repeated, the collapse a short run shows, fails the second). The
step reported is the first snapshot from which every later one holds both: what a recipe registers as
``leaves_noise`` for that image size (``register_recipes``), and what `ganzoo train` compares its budget with.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench_variety import variety
from ganzoo.apps import toolkit
from runner import report, runs_parser, tiny_run

KID_OUT_OF_NOISE = 0.2
SPREAD_OUT_OF_NOISE = 0.5


def out_of_noise(row: dict) -> bool:
    spread = row["colour_std"]["generated"] / row["colour_std"]["real"]
    return row.get("kid_vs_training_data", 0.0) <= KID_OUT_OF_NOISE and spread >= SPREAD_OUT_OF_NOISE


def noise_phase(run: Path, generated: int, seed: int, with_kid: bool = True) -> dict:
    """Every snapshot's figures, and the first step from which all later snapshots are out of the noise phase."""
    steps = toolkit.snapshot_steps(run)
    if not steps:
        raise SystemExit(f"{run} has no snapshots: train it with --set schedule.snapshot_every=N")
    rows = [{"step": step, **variety(Path(f"{run}@{step}"), generated, seed, with_kid)} for step in steps]
    out = [out_of_noise(row) for row in rows]
    leaves = next((row["step"] for i, row in enumerate(rows) if all(out[i:])), None)
    return {"run": str(run), "image_size": rows[-1]["image_size"], "leaves_noise": leaves,
            "criterion": {"kid_at_most": KID_OUT_OF_NOISE, "colour_spread_at_least": SPREAD_OUT_OF_NOISE},
            "snapshots": [{"step": row["step"], "kid": row.get("kid_vs_training_data"),
                           "colour_spread": row["colour_std"]["generated"] / row["colour_std"]["real"],
                           "hue_sectors": row["hue_sectors"], "out_of_noise": flag} for row, flag in zip(rows, out)]}


def main() -> None:
    parser = runs_parser(__doc__)
    parser.add_argument("--generated", type=int, default=500)
    args = parser.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory() as scratch:
            run = tiny_run(Path(scratch) / "run", "wgan", "--set", "schedule.snapshot_every=1")
            print(json.dumps(noise_phase(run, 16, 0, with_kid=False)))
        return
    report([noise_phase(run, args.generated, args.seed) for run in args.runs], args.out)


if __name__ == "__main__":
    main()
