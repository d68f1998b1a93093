"""``ganzoo generate``: covers from a checkpoint, as a grid and as files."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import click

from ganzoo.api.errors import GanzooError
from ganzoo.apps.cli.base import RegistryChoice
from ganzoo.runtime.files import check_no_link, make_folder, writable_file, write_atomically
from ganzoo.runtime.limits import LAYOUTS, MAX_COVER_SIZE, MAX_SEED, MAX_UPSCALE, RESAMPLING_FILTERS

FILE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".svg": "svg"}
SUFFIXES = {"png": ".png", "jpeg": ".jpg", "svg": ".svg"}


@click.command("generate")
@click.argument("checkpoint")
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
@click.option("--audio", "songs", multiple=True, metavar="SONG",
              help="A song file (WAV, FLAC, OGG, MP3, AIFF) or a folder of them, repeatable: one cover per song, "
                   "named after it, conditioned on what its audio measures (tempo, loudness, key, mode, duration); "
                   "the model's other features from --features, else its training median.")
@click.option("--sweep", metavar="FEATURE",
              help="Write a grid whose columns step FEATURE from its low to its high end, noise fixed per row.")
@click.option("--sweep-steps", type=click.IntRange(min=2, max=32), default=8, show_default=True,
              help="Columns of a continuous --sweep (a categorical one shows every category).")
@click.option("--truncation", type=click.FloatRange(0, 1), default=1.0, show_default=True, metavar="PSI",
              help="Pull latents toward the average latent by PSI (the truncation trick): lower gives more typical, "
                   "less varied covers.")
@click.option("--interpolate", "keyframes", type=click.IntRange(2, 64), metavar="K",
              help="Walk through K random latents and back (slerp): an animated GIF (--out NAME.gif) and/or a "
                   "folder of frames (--out-dir); -n covers per frame (default 16).")
@click.option("--mix", type=click.IntRange(1, 16), metavar="K",
              help="A style-mixing grid of a model with a W space (stylegan2): K column and K row latents; each "
                   "inner cover is its row's w with its column's in the coarse half of the layers.")
@click.option("--frames", type=click.IntRange(1, 240), default=16, show_default=True,
              help="Frames between two latents of --interpolate.")
@click.option("--fps", type=click.IntRange(1, 60), default=12, show_default=True, help="Speed of GIFs.")
@click.option("--upscale", type=click.IntRange(1, MAX_UPSCALE), default=1, show_default=True,
              help="Write the covers this many times larger (resampled: larger files, not more detail).")
@click.option("--upscale-filter", type=click.Choice(RESAMPLING_FILTERS), default=RESAMPLING_FILTERS[0], show_default=True)
@click.option("--size", type=click.IntRange(8, MAX_COVER_SIZE), metavar="PX",
              help="Finish each cover at PX x PX (3000 is what distributors ask for): enlarged by --upscaler, then "
                   "lettered; each cover its own file (--out-dir, or --out for -n 1).")
@click.option("--upscaler", type=RegistryChoice("upscaler"),
              help="What enlarges covers to --size [default: the default one, lanczos].")
@click.option("--title", help="Letter this title on each cover, where the cover is flattest, at a contrast of at least "
                              "4.5:1 (drawn at --size, so it is sharp).")
@click.option("--artist", help="Letter this artist under the title.")
@click.option("--letter-track", is_flag=True, help="Letter --track's title and artist, from its row in --tracks "
                                                   "(track_name and artists columns; --title and --artist win).")
@click.option("--font", help="The lettering's font: a name `ganzoo fonts` lists, or a .ttf/.otf file "
                             "[default: DejaVuSans-Bold].")
@click.option("--layout", type=click.Choice(LAYOUTS), default=LAYOUTS[0], show_default=True,
              help="Where the lettering goes: auto picks the flattest row.")
@click.option("--format", "file_format", type=click.Choice(sorted(set(FILE_FORMATS.values()))),
              help="File format of finished covers: JPEG at the best quality under 10 MB, PNG, or SVG (a vector "
                   "model's: shapes) [default: --out's suffix, else png].")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Grid image to write [default: grid.png; interpolation.gif with --interpolate; cover.png for one "
                   "finished cover].")
@click.option("--out-dir", type=click.Path(file_okay=False),
              help="Also write each image (each frame, with --interpolate) as its own PNG here, with "
                   "conditions.csv for conditional models.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def generate_command(checkpoint, count, features, genre, track, tracks, track_ids, songs, sweep, sweep_steps, truncation,
                     keyframes, mix, frames, fps, upscale, upscale_filter, size, upscaler, title, artist, letter_track,
                     font, layout, file_format, out, out_dir, seed, device):
    """Generate covers from CHECKPOINT's EMA generator (a checkpoint, a run folder, RUN@best or RUN@STEP), at
    the size it was trained at (or --upscale'd), or finished: at --size, with --title and --artist lettered.

    Conditional checkpoints follow --features, --genre and --track; every feature not given is drawn from the
    training rows that match the given genre and lie nearest to the given values (the 32 nearest), so
    covers keep the data's own combinations. With no flags, conditions are those of random training rows.
    """
    check_flags(tracks, track, keyframes, sweep, features, genre, truncation)
    if mix and (keyframes or sweep or songs or count or size or title):
        raise GanzooError("--mix writes one style-mixing grid; it takes no -n, --interpolate, --sweep, --audio, "
                          "--size or --title")
    files, measurer = song_files_measured(songs, count, keyframes, sweep, track)  # before torch is imported

    from ganzoo.engine.sampling import load_sampler
    from ganzoo.registry.loading import get_registry
    from ganzoo.runtime.context import resolve_device

    registry = get_registry()
    if letter_track:
        title, artist = track_names(registry, track, tracks, track_ids, title, artist)
    finishing, file_format, names, out = planned_files(
        count, keyframes, frames, sweep, sweep_steps, files, upscale, size, upscaler, title, artist, font,
        file_format, out, out_dir)
    sampler = load_sampler(checkpoint, resolve_device(device), registry)
    sampler.truncation = truncation
    if mix:
        images = sampler.style_mix(mix, seed)
        return write_covers(images.permute(0, 2, 3, 1).numpy(), None, None, mix + 1, upscale, upscale_filter, out,
                            out_dir)
    if keyframes:
        return write_interpolation(sampler, count or 16, keyframes, frames, fps, seed, upscale, upscale_filter, out,
                                   out_dir)
    request, track_id = condition_request(sampler, registry, features, genre, track, tracks, track_ids)
    if finishing:
        return finish(sampler, registry, request, track_id, measurer, names, seed, size, upscaler,
                      (title, artist, font, layout), file_format, out_dir)
    columns = len(sampler.sweep_columns(sweep, sweep_steps)) if sweep else int(math.ceil(math.sqrt(count or 64)))
    check_request_fits(sampler.image_size, (count or 4) * columns if sweep else (count or 64), columns, upscale)
    if sweep:
        images, rows, columns = sampler.sweep(sweep, sweep_steps, count or 4, seed, request)
    else:
        images, rows = sampler.covers(count or 64, seed, request)
    write_covers(images.permute(0, 2, 3, 1).numpy(), rows, track_id, columns, upscale, upscale_filter, out, out_dir)


def check_flags(tracks, track, keyframes, sweep, features, genre, truncation) -> None:
    """Refuse flags that do not go together, before any work."""
    if tracks and not track:
        raise GanzooError("--tracks is the file to look --track up in; give --track too")
    if keyframes and (sweep or features or genre or track):
        raise GanzooError("--interpolate walks random latents and conditions; it takes no --sweep, --features, "
                          "--genre or --track")
    if truncation != truncation:  # NaN passes every range check
        raise GanzooError("--truncation must be a number from 0 to 1, not nan")


def song_files_measured(songs, count, keyframes, sweep, track):
    """``--audio``'s song files, and a SongMeasurer already measuring them on another core (while the model
    loads), closed with the command; ([], None) without songs."""
    if not songs:
        return [], None
    if keyframes or sweep or track or count:
        raise GanzooError("--audio makes one cover per song; it takes no -n, --interpolate, --sweep or --track")
    from ganzoo.audio import song_files
    from ganzoo.audio.worker import SongMeasurer

    files = song_files(songs)
    return files, click.get_current_context().with_resource(SongMeasurer(files))


def planned_files(count, keyframes, frames, sweep, sweep_steps, files, upscale, size, upscaler, title, artist, font,
                  file_format, out, out_dir):
    """What the command will write, each path checked before any work: (finishing or not, the finished covers'
    format, their paths, the grid or GIF path); ``files`` are the songs, one finished cover each."""
    finishing = (any(flag is not None for flag in (size, upscaler, title, artist, font, file_format))
                 or str(out).lower().endswith(".svg"))
    if files:
        count, out_dir = len(files), out_dir or (None if out and len(files) == 1 else "covers")
        finishing = True
    if finishing:
        file_format, names = finished_files(count, keyframes, sweep, upscale, title, artist, font, file_format, out,
                                            out_dir, [path.stem for path in files] if files else None)
        for name in names:  # refused before any work, not after the first file
            check_no_link(writable_file(name))
        return finishing, file_format, names, out
    out = out or ("interpolation.gif" if keyframes else "grid.png")
    if not keyframes and Path(out).suffix.lower() != ".png":
        raise GanzooError(f"--out {out}: a grid is written as PNG, row by row; name it .png (a single finished "
                          "cover, with --size or --title, can be .jpg)")
    writable_file(out)
    if out_dir:
        make_folder(out_dir)
        names = ([f"frame_{index:05d}.png" for index in range(keyframes * frames)] if keyframes else
                 [f"{index:05d}.png" for index in range((count or 4) * max(sweep_steps, 64) if sweep else (count or 64))]
                 + ["conditions.csv"])
        for name in names:  # refused before any work, not after the first file
            check_no_link(Path(out_dir) / name)
    return finishing, file_format, [], out


def finish(sampler, registry, request, track_id, measurer, paths, seed, size, upscaler, lettering, file_format,
           out_dir):
    """Finished covers (``--size``, ``--title``, ``--audio``): one per song (``measurer``, a SongMeasurer, has
    them), or one per path."""
    if size is not None and size < sampler.image_size:
        raise GanzooError(f"--size {size} is smaller than the model's {sampler.image_size} px covers; covers are "
                          "finished at their size or larger")
    if file_format == "svg":
        sampler.check_draws()  # before any cover is made
    finishing = Finishing(sampler, size or sampler.image_size,
                          registry.create("upscaler", upscaler or registry.default("upscaler").name, None), lettering,
                          file_format)
    if measurer:
        return write_song_covers(finishing, measurer, request, seed, paths)
    return write_finished(finishing, request, seed, track_id, paths, out_dir)


@dataclass(frozen=True)
class Finishing:
    """How finished covers are made: a vector model's drawn at ``size`` (or written as SVG), another's enlarged
    by ``upscaler``; then lettered, and encoded in ``file_format``."""

    sampler: Any
    size: int
    upscaler: Any
    lettering: tuple
    file_format: str

    def covers(self, count: int, seed: int, request) -> tuple[Iterator[tuple[bytes, Any]], Any]:
        """(each cover's file contents and lettering placement, one at a time; the condition rows)."""
        from ganzoo.apps.covers import encoded_cover, finished_cover

        if self.file_format == "svg":
            documents, rows = self.sampler.svgs(self.size, count, seed, request)
            return ((document.encode(), None) for document in documents), rows
        arrays, rows = self.sampler.covers_at(self.size, count, seed, request)
        return ((encoded_cover(image, self.file_format), placement) for image, placement in (
            finished_cover(array, self.size, self.upscaler, *self.lettering) for array in arrays)), rows


def finished_files(count, keyframes, sweep, upscale, title, artist, font, file_format, out, out_dir, stems=None):
    """The format and the paths of finished covers (``--size``, ``--title``; ``stems`` name them, numbers when
    None), after checking the flags and that the title can be set in the font, before any work."""
    if keyframes or sweep:
        raise GanzooError("--size and --title finish single covers; they take no --interpolate or --sweep")
    if upscale != 1:
        raise GanzooError("--size sets a finished cover's size; it takes no --upscale")
    if (artist is not None or font is not None) and title is None:
        raise GanzooError("--artist and --font letter a title; give --title too")
    if title is not None and (file_format == "svg" or (out_dir is None and str(out).lower().endswith(".svg"))):
        raise GanzooError("SVG covers are not lettered: give --title with a PNG or JPEG cover")
    if title is not None:
        from ganzoo.lettering import find_font, font_for
        from ganzoo.lettering.layout import text_lines

        font_for("".join(text_lines(title, artist)), find_font(font))
    if out_dir is None:
        if (count or 1) != 1:
            raise GanzooError(f"{count} finished covers are written one file each: give --out-dir")
        out = out or "cover.png"
        suffix = Path(out).suffix.lower()
        if suffix not in FILE_FORMATS or (file_format and FILE_FORMATS[suffix] != file_format):
            raise GanzooError(f"--out {out}: a finished cover is a .png, .jpg, .jpeg or .svg file"
                              + (f" matching --format {file_format}" if file_format else ""))
        return FILE_FORMATS[suffix], [Path(out)]
    if out:
        raise GanzooError("finished covers go to --out-dir, one file each; --out names the file of a single one")
    make_folder(out_dir)
    file_format = file_format or "png"
    suffix = SUFFIXES[file_format]
    stems = stems or [f"{index:05d}" for index in range(count or 64)]
    twice = sorted({stem for stem in stems if stems.count(stem) > 1})
    if twice:
        raise GanzooError(f"two songs would write {Path(out_dir) / (twice[0] + suffix)}: give them different names")
    return file_format, [Path(out_dir) / f"{stem}{suffix}" for stem in stems]


def write_song_covers(finishing: Finishing, songs, given, seed: int, paths: list[Path]) -> None:
    """One cover per song (``songs``, a SongMeasurer measuring them), conditioned on its measured features,
    finished and written as soon as it is measured; a song that cannot be measured is one line and the others go
    on."""
    from tqdm import tqdm

    from ganzoo.audio.request import check_takes_audio, song_request, wants_descriptors

    sampler = finishing.sampler
    check_takes_audio(sampler)
    failed = 0
    measured = songs.measured(wants_descriptors(sampler))
    for song, path in zip(tqdm(measured, desc="songs", unit="song", total=songs.count, disable=songs.count == 1),
                          paths):
        if isinstance(song, GanzooError):
            failed += 1
            tqdm.write(f"skipped {song}", file=sys.stderr)
            continue
        request, said = song_request(sampler, song, given)
        tqdm.write(f"{song.path.name}: {said}")
        covers, _ = finishing.covers(1, seed, request)
        write_atomically(path, next(covers)[0])
    if failed:
        raise GanzooError(f"{failed} of {songs.count} songs could not be measured (listed above); "
                          f"{songs.count - failed} covers written")
    click.echo(f"wrote {songs.count} cover{'s' * (songs.count != 1)} of {finishing.size} px, one per song, to "
               f"{paths[0].parent if len(paths) > 1 else paths[0]}")


def write_finished(finishing: Finishing, request, seed: int, track_id, paths: list[Path], out_dir) -> None:
    """Each cover finished and written to its path, one at a time, and with ``out_dir`` conditions.csv for a
    conditional model."""
    import numpy as np
    from tqdm import tqdm

    from ganzoo.data.store import write_metadata_csv

    covers, rows = finishing.covers(len(paths), seed, request)
    placement = None
    for (contents, placement), path in zip(covers, tqdm(paths, desc="covers", unit="cover", disable=len(paths) == 1)):
        write_atomically(path, contents)
    if out_dir and rows is not None:
        if track_id is not None:
            rows = {"track": np.array([track_id] * len(paths), dtype=object), **rows}
        write_metadata_csv(Path(out_dir) / "conditions.csv", rows, len(paths))
    where = f"{out_dir}/" if out_dir else str(paths[0])
    click.echo(f"wrote {len(paths)} cover{'s' * (len(paths) != 1)} of {finishing.size} px to {where}")
    if placement and len(paths) == 1:
        title, artist = finishing.lettering[:2]
        band = f", on a band at {placement.band[1]:.0%} opacity" if placement.band[1] else ""
        by = f" by {artist!r}" if artist else ""
        click.echo(f"  lettered {title!r}{by}: {placement.font} at {placement.size} px, colour "
                   f"#{bytes(placement.colour).hex()}, contrast at least {placement.contrast:.1f}:1 against the cover "
                   f"under it{band}")


def condition_request(sampler, registry, features, genre, track, tracks, track_ids):
    """The condition values asked for (``--features``, ``--genre``, and a ``--track``'s, which the others
    override), and the track's id."""
    from ganzoo.apps.tracks import read_tracks, track_request
    from ganzoo.engine.conditioning import parse_request

    request = parse_request(sampler.conditions, features, genre)
    if not track:
        return request, None
    found = track_request(track, read_tracks(tracks, registry, track_ids), sampler.conditions)
    return found.request | request, found.track


def track_names(registry, track, tracks, track_ids, title, artist) -> tuple[str, str | None]:
    """``--letter-track``: the title and artist of ``--track``'s row in ``--tracks`` (those given win)."""
    from ganzoo.apps.tracks import TITLE_COLUMNS, names_of, read_tracks

    if not (track and tracks):
        raise GanzooError("--letter-track letters --track's title from its row in --tracks; give both")
    found = read_tracks(tracks, registry, track_ids).lookup(track)
    if found is None:
        raise GanzooError(f"--letter-track: {track!r} is not a track id, URI or URL")
    named_title, named_artist = names_of(found[1])
    if not (title or named_title):
        raise GanzooError(f"--letter-track: track {found[0]} has no title in {tracks} (a {', '.join(TITLE_COLUMNS)} "
                          "column); give --title")
    return title or named_title, artist or named_artist


def check_request_fits(side: int, total: int, columns: int, upscale: int) -> None:
    """Refuse, before generating, covers and a grid row that cannot fit in memory."""
    import torch

    from ganzoo.apps.covers import grid_band_bytes
    from ganzoo.runtime.memory import check_fits

    check_fits(total * side * side * 3 + grid_band_bytes(side, columns, upscale), torch.device("cpu"),
               f"{total} covers of {side} px written {upscale}x larger", "ask for fewer covers or a smaller --upscale")


def write_covers(covers, rows, track_id, columns: int, upscale: int, upscale_filter: str, out, out_dir) -> None:
    """The grid, and with ``out_dir`` each cover as its own PNG and conditions.csv for a conditional model."""
    import numpy as np

    from ganzoo.apps.covers import png_bytes, write_grid
    from ganzoo.data.store import write_metadata_csv

    write_grid(out, covers, columns, upscale, upscale_filter)
    if out_dir:
        for i, cover in enumerate(covers):
            write_atomically(Path(out_dir) / f"{i:05d}.png", png_bytes(cover, upscale, upscale_filter))
        if rows is not None:
            if track_id is not None:
                rows = {"track": np.array([track_id] * len(covers), dtype=object), **rows}
            write_metadata_csv(Path(out_dir) / "conditions.csv", rows, len(covers))
    click.echo(f"wrote {len(covers)} covers of {covers.shape[1] * upscale} px to {out}"
               + (f" and {out_dir}/" if out_dir else ""))


def write_interpolation(sampler, count: int, keyframes: int, frames: int, fps: int, seed: int, upscale: int,
                        upscale_filter: str, out: str, out_dir: str | None) -> None:
    """``--interpolate``: each frame a grid of ``count`` walking covers, as a GIF (``out`` ending in .gif) and,
    with ``out_dir``, as numbered PNG frames."""
    from tqdm import tqdm

    from ganzoo.apps.covers import grid_array, grid_shape, write_gif

    as_gif = out.lower().endswith(".gif")
    if not as_gif and not out_dir:
        raise GanzooError(f"--interpolate writes a GIF (--out NAME.gif) or frames (--out-dir); {out} is neither")
    columns = int(math.ceil(math.sqrt(count)))
    height, width = grid_shape(count, sampler.image_size * upscale, columns)
    check_request_fits(sampler.image_size, count, columns, upscale)
    if as_gif:
        check_fits_frames(height * width * 3 * keyframes * frames)
    kept = []
    walk = sampler.interpolation(count, keyframes, frames, seed)
    for index, batch in enumerate(tqdm(walk, total=keyframes * frames, desc="frames", unit="frame")):
        grid = grid_array(batch.permute(0, 2, 3, 1).numpy(), columns, upscale, upscale_filter)
        if out_dir:
            from ganzoo.apps.covers import png_bytes

            write_atomically(Path(out_dir) / f"frame_{index:05d}.png", png_bytes(grid))
        if as_gif:
            kept.append(grid)
    if as_gif:
        write_gif(out, kept, round(1000 / fps))
    click.echo(f"wrote {keyframes * frames} frames of {count} covers"
               + (f" to {out}" if as_gif else "") + (f" and {out_dir}/" if as_gif and out_dir else
                                                       f" to {out_dir}/" if out_dir else ""))


def check_fits_frames(total_bytes: int) -> None:
    """Refuse an animation whose frames cannot all be held in memory."""
    import torch

    from ganzoo.runtime.memory import check_fits

    check_fits(total_bytes, torch.device("cpu"), "the animation's frames", "ask for fewer covers or frames")
