"""Does `ganzoo train`'s estimate hold? For each image size and time budget, one run of `ganzoo train DATA
--minutes M` (the recipe and settings it chooses itself): the step its banner predicts after calibration ("the
budget ends at about step N") against the step the run ended at.

    python benchmarks/bench_estimate.py /tmp/covers138 --sizes 32 64 128 --minutes 0.5 1 1.5 2 3 --out estimate.json
    python benchmarks/bench_estimate.py --smoke      # two tiny runs made here: that the script runs

Run it on an otherwise idle machine: the estimate extrapolates the pace of the first steps, so a load that
changes during a run is an error the estimate cannot know about.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

from runner import ganzoo, report

PREDICTED = re.compile(r"the budget ends at about step ([0-9,]+)")
ENDED = re.compile(r"^step ([0-9,]+): ", re.MULTILINE)


def steps_in(pattern: re.Pattern, output: str) -> int | None:
    found = pattern.findall(output)
    return int(found[-1].replace(",", "")) if found else None


def estimate_row(data: str, size: int, minutes: float, work: Path, threads: int, *flags: str) -> dict:
    """One run: its predicted and its final step, and the relative error of the prediction."""
    run = work / f"{size}px-{minutes:g}min"
    result = ganzoo("train", data, "--set", f"data.image_size={size}", "--minutes", minutes, *flags, "--out", run,
                    threads=threads)
    output = result.stdout + result.stderr
    predicted, ended = steps_in(PREDICTED, output), steps_in(ENDED, output)
    error = (predicted - ended) / ended if predicted is not None and ended else None
    return {"image_size": size, "minutes": minutes, "predicted_step": predicted, "final_step": ended,
            "relative_error": error}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", help="a folder of covers (or any data `ganzoo train` takes)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--minutes", type=float, nargs="+", default=[0.5, 1, 1.5, 2, 3])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, help="folder for the runs (a temporary one when absent)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        if args.smoke:
            tiny = ("--set", "model.width=8", "--set", "schedule.batch_size=8", "--set", "options.synthcovers.count=64")
            rows = [estimate_row("synthcovers", 16, minutes, work, 1, *tiny) for minutes in (0.05, 0.1)]
        else:
            if not args.data:
                parser.error("give a DATA folder (or --smoke)")
            rows = [estimate_row(args.data, size, minutes, work, args.threads)
                    for size in args.sizes for minutes in args.minutes]
        report(rows, args.out)
        errors = [abs(row["relative_error"]) for row in rows if row["relative_error"] is not None]
        print(json.dumps({"runs": len(rows), "estimated": len(errors), "largest_error": max(errors, default=None)}))


if __name__ == "__main__":
    main()
