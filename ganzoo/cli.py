"""The ``ganzoo`` command line."""

from __future__ import annotations

import json
import logging
import math
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

from ganzoo.data import DEFAULT_MAX_HASH_DISTANCE
from ganzoo.errors import GanzooError
from ganzoo.files import make_folder, writable_file, write_atomically
from ganzoo.images import MAX_UPSCALE, RESAMPLING
from ganzoo.limits import MAX_SEED

MAX_MESSAGE = 1000


class UserError(click.ClickException):
    """A GanzooError as the user sees it: one line of at most MAX_MESSAGE characters, exit code 2."""

    exit_code = 2

    def __init__(self, message: str):
        text = " ".join(message.split())
        if len(text) > MAX_MESSAGE:
            text = f"{text[:MAX_MESSAGE]}... ({len(text) - MAX_MESSAGE} more characters)"
        super().__init__(text)


class GanzooGroup(click.Group):
    """Shows a GanzooError as one line on stderr with exit code 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GanzooError as error:
            raise UserError(str(error)) from None


class RootGroup(GanzooGroup):
    """The ``ganzoo`` group. Plugins are loaded (and torch with them) only when a command needs them, so
    ``ganzoo --help`` and ``ganzoo --version`` answer at once."""

    plugin_commands_added = False

    def add_plugin_commands(self) -> None:
        if not self.plugin_commands_added:
            self.plugin_commands_added = True
            from ganzoo.plugins import get_registry
            get_registry().add_commands(self)

    def get_command(self, ctx, name):
        if name not in self.commands:
            self.add_plugin_commands()
        return super().get_command(ctx, name)


class PluginCommandsGroup(GanzooGroup):
    """A group plugins add subcommands to (``data``): listing or resolving them loads the plugins."""

    def list_commands(self, ctx):
        cli.add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        if name not in self.commands:
            cli.add_plugin_commands()
        return super().get_command(ctx, name)


class RegistryChoice(click.ParamType):
    """A component name of one kind, checked against (and listed from) the plugin registry."""

    name = "name"

    def __init__(self, kind: str):
        self.kind = kind

    def get_metavar(self, param, ctx=None):
        from ganzoo.plugins import get_registry
        return "[" + "|".join(get_registry().names(self.kind)) + "]"

    def convert(self, value, param, ctx):
        from ganzoo.plugins import get_registry
        return get_registry().get(self.kind, value).name


@click.group(cls=RootGroup, epilog="Plugins can add commands of their own: `ganzoo plugins` lists them.")
@click.version_option(package_name="ganzoo")
def cli():
    """ganzoo: a plugin-based GAN zoo for album cover art."""


@cli.command()
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
def train(recipe, config_file, overrides, steps, minutes, cpu_minutes, out, resume, init_from, device, quiet, nproc):
    """Train RECIPE, components joined with '+': dcgan+ns+diffaug, wgan+logan, r3gan+rpgan+ada (without one,
    the config file's recipe or ganzoo's default, the best of the CPU leaderboard in benchmarks/RESULTS.md).

    Writes config.json, metrics.jsonl, samples.png (and samples/ per step) and checkpoint.pt to the run
    folder. Ctrl-C saves a checkpoint after the current step; --resume continues exactly where it stopped.
    Under torchrun (or --nproc N) batch_size is per process and rank 0 writes the run folder.
    """
    from ganzoo import context

    if nproc > 1 and not context.launched_by_torchrun():
        sys.exit(subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  f"--nproc_per_node={nproc}", "-m", "ganzoo", *without_nproc(sys.argv[1:])]))
    from ganzoo.checkpoint import checkpoint_config, load_checkpoint
    from ganzoo.config import build_config
    from ganzoo.train import train as run_training

    state = None
    if resume:
        if init_from:
            raise GanzooError("--init-from starts a new run; --resume continues one: give one of them")
        if config_file or overrides:
            raise GanzooError("--resume continues a run with its own config; only --steps, --minutes, "
                              "--cpu-minutes and --device may change")
        state = load_checkpoint(resume)
        config = checkpoint_config(state, Path(resume) / "checkpoint.pt")
        if recipe and recipe != config.recipe:
            raise GanzooError(f"{resume} trains {config.recipe!r}, not {recipe!r}")
        run_dir = Path(resume)
        updates = {"steps": steps or config.steps, "minutes": minutes, "cpu_minutes": cpu_minutes,
                   "device": device or config.device}
        config = config.model_copy(update=updates)
    else:
        config = build_config({}, config_file, overrides)
        updates = {k: v for k, v in {"recipe": recipe, "steps": steps, "minutes": minutes, "cpu_minutes": cpu_minutes,
                                     "device": device, "init_from": init_from}.items() if v}
        if (minutes or cpu_minutes) and not steps:
            updates["steps"] = None
        config = build_config(config.model_dump() | updates)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = Path(out) if out else Path("runs") / f"{config.recipe.replace('+', '_')}-{stamp}"
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


@cli.command()
@click.argument("checkpoint", type=click.Path(exists=True))
@click.option("-n", "count", type=click.IntRange(min=1, max=4096),
              help="Covers to generate (default 64), or rows of a --sweep grid (default 4).")
@click.option("--features", metavar="NAME=VALUE,...",
              help="Ask for condition values, e.g. danceability=0.8,energy=0.3 (audio features in their units).")
@click.option("--genre", metavar="NAME", help="Ask for a genre (the checkpoint's categorical condition).")
@click.option("--track", metavar="ID_OR_URI_OR_URL",
              help="Take the conditions of this track from --tracks (its features, and its genre if the "
                   "checkpoint has one); --features and --genre override single values.")
@click.option("--tracks", type=click.Path(exists=True, dir_okay=False),
              help="A features CSV (track_id or uri column) to look --track up in.")
@click.option("--track-ids", type=RegistryChoice("track_ids"),
              help="The track id plugin that reads --track and --tracks [default: the default one, spotify].")
@click.option("--sweep", metavar="FEATURE",
              help="Write a grid whose columns step FEATURE from its low to its high end, noise fixed per row.")
@click.option("--sweep-steps", type=click.IntRange(min=2, max=32), default=8, show_default=True,
              help="Columns of a continuous --sweep (a categorical one shows every category).")
@click.option("--upscale", type=click.IntRange(1, MAX_UPSCALE), default=1, show_default=True,
              help="Write the covers this many times larger (resampled: larger files, not more detail).")
@click.option("--upscale-filter", type=click.Choice(sorted(RESAMPLING)), default="lanczos", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default="grid.png", show_default=True,
              help="Grid image to write.")
@click.option("--out-dir", type=click.Path(file_okay=False),
              help="Also write each image as its own PNG here, with conditions.csv for conditional models.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def generate(checkpoint, count, features, genre, track, tracks, track_ids, sweep, sweep_steps, upscale, upscale_filter,
             out, out_dir, seed, device):
    """Generate covers from CHECKPOINT's EMA generator, at the size it was trained at (or --upscale'd).

    Conditional checkpoints follow --features, --genre and --track; every feature not given is drawn from the
    training rows that match the given genre and lie nearest to the given values (the 32 nearest), so
    covers keep the data's own combinations. With no flags, conditions are those of random training rows.
    """
    import numpy as np
    import torch

    from ganzoo.conditions import parse_request
    from ganzoo.context import resolve_device
    from ganzoo.data.store import write_metadata_csv
    from ganzoo.images import grid_band_bytes, png_bytes, write_grid
    from ganzoo.memory import check_fits
    from ganzoo.plugins import get_registry
    from ganzoo.sampling import load_sampler
    from ganzoo.tracks import read_tracks, track_request

    if tracks and not track:
        raise GanzooError("--tracks is the file to look --track up in; give --track too")
    writable_file(out)
    if out_dir:
        make_folder(out_dir)
    registry = get_registry()
    table = read_tracks(tracks, registry, track_ids) if track else None
    sampler = load_sampler(checkpoint, resolve_device(device), registry)
    request = parse_request(sampler.conditions, features, genre)
    track_id = None
    if track:
        track_id, from_track = track_request(track, table, sampler.conditions)
        request = from_track | request
    columns = len(sampler.sweep_columns(sweep, sweep_steps)) if sweep else int(math.ceil(math.sqrt(count or 64)))
    total = (count or 4) * columns if sweep else (count or 64)
    side = sampler.image_size
    check_fits(total * side * side * 3 + grid_band_bytes(side, columns, upscale), torch.device("cpu"),
               f"{total} covers of {side} px written {upscale}x larger", "ask for fewer covers or a smaller --upscale")
    if sweep:
        images, rows, columns = sampler.sweep(sweep, sweep_steps, count or 4, seed, request)
    else:
        images, rows = sampler.covers(count or 64, seed, request)
    covers = images.permute(0, 2, 3, 1).numpy()
    write_grid(out, covers, columns, upscale, upscale_filter)
    if out_dir:
        for i, cover in enumerate(covers):
            write_atomically(Path(out_dir) / f"{i:05d}.png", png_bytes(cover, upscale, upscale_filter))
        if rows is not None:
            if track_id is not None:
                rows = {"track": np.array([track_id] * len(images), dtype=object), **rows}
            write_metadata_csv(Path(out_dir) / "conditions.csv", rows, len(images))
    click.echo(f"wrote {len(images)} covers of {side * upscale} px to {out}" + (f" and {out_dir}/" if out_dir else ""))


class DefaultCommandGroup(GanzooGroup):
    """A group whose first argument, when it names no subcommand, goes to the default subcommand; its help
    shows the default subcommand's options too."""

    default_command = "run"

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx, formatter):
        super().format_help(ctx, formatter)
        default = self.commands[self.default_command]
        records = [record for param in default.get_params(ctx)
                   if isinstance(param, click.Option) and (record := param.get_help_record(ctx))]
        with formatter.section(f"Options of `{ctx.command_path} [{self.default_command}] SOURCE`"):
            formatter.write_dl(records)


@cli.command()
@click.argument("checkpoint", type=click.Path(exists=True))
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback exposes the page to the network.")
@click.option("--tracks", type=click.Path(exists=True, dir_okay=False),
              help="A features CSV (track_id or uri column) for looking tracks up by id.")
@click.option("--track-ids", type=RegistryChoice("track_ids"),
              help="The track id plugin that reads --tracks [default: the default one, spotify].")
@click.option("--device", default="auto", show_default=True)
def studio(checkpoint, port, host, tracks, track_ids, device):
    """Serve a page with one slider per condition of CHECKPOINT (a checkpoint or run folder) and a grid of
    covers that follows them."""
    from werkzeug.serving import make_server

    from ganzoo.context import resolve_device
    from ganzoo.plugins import get_registry
    from ganzoo.sampling import load_sampler
    from ganzoo.studio import Studio, create_app
    from ganzoo.tracks import read_tracks

    registry = get_registry()
    sampler = load_sampler(checkpoint, resolve_device(device), registry)
    app = create_app(Studio(sampler, read_tracks(tracks, registry, track_ids)))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    try:
        listener = socket.create_server((host, port))
    except OSError as error:
        raise GanzooError(f"cannot listen on {host}:{port}: {error.strerror}; choose another --port") from None
    bound_port = listener.getsockname()[1]
    server = make_server(host, bound_port, app, threaded=True, fd=listener.fileno())
    click.echo(f"ganzoo studio: http://{host}:{bound_port}/  (Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")


@cli.group(cls=DefaultCommandGroup)
def bench():
    """Score samples: `ganzoo bench SOURCE --metric fid ...`, or rank runs: `ganzoo bench compare RUN...`."""


def component_options(assignments: tuple[str, ...]) -> dict[str, dict]:
    """``options.NAME.field=value`` assignments (``--set``) as a dict of options by component name."""
    from ganzoo.config import apply_override

    data: dict = {}
    for assignment in assignments:
        if not assignment.startswith("options."):
            raise GanzooError(f"--set here takes component options, options.NAME.field=value, not {assignment!r}")
        apply_override(data, assignment)
    options = data.get("options", {})
    bad = [name for name, value in options.items() if not isinstance(value, dict)]
    if bad:
        raise GanzooError(f"--set options.{bad[0]} needs a field: options.{bad[0]}.FIELD=VALUE")
    return options


@bench.command("run")
@click.argument("source")
@click.option("--metric", "metrics", multiple=True, default=("fid",), show_default=True,
              type=RegistryChoice("metric"), help="A metric plugin; repeat for several.")
@click.option("--ref", help="Real images: a dataset name, a prepared store or an image folder [default: the "
                            "default dataset].")
@click.option("--generated", "-n", type=click.IntRange(min=1), default=5000, show_default=True,
              help="Images to generate (or to take from SOURCE).")
@click.option("--real", type=click.IntRange(min=1), default=5000, show_default=True,
              help="Reference images (all of them if the reference has fewer).")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--size", type=click.IntRange(8, 4096),
              help="Image size for a source that is not a checkpoint [default: the source's or reference's store].")
@click.option("--extractor", type=RegistryChoice("feature_extractor"),
              help="Feature extractor plugin [default: the default extractor].")
@click.option("--extractor-weights", type=click.Path(exists=True, dir_okay=False),
              help="A weights file for the extractor (sets options.EXTRACTOR.weights; inception: torch-fidelity's "
                   "weights-inception-2015-12-05-6726825d.pth).")
@click.option("--set", "overrides", multiple=True, metavar="options.NAME.FIELD=VALUE",
              help="Options of a metric, the extractor or a dataset, e.g. --set options.kid.subset_size=500.")
@click.option("--device", default="auto", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default="bench.json", show_default=True,
              help="JSON file for the scores and their protocol.")
def bench_run(source, metrics, ref, generated, real, seed, size, extractor, extractor_weights, overrides, device,
              out):
    """Score SOURCE (a checkpoint or run folder, a store, an image folder or a dataset name)."""
    from ganzoo.bench import run_bench
    from ganzoo.context import resolve_device
    from ganzoo.plugins import get_registry

    writable_file(out)
    options = component_options(overrides)
    if extractor_weights:
        name = extractor or get_registry().default("feature_extractor").name
        options.setdefault(name, {})["weights"] = extractor_weights
    result = run_bench(source, tuple(dict.fromkeys(metrics)), ref, generated, real, seed, extractor, options,
                       resolve_device(device), image_size=size)
    scores, protocol = result["scores"], result["protocol"]
    for warning in protocol["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    click.echo("| metric | value |\n| --- | --- |")
    for name, value in scores.items():
        if isinstance(value, dict):
            for key, fit in value.items():
                shown = ", ".join(f"{k} {v:.3f}" for k, v in fit.items()) if isinstance(fit, dict) else f"{fit:.4f}"
                click.echo(f"| {name} {key} | {shown} |")
        else:
            click.echo(f"| {name} | {value:.4f} |")
    if "generated_images" in protocol:
        extractor = protocol["extractor"]
        click.echo(f"\n{protocol['generated_images']} generated vs {protocol.get('real_images', '-')} real "
                   f"images at {protocol['image_size']} px; extractor {extractor['extractor']} "
                   f"(weights {extractor.get('weights_sha256', '?')[:12]}); seed {protocol['seed']}; "
                   f"{protocol['device']}")
    Path(out).write_text(json.dumps(result, indent=1))
    click.echo(f"wrote {out}")


@bench.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--metric", default="fid", show_default=True, type=RegistryChoice("metric"),
              help="The metric the runs evaluated during training (eval_metrics), ranked by its primary score.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a plot of the metric against steps (PNG).")
@click.option("--allow-mixed-protocols", is_flag=True, help="Rank runs measured under different protocols.")
def bench_compare(runs, metric, plot, allow_mixed_protocols):
    """Rank training runs (trained with --set eval_every=N) by their best score; markdown on stdout."""
    from ganzoo.bench import leaderboard, primary_score, read_run_scores
    from ganzoo.plugins import get_registry

    key, lower_is_better = primary_score(metric, get_registry())
    scores = [read_run_scores(run, metric) for run in runs]
    click.echo(leaderboard(scores, metric, allow_mixed_protocols, lower_is_better))
    if plot:
        writable_file(plot)
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise GanzooError("--plot needs matplotlib: pip install -e '.[plot]'") from None
        figure, axes = plt.subplots(figsize=(7, 4))
        for run in scores:
            axes.plot(run.steps, run.values, marker="o", label=f"{Path(run.run).name} ({run.recipe})")
        axes.set(xlabel="generator step", ylabel=key.split("/", 1)[1], title=f"{metric} against steps")
        axes.legend()
        figure.tight_layout()
        figure.savefig(plot, dpi=120)
        click.echo(f"wrote {plot}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json):
    """List plugins, their versions and what each registers (with its options' defaults); plugins that failed to
    load are listed with the reason."""
    from ganzoo.plugins import get_registry

    registry = get_registry()
    cli.add_plugin_commands()
    listing = [{"name": info.name, "version": info.version, "error": info.error,
                "components": [{"kind": c.kind, "name": c.name, "default": c.default, "description": c.description,
                                "options": {k: jsonable(v) for k, v in c.option_defaults().items()}}
                               for c in info.components]}
               for info in registry.plugins.values()]
    if as_json:
        click.echo(json.dumps(listing, indent=2))
    else:
        for plugin in listing:
            click.echo(f"{plugin['name']} {plugin['version'] or ''}".rstrip())
            if plugin["error"]:
                click.echo(f"  failed to load: {plugin['error']}")
            for component in plugin["components"]:
                default = " (default)" if component["default"] else ""
                about = f" - {component['description']}" if component["description"] else ""
                click.echo(f"  {component['kind'].replace('_', ' ')}: {component['name']}{default}{about}")
                if component["options"]:
                    click.echo("    options: " + ", ".join(f"{k}={v}" for k, v in component["options"].items()))
    for info in registry.failures():
        click.echo(f"ganzoo: plugin {info.name!r} failed to load: {info.error}", err=True)


def jsonable(value):
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else repr(value)


@cli.group(cls=PluginCommandsGroup)
def data():
    """Prepare and inspect datasets."""


@data.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--size", type=click.IntRange(8, 4096), default=64, show_default=True, help="Image side in pixels.")
@click.option("--metadata", type=click.Path(exists=True, dir_okay=False),
              help="CSV with a 'file' column (name or relative path) joined onto the images "
                   "[default: FOLDER/metadata.csv, if there is one].")
@click.option("--out", type=click.Path(file_okay=False), help="Store folder [default: a cache folder].")
@click.option("--workers", type=click.IntRange(min=1), help="Decoding processes [default: all cores].")
@click.option("--max-hash-distance", type=click.IntRange(0, 16), default=DEFAULT_MAX_HASH_DISTANCE,
              show_default=True,
              help="Drop a cover whose perceptual hash is within this many bits of an earlier one's.")
@click.option("--keep-duplicates", is_flag=True, help="Keep duplicate covers (exact and near).")
@click.option("--where", multiple=True, metavar="'COLUMN OP VALUE'",
              help="Keep only rows of the metadata for which this holds, e.g. --where 'popularity >= 60' (repeat: "
                   "all must hold; OP is ==, !=, <, <=, >, >=). FOLDER may be a store: its rows go to a new --out.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def prepare(folder, size, metadata, out, workers, max_hash_distance, keep_duplicates, where, quiet):
    """Clean FOLDER's images into a packed store: RGB, centre-cropped, resized; bad files and duplicates
    skipped, with counts. A Spotify collection folder packs with its covers' audio features."""
    from ganzoo.data.prepare import format_counts, prepare as prepare_store

    store, report = prepare_store(folder, size, metadata, out, workers, progress=not quiet,
                                  max_hash_distance=None if keep_duplicates else max_hash_distance, where=where)
    click.echo(f"store: {store}{' (cached)' if report['cached'] else ''}")
    click.echo(f"  kept {report['kept']} of {report['files']} files")
    if report["dropped"]:
        click.echo(f"  dropped: {format_counts(report['dropped'])}")
    if report["fixed"]:
        click.echo(f"  fixed: {format_counts(report['fixed'])}")
    if report.get("metadata"):
        click.echo(f"  metadata {report['metadata']}: {report['files_without_metadata_row']} files without a "
                   f"row, {report['metadata_rows_without_image']} rows without an image")
    if report.get("where"):
        chosen = report["where"]
        click.echo(f"  where {' and '.join(chosen['expressions'])}: {chosen['matching']} of {chosen['rows']} rows")


@data.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option("--shards", type=click.IntRange(min=1), required=True, help="How many shards (a multiple of the "
              "number of ranks: each rank reads the shards k with k % world_size == rank).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Sharded store folder.")
def shard(store, shards, out):
    """Split a packed STORE into shards for training on many machines (row i goes to shard i % SHARDS)."""
    from ganzoo.data.store import shard_store

    path = shard_store(store, shards, out)
    click.echo(f"sharded store: {path} ({shards} shards)")


@data.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option("--held-out", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1,
              show_default=True, help="Share of the images held out.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Seed of the random split.")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Folder for the two stores, OUT/train and OUT/held-out.")
@click.option("--quiet", is_flag=True, help="Print only the stores' paths.")
def split(store, held_out, seed, out, quiet):
    """Split a packed STORE at random into a training store and a held-out store, so that FID can be measured
    against real covers the generator never saw."""
    from ganzoo.data.store import split_store

    train_store, held_store = split_store(store, held_out, seed, out)
    if quiet:
        click.echo(f"{train_store}\n{held_store}")
        return
    counts = json.loads((Path(out) / "split.json").read_text())
    click.echo(f"train:    {train_store} ({counts['train']} images)\nheld out: {held_store} "
               f"({counts['held-out']} images)")


@data.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False))
def inspect(store):
    """Summarise a packed store: size, count, fingerprint, metadata columns, cleaning report."""
    import numpy as np

    from ganzoo.data.prepare import format_counts
    from ganzoo.data.store import load_store, read_manifest

    manifest = read_manifest(Path(store))
    data = load_store(store)
    click.echo(f"{data.name}: {len(data.images)} images of {manifest['image_size']} px, "
               f"fingerprint {data.fingerprint}")
    click.echo(f"  source: {manifest['source'] or '?'}")
    if "shards" in manifest:
        click.echo(f"  {len(manifest['shards'])} shards of {manifest['count']} images in all")
    report = manifest["report"]
    if report["dropped"]:
        click.echo(f"  dropped when prepared: {format_counts(report['dropped'])}")
    for column, values in data.metadata.items():
        if values.dtype == np.float64 and len(values):
            click.echo(f"  {column}: numeric, {np.nanmin(values):g} to {np.nanmax(values):g}, "
                       f"{int(np.isnan(values).sum())} missing")
        else:
            click.echo(f"  {column}: text, {len(set(values.tolist()))} distinct")


def main():
    cli(prog_name="ganzoo")
