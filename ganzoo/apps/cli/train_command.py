"""``ganzoo train``: a run from a recipe, a config and overrides, or a run continued."""

from __future__ import annotations

import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click

from ganzoo.api.errors import GanzooError


@click.command("train")
@click.argument("targets", nargs=-1, metavar="[RECIPE] [DATA]")
@click.option("--data", "data_name", help="Train on this folder of images, prepared store or dataset plugin "
                                          "(as DATA).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML or TOML config file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field, e.g. --set data.image_size=32 --set options.wgan.n_critic=3.")
@click.option("--steps", type=click.IntRange(min=1), help="Total generator steps (also when resuming).")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), help="Wall-clock budget for this run.")
@click.option("--cpu-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Budget of CPU time (all threads) for this run: the same work on a busy machine.")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder [default: runs/RECIPE-TIME].")
@click.option("--resume", type=click.Path(exists=True, file_okay=False), help="Continue the run in this folder.")
@click.option("--init-from", metavar="CHECKPOINT",
              help="Fine-tune: start from this checkpoint's (run's, RUN@best's, RUN@STEP's) generator, critic and "
                   "average, with fresh optimisers at step 0; its architecture, size, width, latent size and "
                   "conditions unless set.")
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--quiet", is_flag=True, help="No start banner and no progress bar.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train data-parallel in N local processes (one per GPU, or CPU processes): starts torchrun.")
def train_command(targets, data_name, config_file, overrides, steps, minutes, cpu_minutes, out, resume, init_from,
                  device, quiet, nproc):
    """Train RECIPE (components joined with '+': dcgan+ns+diffaug, wgan+logan, r3gan+rpgan+ada) on DATA (a
    folder of images, a prepared store or a dataset plugin), either in either order, both optional.

    What is not set is chosen, and said at the start: the image size from the data's (the largest the recipe
    builds at or below it, at most 64 px on a CPU and 256 px on a GPU), a batch no larger than the data, the default
    recipe for that size and the settings its plugins registered for this device
    (`ganzoo plugins`). Writes config.json, metrics.jsonl, samples.png (and samples/ per step) and checkpoint.pt
    to the run folder. Ctrl-C saves a checkpoint after the current step; --resume continues exactly where it
    stopped. Under torchrun (or --nproc N) schedule.batch_size is per process and rank 0 writes the run folder.
    """
    if nproc > 1:
        from ganzoo.runtime.context import launched_by_torchrun

        if not launched_by_torchrun():
            sys.exit(subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                      f"--nproc_per_node={nproc}", "-m", "ganzoo", *without_nproc(sys.argv[1:])]))
    if len(targets) > 2:
        raise GanzooError(f"train takes at most a recipe and a dataset, got {len(targets)} arguments: "
                          f"{' '.join(targets)}")
    if resume:
        if init_from:
            raise GanzooError("--init-from starts a new run; --resume continues one: give one of them")
        if config_file or overrides or data_name or len(targets) > 1:
            raise GanzooError("--resume continues a run with its own config and data; only --steps, --minutes, "
                              "--cpu-minutes and --device may change")
        config, state, run_dir = resumed_config(Path(resume), targets[0] if targets else None, steps, minutes,
                                                cpu_minutes, device)
        notes = []
    else:
        from ganzoo.runtime.config import gather_settings, validate_config

        state = None
        settings = {key: value for key, value in {
            "model.init_from": init_from, "schedule.steps": steps, "schedule.minutes": minutes,
            "schedule.cpu_minutes": cpu_minutes, "system.device": device}.items() if value is not None}
        if (minutes or cpu_minutes) and not steps:
            settings["schedule.steps"] = None
        gathered = gather_settings({}, config_file, overrides, settings)
        validate_config(gathered)  # a mistake in the config is one line before torch and the plugins load
        config, notes = complete_config(gathered, targets, data_name)
        run_dir = Path(out) if out else Path("runs") / f"{config.recipe.replace('+', '_')}-" \
                                                       f"{time.strftime('%Y%m%d-%H%M%S')}"
    train_and_report(config, run_dir, state, quiet, notes)


def complete_config(gathered: dict, targets: tuple[str, ...], data_name: str | None):
    """The config of a new run: the positional RECIPE and DATA (told apart by what exists: a folder or store,
    or a dataset plugin's name, is DATA) and ``--data`` over the gathered settings, then what the user did not
    set chosen from the data and the ``--init-from`` source. Returns the config and one line per choice."""
    from ganzoo.engine.defaults import fill_in
    from ganzoo.registry.loading import get_registry
    from ganzoo.runtime.config import set_value, validate_config

    registry = get_registry()
    recipe, data = None, data_name
    for target in targets:
        if reads_as_data(target, registry):
            if data is not None:
                raise GanzooError(f"two datasets given: {data!r} and {target!r}")
            data = target
        elif recipe is not None:
            raise GanzooError(f"two recipes given: {recipe!r} and {target!r} (a dataset is an existing folder or "
                              f"store, or one of: {', '.join(registry.names('dataset'))})")
        else:
            recipe = target
    if recipe is not None:
        gathered["recipe"] = recipe
    if data is not None:
        set_value(gathered, "data.name", data)
    settings, notes = fill_in(gathered, registry)
    return validate_config(settings), notes


def reads_as_data(target: str, registry) -> bool:
    """Whether a positional argument of ``train`` names data (an existing folder or store, or a dataset plugin)
    rather than a recipe. One that reads as both, or looks like a path that does not exist, is an error."""
    is_data = Path(target).exists() or target in registry.components["dataset"]
    try:
        recipe = registry.recipe(target).text
    except GanzooError:
        recipe = None
    if is_data and recipe is not None:
        kind = "a folder" if Path(target).is_dir() else "a dataset" if not Path(target).exists() else "a file"
        raise GanzooError(f"{target!r} reads both as a recipe ({'+'.join(c.name for c in registry.recipe(target).components)}) "
                          f"and as {kind} here: give --data {target} for the data, or --set recipe={target} for the "
                          "recipe")
    if not is_data and recipe is None and looks_like_path(target):
        raise GanzooError(f"no such folder: {target}")
    return is_data


def looks_like_path(text: str) -> bool:
    """A path rather than a recipe: it has a separator, starts with '.' or '~', or ends in a file suffix."""
    return "/" in text or "\\" in text or text.startswith((".", "~")) or Path(text).suffix.lower() in (
        ".zip", ".tar", ".csv", ".json", ".toml", ".yaml", ".yml")


def resumed_config(run_dir: Path, recipe: str | None, steps, minutes, cpu_minutes, device):
    """The config, checkpoint and folder of a run to continue: its own config, with the budget given now, or
    without one, what is left of the budget the run was started with."""
    from ganzoo.engine.plan import stored_config
    from ganzoo.registry.loading import get_registry
    from ganzoo.runtime.checkpoint import load_checkpoint
    from ganzoo.engine.run_state import remaining_budget

    state = load_checkpoint(run_dir)
    config = stored_config(state, get_registry(), run_dir / "checkpoint.pt")
    if recipe:
        from ganzoo.registry.loading import get_registry

        registry = get_registry()
        if registry.recipe(recipe, config.data.image_size).resolved != registry.recipe(
                config.recipe, config.data.image_size).resolved:
            raise GanzooError(f"{run_dir} trains {config.recipe!r}, not {recipe!r}")
    if steps or minutes or cpu_minutes:
        budget = {"steps": steps or config.schedule.steps, "minutes": minutes, "cpu_minutes": cpu_minutes}
    else:
        budget = remaining_budget(state, config, run_dir)
    schedule = config.schedule.model_copy(update=budget)
    system = config.system.model_copy(update={"device": device or config.system.device})
    return config.model_copy(update={"schedule": schedule, "system": system}), state, run_dir


def train_and_report(config, run_dir: Path, state, quiet: bool, notes: list[str]) -> None:
    """Train (after a start banner), then say where the run stopped and what it wrote; Ctrl-C exits with code
    130."""
    from ganzoo.engine.training import run_training
    from ganzoo.runtime import context

    from tqdm import tqdm

    outlook = Outlook(config)

    def announce(start: dict) -> None:
        if not quiet:
            click.echo(banner(start, notes), err=True)

    def calibrated(estimate: dict) -> None:
        if not quiet:
            tqdm.write("\n".join(outlook.at_calibration(estimate)), file=sys.stderr)

    try:
        summary = run_training(config, run_dir, resume=state, progress=not quiet, announce=announce,
                               calibrated=calibrated)
    except KeyboardInterrupt:
        saved = "the last checkpoint is kept" if (run_dir / "checkpoint.pt").exists() else "no checkpoint yet"
        click.echo(f"Aborted: {saved}.", err=True)
        sys.exit(130)
    finally:
        context.teardown()
    if context.rank_from_environment() != 0:
        sys.exit(130 if summary["stopped_by"] == "interrupt" else 0)
    click.echo("\n".join(outlook.at_end(summary)))
    if summary["stopped_by"] == "interrupt":
        sys.exit(130)


class Outlook:
    """What a run's budget buys and where the run stands, against the steps its recipe needed to leave the
    noise phase in its plugin's measurement (``register_recipes``' ``leaves_noise``)."""

    def __init__(self, config):
        from ganzoo.registry.loading import get_registry

        registry = get_registry()
        self.config = config
        self.size = config.data.image_size
        found = registry.leaves_noise(registry.recipe(config.recipe, self.size), self.size)
        self.needed, self.measured_by = (found[0], found[1]) if found else (None, None)

    def noise_phase(self) -> str:
        return (f"{self.config.recipe}'s grids left the noise phase after about {self.needed:,} steps at {self.size} "
                f"px in {self.measured_by.plugin}'s measurement (benchmarks/RESULTS.md)")

    def at_calibration(self, estimate: dict) -> list[str]:
        """Lines after the first steps: the pace, the steps the budget buys, and whether that is enough."""
        pace, final = estimate["seconds_per_step"], estimate["final_step"]
        buys = f" -> the budget ends at about step {final:,}" if final is not None else ""
        lines = [f"  pace:      {pace:.2f} s a step (CPU {estimate['cpu_seconds_per_step']:.2f} s), from steps 2 to "
                 f"{estimate['step']}{buys}"]
        if self.needed is None or final is None:
            return lines
        if final >= self.needed:
            return lines + [f"  outlook:   enough: {self.noise_phase()}"]
        minutes = math.ceil((self.needed - estimate["step"]) * pace / 60)
        return lines + [f"  outlook:   not enough: {self.noise_phase()}; give about {minutes} minutes "
                        f"(--minutes {minutes}), a smaller data.image_size, or a GPU"]

    def more(self, summary: dict) -> str:
        """The budget flag that continues a run: nothing after an interruption (a resume goes on to the planned
        budget), the same time budget again after one ran out, twice the steps after they were done."""
        schedule = self.config.schedule
        if summary["stopped_by"] == "interrupt":
            return ""
        if summary["stopped_by"] == "minutes":
            if schedule.minutes:
                return f"--minutes {schedule.minutes:g}"
            return f"--cpu-minutes {schedule.cpu_minutes:g}"
        return f"--steps {2 * summary['step']}"

    def at_end(self, summary: dict) -> list[str]:
        """The end message: steps run and why it stopped, where the run stands, how to continue, what it wrote."""
        step, pace, run_dir = summary["step"], summary["pace"], summary["run_dir"]
        why = {"steps": "finished", "minutes": "time budget reached",
               "interrupt": "interrupted; continue with --resume"}[summary["stopped_by"]]
        speed = f" ({pace[0]:.2f} s a step)" if pace else ""
        lines = [f"step {step:,}: {why}{speed}"]
        if self.needed is not None:
            stands = ("past it" if step >= self.needed else
                      f"{self.needed - step:,} steps short of it" + (f", about {math.ceil((self.needed - step) * pace[0] / 60)} "
                                                                    "more minutes" if pace else ""))
            lines.append(f"  outlook:    {self.noise_phase()}: this run is {stands}")
        if summary.get("threads_lowered"):
            at, before, after = summary["threads_lowered"]
            lines.append(f"  threads:    {before} -> {after} from step {at:,}: the machine was busy (a resume starts "
                         f"with {before} again)")
        lines.append(f"  continue:   ganzoo train --resume {shlex.quote(run_dir)} {self.more(summary)}".rstrip())
        return lines + [f"  checkpoint: {summary['checkpoint']}", f"  samples:    {summary['samples']}"]


def banner(start: dict, notes: list[str]) -> str:
    """The start banner: what trains where, on what (and what preparing a folder dropped), with how many weights,
    for how long, chosen how, and the command that continues it."""
    from ganzoo.data.prepare import describe_report

    frozen = f" (+{start['frozen_parameters'] / 1e6:.2f}M frozen)" if start["frozen_parameters"] else ""
    threads = f", {start['threads']} threads" if start["device"] == "cpu" else ""
    ranks = f", {start['world_size']} processes" if start["world_size"] > 1 else ""
    limits = ([f"{start['steps']:,} step{'s' * (start['steps'] != 1)}"] if start["steps"] else []) + [
        f"{start[key]:g} {label}" for key, label in (("minutes", "minutes"), ("cpu_minutes", "CPU minutes"))
        if start[key]]
    budget = " or ".join(limits) + (", whichever comes first" if len(limits) > 1 else "")
    where = f" from step {start['step']:,}" if start["step"] else ""
    lines = [f"ganzoo: training {start['recipe']} in {start['run_dir']}{where}",
             f"  data:      {start['data']}: {start['images']:,} images at {start['image_size']} px, batches of "
             f"{start['batch_size']}",
             *([f"  prepared:  {'; '.join(describe_report(start['preparation']))}"] if start.get("preparation") else []),
             f"  device:    {start['device']}{threads}{ranks}",
             f"  networks:  generator {start['generator_parameters'] / 1e6:.2f}M parameters, critic "
             f"{start['critic_parameters'] / 1e6:.2f}M{frozen}",
             f"  budget:    {budget}"]
    lines += [f"  chosen:    {note}" for note in notes]
    lines.append(f"  continue:  ganzoo train --resume {shlex.quote(start['run_dir'])} (after Ctrl-C, or to train "
                 "further with --steps N)")
    return "\n".join(lines)


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
