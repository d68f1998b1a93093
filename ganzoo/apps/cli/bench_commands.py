"""``ganzoo bench``: scoring a checkpoint, store, folder or dataset, and ranking training runs."""

from __future__ import annotations

from pathlib import Path

import click

from ganzoo.api.errors import GanzooError
from ganzoo.apps.cli.base import DefaultCommandGroup, RegistryChoice, component_options
from ganzoo.runtime.files import writable_file, write_atomically
from ganzoo.runtime.limits import MAX_SEED
from ganzoo.runtime.untrusted import strict_json


BENCH_KINDS = ("metric", "feature_extractor", "dataset")
"""The components whose options bench takes."""


@click.group("bench", cls=DefaultCommandGroup)
def bench_group():
    """Score samples: `ganzoo bench SOURCE --metric fid ...`, or rank runs: `ganzoo bench compare RUN...`."""


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
@click.option("--resize-filter", metavar="NAME",
              help="How the extractor resizes images to its input (sets options.EXTRACTOR.resize; inception: "
                   "bilinear (default), bicubic, pil-bicubic); recorded in the protocol.")
@click.option("--set", "overrides", multiple=True, metavar="options.NAME.FIELD=VALUE",
              help="Options of a metric, the extractor or a dataset, e.g. --set options.kid.subset_size=500.")
@click.option("--device", default="auto", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default="bench.json", show_default=True,
              help="JSON file for the scores and their protocol.")
def bench_run(source, metrics, ref, generated, real, seed, size, extractor, extractor_weights, resize_filter,
              overrides, device, out):
    """Score SOURCE (a checkpoint, run folder, RUN@best or RUN@STEP, a store, an image folder or a dataset name)
    against --ref (which may be a statistics file from `ganzoo bench stats`)."""
    from ganzoo.apps.source_scoring import run_bench
    from ganzoo.runtime.context import resolve_device

    writable_file(out)
    options = extractor_options(component_options(overrides, BENCH_KINDS), extractor, extractor_weights,
                                resize_filter)
    result = run_bench(source, tuple(dict.fromkeys(metrics)), ref, generated, real, seed, extractor, options,
                       resolve_device(device), image_size=size)
    for warning in result["protocol"]["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    click.echo(scores_table(result["scores"], result["protocol"]))
    write_atomically(out, strict_json(result, indent=1))
    click.echo(f"wrote {out}")


def extractor_options(options: dict[str, dict], extractor: str | None, weights: str | None,
                      resize_filter: str | None) -> dict[str, dict]:
    """``options`` with ``--extractor-weights`` and ``--resize-filter`` set as the extractor's options."""
    if weights or resize_filter:
        from ganzoo.registry.loading import get_registry

        name = extractor or get_registry().default("feature_extractor").name
        chosen = options.setdefault(name, {})
        chosen |= ({"weights": weights} if weights else {}) | ({"resize": resize_filter} if resize_filter else {})
    return options


@bench_group.command("stats")
@click.argument("ref", required=False)
@click.option("--real", type=click.IntRange(min=2), default=5000, show_default=True,
              help="Reference images (all of them if the reference has fewer).")
@click.option("--size", type=click.IntRange(8, 4096), help="Image size [default: the reference store's].")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--extractor", type=RegistryChoice("feature_extractor"),
              help="Feature extractor plugin [default: the default extractor].")
@click.option("--extractor-weights", type=click.Path(exists=True, dir_okay=False))
@click.option("--resize-filter", metavar="NAME", help="As for `bench run`.")
@click.option("--set", "overrides", multiple=True, metavar="options.NAME.FIELD=VALUE")
@click.option("--device", default="auto", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Statistics file to write (.npz).")
def bench_stats(ref, real, size, seed, extractor, extractor_weights, resize_filter, overrides, device, out):
    """Export REF's features (a dataset, store or folder; the default dataset without one) to a file that
    `ganzoo bench SOURCE --ref FILE.npz` scores against without extracting them again (FID, KID, PR)."""
    from ganzoo.apps.source_scoring import export_statistics, stored_size
    from ganzoo.runtime.context import resolve_device

    if not out.endswith(".npz"):
        raise GanzooError(f"--out names a .npz file, not {out}")
    size = size or (ref and stored_size(ref))
    if not size:
        raise GanzooError("say the image size with --size (the reference is not a prepared store)")
    writable_file(out)
    options = extractor_options(component_options(overrides, BENCH_KINDS), extractor, extractor_weights,
                                resize_filter)
    about = export_statistics(ref, real, seed, size, extractor, options, resolve_device(device), out)
    click.echo(f"wrote {out}: features of {about['real_images']} images of {about['reference']} at "
               f"{about['image_size']} px ({about['extractor']['extractor']}, resize: "
               f"{about['extractor'].get('resize', '-')})")


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
    if protocol.get("metric_seconds"):
        lines.append("\ncomputed in " + ", ".join(f"{name} {seconds:.1f} s"
                                                  for name, seconds in protocol["metric_seconds"].items()))
    if "generated_images" in protocol:
        extractor = protocol.get("extractor") or {"extractor": "none"}
        lines.append(f"\n{protocol['generated_images']} generated vs {protocol.get('real_images', '-')} real "
                     f"images at {protocol['image_size']} px; extractor {extractor['extractor']} "
                     f"(weights {extractor.get('weights_sha256', '?')[:12]}); seed {protocol['seed']}; "
                     f"{protocol['device']}")
    return "\n".join(lines)


@bench_group.command("compare")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--metric", type=RegistryChoice("metric"),
              help="The metric to rank by, by its primary score [default: the default metric].")
@click.option("--score", is_flag=True,
              help="Score the snapshots (and last checkpoint) of runs that recorded no scores, against --ref.")
@click.option("--ref", help="With --score: real images to score against [default: each run's training data].")
@click.option("--generated", "-n", type=click.IntRange(min=1), default=1000, show_default=True,
              help="With --score: images generated per snapshot.")
@click.option("--real", type=click.IntRange(min=1), default=1000, show_default=True,
              help="With --score: reference images.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--extractor", type=RegistryChoice("feature_extractor"),
              help="With --score: the feature extractor plugin [default: the default extractor].")
@click.option("--device", default="auto", show_default=True)
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a plot of the metric against steps (PNG).")
@click.option("--allow-mixed-protocols", is_flag=True, help="Rank sources measured under different protocols.")
def bench_compare(sources, metric, score, ref, generated, real, seed, extractor, device, plot,
                  allow_mixed_protocols):
    """Rank runs and bench results in one markdown table on stdout, each by its best score, after checking that
    all were measured under one protocol. SOURCES are run folders (their evaluations in metrics.jsonl, or with
    --score their snapshots scored now) and JSON files written by `ganzoo bench --out`."""
    from ganzoo.evaluation.runs import primary_score, rank_runs, read_bench_scores
    from ganzoo.registry.loading import get_registry

    registry = get_registry()
    metric = metric or registry.default("metric").name
    key, lower_is_better = primary_score(metric, registry)
    scores = [run_scores(source, metric, key, score, ref, generated, real, seed, extractor, device)
              if Path(source).is_dir() else read_bench_scores(source, metric, key) for source in sources]
    click.echo(rank_runs(scores, metric, allow_mixed_protocols, lower_is_better))
    if plot:
        plot_runs(scores, metric, key, plot)


def run_scores(run: str, metric: str, key: str, score: bool, ref, generated: int, real: int, seed: int, extractor,
               device):
    """A run's recorded scores, or with ``score``, those of its snapshots scored now when it recorded none."""
    from ganzoo.evaluation.runs import RunScores, read_run_scores

    try:
        return read_run_scores(run, metric, key)
    except GanzooError:
        if not score:
            raise
    from ganzoo.apps.source_scoring import score_snapshots
    from ganzoo.runtime.context import resolve_device

    steps, values, protocol = score_snapshots(run, metric, ref, generated, real, seed, {}, resolve_device(device),
                                              extractor)
    return RunScores(run=run, recipe=protocol.get("recipe", "-"), steps=steps, values=values, protocol=protocol)


def plot_runs(scores, metric: str, key: str, path: str) -> None:
    """The runs' scores against steps, one line per run, as a PNG (matplotlib)."""
    import matplotlib

    writable_file(path)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for run in scores:
        axes.plot(run.steps, run.values, marker="o", label=f"{Path(run.run).name} ({run.recipe})")
    axes.set(xlabel="generator step", ylabel=key.split("/", 1)[1], title=f"{metric} against steps")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    click.echo(f"wrote {path}")
