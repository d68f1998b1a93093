"""``ganzoo train``: a run from a recipe, a config and overrides, or a run continued."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import click

from ganzoo.api.errors import GanzooError


@click.command("train")
@click.argument("recipe", required=False)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML or TOML config file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field, e.g. --set data.image_size=32 --set options.wgan.n_critic=3.")
@click.option("--steps", type=click.IntRange(min=1), help="Total generator steps (also when resuming).")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), help="Wall-clock budget for this run.")
@click.option("--cpu-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Budget of CPU time (all threads) for this run: the same work on a busy machine.")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder [default: runs/RECIPE-TIME].")
@click.option("--resume", type=click.Path(exists=True, file_okay=False), help="Continue the run in this folder.")
@click.option("--init-from", type=click.Path(exists=True),
              help="Fine-tune: start from this checkpoint's (or run's) generator, critic and average, with fresh "
                   "optimisers at step 0 (same architecture, size, width and conditions).")
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train data-parallel in N local processes (one per GPU, or CPU processes): starts torchrun.")
def train_command(recipe, config_file, overrides, steps, minutes, cpu_minutes, out, resume, init_from, device, quiet,
                  nproc):
    """Train RECIPE, components joined with '+': dcgan+ns+diffaug, wgan+logan, r3gan+rpgan+ada (without one,
    the config file's recipe or the default recipe the installed plugins declare: `ganzoo plugins`).

    Writes config.json, metrics.jsonl, samples.png (and samples/ per step) and checkpoint.pt to the run
    folder. Ctrl-C saves a checkpoint after the current step; --resume continues exactly where it stopped.
    Under torchrun (or --nproc N) schedule.batch_size is per process and rank 0 writes the run folder.
    """
    from ganzoo.runtime import context

    if nproc > 1 and not context.launched_by_torchrun():
        sys.exit(subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  f"--nproc_per_node={nproc}", "-m", "ganzoo", *without_nproc(sys.argv[1:])]))
    if resume:
        if init_from:
            raise GanzooError("--init-from starts a new run; --resume continues one: give one of them")
        if config_file or overrides:
            raise GanzooError("--resume continues a run with its own config; only --steps, --minutes, "
                              "--cpu-minutes and --device may change")
        config, state, run_dir = resumed_config(Path(resume), recipe, steps, minutes, cpu_minutes, device)
    else:
        from ganzoo.runtime.config import build_config

        state = None
        settings = {key: value for key, value in {
            "recipe": recipe, "model.init_from": init_from, "schedule.steps": steps, "schedule.minutes": minutes,
            "schedule.cpu_minutes": cpu_minutes, "system.device": device}.items() if value is not None}
        if (minutes or cpu_minutes) and not steps:
            settings["schedule.steps"] = None
        config = build_config({}, config_file, overrides, settings)
        run_dir = Path(out) if out else Path("runs") / f"{(config.recipe or 'default').replace('+', '_')}-" \
                                                       f"{time.strftime('%Y%m%d-%H%M%S')}"
    train_and_report(config, run_dir, state, quiet)


def resumed_config(run_dir: Path, recipe: str | None, steps, minutes, cpu_minutes, device):
    """The config, checkpoint and folder of a run to continue: its own config, with the budget given now (the
    run's steps and device unless given again; no time budget unless given again)."""
    from ganzoo.runtime.checkpoint import checkpoint_config, load_checkpoint

    state = load_checkpoint(run_dir)
    config = checkpoint_config(state, run_dir / "checkpoint.pt")
    if recipe and recipe != config.recipe:
        raise GanzooError(f"{run_dir} trains {config.recipe!r}, not {recipe!r}")
    schedule = config.schedule.model_copy(update={"steps": steps or config.schedule.steps, "minutes": minutes,
                                                  "cpu_minutes": cpu_minutes})
    system = config.system.model_copy(update={"device": device or config.system.device})
    return config.model_copy(update={"schedule": schedule, "system": system}), state, run_dir


def train_and_report(config, run_dir: Path, state, quiet: bool) -> None:
    """Train, then say where the run stopped and what it wrote; Ctrl-C exits with code 130."""
    from ganzoo.engine.training import run_training
    from ganzoo.runtime import context

    try:
        summary = run_training(config, run_dir, resume=state, progress=not quiet)
    except KeyboardInterrupt:
        saved = "the last checkpoint is kept" if (run_dir / "checkpoint.pt").exists() else "no checkpoint yet"
        click.echo(f"Aborted: {saved}.", err=True)
        sys.exit(130)
    finally:
        context.teardown()
    if context.rank_from_environment() != 0:
        sys.exit(130 if summary["stopped_by"] == "interrupt" else 0)
    note = {"steps": "finished", "minutes": "time budget reached",
            "interrupt": "interrupted; continue with --resume"}[summary["stopped_by"]]
    click.echo(f"step {summary['step']}: {note}\n  checkpoint: {summary['checkpoint']}\n"
               f"  samples:    {summary['samples']}")
    if summary["stopped_by"] == "interrupt":
        sys.exit(130)


def without_nproc(args: list[str]) -> list[str]:
    """The command line minus ``--nproc N`` / ``--nproc=N``, for the processes torchrun starts."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept
