"""The Spotify dataset: ``ganzoo data spotify collect | attach-features | import``.

A collection is a folder: ``collection.sqlite`` (tracks, albums, artists, audio features, cover downloads and
the progress of every query), ``covers/`` and ``metadata.csv`` (one row per cover with the mean features of its
tracks), which ``ganzoo data prepare FOLDER`` reads to pack a training store with conditions. Every command is
resumable: interrupted at any point, the same command continues where it stopped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ganzoo import GanzooError, TrackIds, hookimpl
from ganzoo_spotify.catalog import DATABASE_FILE, Catalog
from ganzoo_spotify.collect import Collector
from ganzoo_spotify.tables import attach_features, import_table
from ganzoo_spotify.web import DEFAULT_API_URL, DEFAULT_TOKEN_URL, RetryPolicy, SpotifyAPI, spotify_id

INTERRUPTED = 130


@click.group()
def spotify():
    """Collect album covers and audio features from Spotify, or from Kaggle-style CSV files."""


def parse_ids(values: tuple[str, ...], kind: str) -> list[str]:
    ids = []
    for value in values:
        parsed = spotify_id(value, kind)
        if parsed is None:
            raise GanzooError(f"not a Spotify {kind} id, spotify:{kind}: URI or open.spotify.com URL: {value!r}")
        ids.append(parsed)
    return ids


def run_resumably(catalog: Catalog, work):
    """Run ``work``; on Ctrl-C say what is kept and exit 130 (every finished unit is already committed)."""
    try:
        return work()
    except KeyboardInterrupt:
        counts = catalog.counts()
        click.echo(f"\ninterrupted: {counts['tracks']} tracks and {counts['covers_done']} covers are stored in "
                   f"{catalog.folder}; run the same command again to continue", err=True)
        sys.exit(INTERRUPTED)
    finally:
        catalog.close()


def print_report(report: dict, folder) -> None:
    click.echo(f"{folder}: {report['tracks']} tracks, {report['albums']} albums, {report['artists']} artists; "
               f"audio features for {report['tracks_with_features']} tracks")
    click.echo(f"covers: {report['covers_done']} downloaded, {report['covers_failed']} failed, "
               f"{report['covers_pending']} pending; metadata.csv has {report['metadata_rows']} rows")
    if report.get("requests"):
        timing = f" in {report['seconds']} s" if "seconds" in report else ""
        click.echo(f"{report['requests']} requests ({report.get('retried', 0)} retried, "
                   f"{report.get('rate_limited', 0)} after a 429){timing}")


collection_options = [
    click.option("--concurrency", type=click.IntRange(1, 64), default=8, show_default=True,
                 help="Covers downloaded at once."),
    click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
                 help="Seconds to wait for a response before retrying."),
    click.option("--quiet", is_flag=True, help="No progress bars."),
]


def with_collection_options(command):
    for option in reversed(collection_options):
        command = option(command)
    return command


@spotify.command()
@click.option("--playlist", multiple=True, metavar="ID", help="A playlist id, URI or URL (repeatable).")
@click.option("--search", multiple=True, metavar="QUERY", help="A track search, e.g. 'genre:jazz year:1960-1969'.")
@click.option("--artist", multiple=True, metavar="ID", help="An artist id, URI or URL: every album's tracks.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Collection folder.")
@click.option("--image-size", type=click.Choice(["640", "300", "64"]), default="640", show_default=True,
              help="Cover width to download (the smallest offered at least this wide).")
@with_collection_options
@click.option("--no-features", is_flag=True, help="Skip the audio-features endpoint.")
@click.option("--api-url", envvar="GANZOO_SPOTIFY_API_URL", default=DEFAULT_API_URL, show_default=True,
              help="Web API base URL (env GANZOO_SPOTIFY_API_URL).")
@click.option("--token-url", envvar="GANZOO_SPOTIFY_TOKEN_URL", default=DEFAULT_TOKEN_URL, show_default=True,
              help="Token endpoint (env GANZOO_SPOTIFY_TOKEN_URL).")
def collect(playlist, search, artist, out, image_size, concurrency, timeout, quiet, no_features, api_url,
            token_url):
    """Walk playlists, searches and artists' albums into a collection folder and download the covers.

    Credentials come from SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET. Run again with more queries to grow
    the collection, or with none to finish an interrupted run.
    """
    queries = ([("playlist", i) for i in parse_ids(playlist, "playlist")]
               + [("artist", i) for i in parse_ids(artist, "artist")]
               + [("search", q.strip()) for q in search if q.strip()])
    if not queries and not (Path(out) / DATABASE_FILE).is_file():
        raise GanzooError(f"name at least one --playlist, --search or --artist ({out} holds no collection to "
                          "continue)")
    policy = RetryPolicy()
    api = SpotifyAPI(policy, api_url=api_url, token_url=token_url, timeout_s=timeout)
    catalog = Catalog(out)
    for kind, value in queries:
        catalog.add_query(kind, value)
    collector = Collector(catalog, api, policy, image_size=int(image_size), concurrency=concurrency,
                          timeout_s=timeout, progress=not quiet, echo=lambda line: click.echo(line, err=True))
    report = run_resumably(catalog, lambda: collector.run(features=not no_features))
    print_report(report, out)


@spotify.command("attach-features")
@click.argument("table", type=click.Path(exists=True, dir_okay=False))
@click.option("--collection", required=True, type=click.Path(exists=True, file_okay=False),
              help="Collection folder.")
def attach_features_command(table, collection):
    """Attach audio features from TABLE (a CSV with track_id, id, track_uri or uri, and feature columns).

    Ids may be bare or spotify:track: URIs. Values already stored are replaced only where TABLE has one.
    """
    catalog = Catalog(collection)

    def work():
        report = attach_features(catalog, table)
        catalog.export_metadata()
        return report
    report = run_resumably(catalog, work)
    click.echo(f"{table}: {report['rows']} rows; {report['matched_tracks']} of {report['tracks_in_collection']} "
               f"tracks matched ({report['unmatched_rows']} rows not in the collection, "
               f"{report['rows_without_track_id']} without a track id, {report['invalid_values']} values out of "
               f"range); {report['tracks_without_features']} tracks still without features")


@spotify.command("import")
@click.argument("table", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Collection folder.")
@with_collection_options
def import_command(table, out, concurrency, timeout, quiet):
    """Import a Kaggle-style CSV without the API: track ids, names, features and an image URL or path column.

    Image paths are relative to TABLE's folder; image URLs are downloaded like collected covers.
    """
    catalog = Catalog(out)
    policy = RetryPolicy()
    collector = Collector(catalog, None, policy, concurrency=concurrency,
                          timeout_s=timeout, progress=not quiet, echo=lambda line: click.echo(line, err=True))

    def work():
        imported = import_table(catalog, table)
        collector.download_covers()
        return {**imported, **catalog.counts(), "metadata_rows": catalog.export_metadata(),
                **dict(policy.stats)}
    report = run_resumably(catalog, work)
    click.echo(f"{table}: {report['rows']} rows ({report['rows_without_track_id']} without a track id, "
               f"{report['rows_without_image']} without an image, {report['image_files_unusable']} unusable "
               f"image files)")
    print_report(report, out)


class SpotifyTrackIds(TrackIds):
    """Spotify track ids in a features file's ``track_id``, ``id``, ``track_uri`` or ``uri`` column, and in
    pasted bare ids, ``spotify:track:`` URIs and open.spotify.com URLs."""

    columns = ("track_id", "id", "track_uri", "uri")

    def parse(self, text: str) -> str | None:
        return spotify_id(text, "track")


@hookimpl
def register_track_ids(register):
    register("spotify", lambda options: SpotifyTrackIds(), default=True,
             description="Spotify track ids, spotify:track: URIs and open.spotify.com URLs")


@hookimpl
def register_commands(register):
    register(spotify, group="data")
