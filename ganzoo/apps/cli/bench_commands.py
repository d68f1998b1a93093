"""``ganzoo bench``: scoring a checkpoint, store, folder or dataset, and ranking training runs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ganzoo.api.errors import GanzooError
from ganzoo.apps.cli.base import DefaultCommandGroup, RegistryChoice
from ganzoo.runtime.files import writable_file, write_atomically
from ganzoo.runtime.limits import MAX_SEED


@click.group("bench", cls=DefaultCommandGroup)
def bench_group():
    """Score samples: `ganzoo bench SOURCE --metric fid ...`, or rank runs: `ganzoo bench compare RUN...`."""


def component_options(assignments: tuple[str, ...]) -> dict[str, dict]:
    """``options.NAME.field=value`` assignments (``--set``) as a dict of options by component name."""
    from ganzoo.runtime.config import apply_override

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


@bench_group.command("run")
@click.argument("source")
@click.option("--metric", "metrics", multiple=True, type=RegistryChoice("metric"),
              help="A metric plugin; repeat for several [default: the default metric].")
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
    from ganzoo.apps.source_scoring import run_bench
    from ganzoo.registry.loading import get_registry
    from ganzoo.runtime.context import resolve_device

    writable_file(out)
    options = component_options(overrides)
    if extractor_weights:
        name = extractor or get_registry().default("feature_extractor").name
        options.setdefault(name, {})["weights"] = extractor_weights
    result = run_bench(source, tuple(dict.fromkeys(metrics)), ref, generated, real, seed, extractor, options,
                       resolve_device(device), image_size=size)
    for warning in result["protocol"]["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    click.echo(scores_table(result["scores"], result["protocol"]))
    write_atomically(out, json.dumps(result, indent=1))
    click.echo(f"wrote {out}")


def scores_table(scores: dict, protocol: dict) -> str:
    """The scores as a markdown table, and one line of the protocol they were measured under."""
    lines = ["| metric | value |", "| --- | --- |"]
    for name, value in scores.items():
        if isinstance(value, dict):
            for key, fit in value.items():
                shown = ", ".join(f"{k} {v:.3f}" for k, v in fit.items()) if isinstance(fit, dict) else f"{fit:.4f}"
                lines.append(f"| {name} {key} | {shown} |")
        else:
            lines.append(f"| {name} | {value:.4f} |")
    if "generated_images" in protocol:
        extractor = protocol.get("extractor") or {"extractor": "none"}
        lines.append(f"\n{protocol['generated_images']} generated vs {protocol.get('real_images', '-')} real "
                     f"images at {protocol['image_size']} px; extractor {extractor['extractor']} "
                     f"(weights {extractor.get('weights_sha256', '?')[:12]}); seed {protocol['seed']}; "
                     f"{protocol['device']}")
    return "\n".join(lines)


@bench_group.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--metric", type=RegistryChoice("metric"),
              help="The metric the runs evaluated during training (evaluation.metrics), ranked by its primary score "
                   "[default: the default metric].")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a plot of the metric against steps (PNG).")
@click.option("--allow-mixed-protocols", is_flag=True, help="Rank runs measured under different protocols.")
def bench_compare(runs, metric, plot, allow_mixed_protocols):
    """Rank training runs (trained with --set evaluation.every=N) by their best score; markdown on stdout."""
    from ganzoo.evaluation.runs import primary_score, rank_runs, read_run_scores
    from ganzoo.registry.loading import get_registry

    registry = get_registry()
    metric = metric or registry.default("metric").name
    key, lower_is_better = primary_score(metric, registry)
    scores = [read_run_scores(run, metric, key) for run in runs]
    click.echo(rank_runs(scores, metric, allow_mixed_protocols, lower_is_better))
    if plot:
        plot_runs(scores, metric, key, plot)


def plot_runs(scores, metric: str, key: str, path: str) -> None:
    """The runs' scores against steps, one line per run, as a PNG (matplotlib)."""
    writable_file(path)
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
    figure.savefig(path, dpi=120)
    click.echo(f"wrote {path}")
