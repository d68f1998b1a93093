"""Running ``ganzoo`` commands from benchmark scripts: one subprocess each, with its own thread count."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def ganzoo(*args, threads: int = 1, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m ganzoo ARGS`` with ``threads`` CPU threads; a failure raises with ganzoo's own last line."""
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    result = subprocess.run([sys.executable, "-m", "ganzoo", *map(str, args)], capture_output=True, text=True,
                            env=environment)
    if check and result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"ganzoo {' '.join(map(str, args[:3]))}: {last}")
    return result


def peak_of(args, cwd: Path) -> dict:
    """``python -m ganzoo ARGS`` in a fresh child that reports its own peak resident memory (getrusage) when the
    command ends: peak RSS, wall time, exit code and the command's last line of output."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", "import resource, runpy, sys; sys.argv = sys.argv[1:]; "
                             "code = 0\ntry:\n    runpy.run_module('ganzoo', run_name='__main__')\n"
                             "except SystemExit as stop:\n    code = stop.code or 0\n"
                             "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(code)",
                             "ganzoo", *map(str, args)], capture_output=True, text=True, cwd=cwd)
    seconds = time.perf_counter() - started
    peak_kb = int(next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("PEAK")))
    output = [line.strip() for line in (result.stdout + result.stderr).splitlines()
              if line.strip() and not line.startswith("PEAK")]
    return {"peak_rss_mib": round(peak_kb / 1024, 1), "seconds": round(seconds, 2), "exit_code": result.returncode,
            "output": output, "last_line": output[-1][:300] if output else ""}


def train_once(run: Path, *args, threads: int = 1) -> bool:
    """``ganzoo train ARGS --out RUN`` unless RUN finished before (its ``wall_seconds.txt``, written last, exists).
    A run folder left unfinished by an interrupted benchmark is this script's own scratch: it is trained again
    from the start, so every row gets the whole budget. Returns whether it trained."""
    if (run / "wall_seconds.txt").is_file():
        return False
    if run.exists():
        print(f"{run.name}: unfinished, training it again", file=sys.stderr, flush=True)
        shutil.rmtree(run)
    started = time.perf_counter()
    ganzoo("train", *args, "--out", run, threads=threads)
    (run / "wall_seconds.txt").write_text(f"{time.perf_counter() - started:.1f}\n")
    return True


def tiny_run(folder: Path, recipe: str = "wgan", *flags, data: Path | None = None) -> Path:
    """A run of two steps at 16 px, width 8, batch 8 on ``data`` (64 synthcovers when None), trained with the CLI
    into ``folder``: the checkpoint a ``--smoke`` run of a script works on."""
    source = ["--set", f"data.name={data}"] if data else ["--set", "options.synthcovers.count=64"]
    ganzoo("train", recipe, "--set", "data.image_size=16", "--set", "model.width=8", "--set", "model.latent_dim=16",
           "--set", "schedule.batch_size=8", *source, *flags, "--steps", "2", "--out", folder, "--quiet")
    return folder


def slug(row: str) -> str:
    """A folder name for a recipe with settings: ``resnet+hinge@model.width=16`` -> ``resnet_hinge-modelwidth16``."""
    return row.replace("+", "_").replace("@", "-").replace(",", "-").replace("=", "").replace(".", "")


def set_flags(settings) -> list[str]:
    """``--set`` flags for KEY=VALUE settings."""
    return [flag for setting in settings for flag in ("--set", setting)]


def settings_flags(settings: str) -> list[str]:
    """``--set`` flags for the comma-separated KEY=VALUE settings after a recipe's ``@`` (values hold no commas)."""
    return set_flags(filter(None, settings.split(",")))


def runs_parser(doc: str) -> argparse.ArgumentParser:
    """The command line of a script that measures each of several runs: RUNS, --seed, --out and --smoke."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON file for every figure")
    parser.add_argument("--smoke", action="store_true", help="a tiny run made here: seconds")
    return parser


def report(results: list[dict], out: Path | None, keys: tuple[str, ...] | None = None) -> None:
    """One JSON line per run on stdout (only ``keys``, when given), and every figure to ``out``."""
    for result in results:
        print(json.dumps({k: result[k] for k in keys} if keys else result))
    if out:
        out.write_text(json.dumps(results, indent=1))
