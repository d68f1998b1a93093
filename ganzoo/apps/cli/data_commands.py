"""``ganzoo data``: preparing, sharding, splitting and inspecting stores (plugins add more: ``data spotify``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ganzoo.apps.cli.base import PluginCommandsGroup
from ganzoo.data import DEFAULT_MAX_HASH_DISTANCE
from ganzoo.runtime.limits import MAX_SEED


@click.group("data", cls=PluginCommandsGroup)
def data_group():
    """Prepare and inspect datasets."""


@data_group.command()
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
@click.option("--audio", "songs", type=click.Path(file_okay=False),
              help="A folder of the covers' songs, paired by name (cover1.jpg with cover1.flac): their audio "
                   "descriptors join the store, for the audio-descriptors condition (needs the audio extra).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def prepare(folder, size, metadata, out, workers, max_hash_distance, keep_duplicates, where, songs, quiet):
    """Clean FOLDER's images into a packed store: RGB, centre-cropped, resized; bad files and duplicates
    skipped, with counts. A Spotify collection folder packs with its covers' audio features."""
    from ganzoo.data.prepare import ExtraColumns, describe_report, prepare as prepare_store

    extra = None
    if songs:
        from functools import partial

        from ganzoo.audio.pairing import add_descriptors, song_index, songs_key

        index = song_index(songs)
        extra = ExtraColumns("audio", songs_key(index), partial(add_descriptors, index))
    store, report = prepare_store(folder, size, metadata, out, workers, progress=not quiet,
                                  max_hash_distance=None if keep_duplicates else max_hash_distance, where=where,
                                  extra=extra)
    click.echo(f"store: {store}{' (cached)' if report['cached'] else ''}")
    lines = describe_report(report)
    if "audio" in report:
        from ganzoo.audio.pairing import describe_pairing

        lines += describe_pairing(report["audio"])
    for line in lines:
        click.echo(f"  {line}")


@data_group.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option("--shards", type=click.IntRange(min=1), required=True, help="How many shards (a multiple of the "
              "number of ranks: each rank reads the shards k with k % world_size == rank).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Sharded store folder.")
def shard(store, shards, out):
    """Split a packed STORE into shards for training on many machines (row i goes to shard i % SHARDS)."""
    from ganzoo.data.store import shard_store

    path = shard_store(store, shards, out)
    click.echo(f"sharded store: {path} ({shards} shards)")


@data_group.command()
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


@data_group.command()
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


@data_group.command("preview")
@click.argument("source")
@click.option("--recipe", help="The recipe whose augmentations to show [default: the one `ganzoo train SOURCE` "
                                "would choose].")
@click.option("--size", type=click.IntRange(8, 4096), help="Image side [default: as `ganzoo train SOURCE` would "
                                                            "choose].")
@click.option("--set", "overrides", multiple=True, metavar="options.NAME.FIELD=VALUE",
              help="An augmentation's option, e.g. --set options.diffaug.policy=color,translation.")
@click.option("-n", "count", type=click.IntRange(1, 64), default=8, show_default=True, help="Images (rows).")
@click.option("--variants", type=click.IntRange(1, 16), default=7, show_default=True,
              help="Augmented versions of each image (columns after the image itself).")
@click.option("--mirror", is_flag=True, help="Draw from the data mirrored, as data.mirror trains on it.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default="augmentations.png", show_default=True)
def preview(source, recipe, size, overrides, count, variants, mirror, seed, out):
    """Show what the critic sees of SOURCE (a folder, store or dataset) under a recipe's augmentations: each row
    one image as training reads it, then augmented versions of it."""
    from ganzoo.apps.augment_preview import augmentation_grid
    from ganzoo.apps.cli.base import component_options
    from ganzoo.runtime.files import writable_file

    writable_file(out)
    recipe, size, grid, columns = augmentation_grid(source, recipe, size, component_options(overrides), count,
                                                    variants, mirror, seed)
    from ganzoo.apps.covers import write_grid

    write_grid(out, grid, columns)
    click.echo(f"wrote {out}: {count} images of {source} at {size} px, then {variants} augmentations each by "
               f"{recipe}")
