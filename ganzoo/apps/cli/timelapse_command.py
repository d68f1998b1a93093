"""``ganzoo timelapse``: a run's sample grids, in step order, as one animated GIF."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ganzoo.api.errors import GanzooError
from ganzoo.runtime.files import check_no_link, writable_file


@click.command("timelapse")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), help="GIF to write [default: RUN/timelapse.gif].")
@click.option("--fps", type=click.IntRange(1, 60), default=4, show_default=True)
@click.option("--max-frames", type=click.IntRange(2, 1000), default=100, show_default=True,
              help="Grids kept, evenly spread over the run (the first and last always).")
@click.option("--side", type=click.IntRange(16, 4096), default=512, show_default=True,
              help="Largest side of a frame in pixels (larger grids are shrunk).")
def timelapse_command(run, out, fps, max_frames, side):
    """Animate RUN's sample grids (samples/step_N.png: the same latents at every step) as a GIF."""
    import numpy as np
    from PIL import Image

    from ganzoo.apps.covers import write_gif

    folder = check_no_link(Path(run) / "samples", "folder")
    grids = sorted((int(match.group(1)), entry) for entry in (folder.iterdir() if folder.is_dir() else ())
                   if (match := re.fullmatch(r"step_([0-9]+)\.png", entry.name)))
    if len(grids) < 2:
        raise GanzooError(f"{run} has {len(grids)} sample grids in samples/; a time-lapse needs at least 2 "
                          "(train longer, or with a smaller schedule.sample_every)")
    kept = [grids[round(i * (len(grids) - 1) / (min(max_frames, len(grids)) - 1))]
            for i in range(min(max_frames, len(grids)))]
    out = writable_file(out or Path(run) / "timelapse.gif")
    frames = []
    for step, path in kept:
        try:
            with Image.open(check_no_link(path)) as image:
                image = image.convert("RGB")
                image.thumbnail((side, side), Image.Resampling.LANCZOS)
                frames.append(np.asarray(image))
        except OSError as error:
            raise GanzooError(f"cannot read {path}: {error}") from None
    if len({frame.shape for frame in frames}) > 1:
        raise GanzooError(f"{run}'s sample grids differ in size; they are not one run's grids")
    write_gif(out, frames, round(1000 / fps))
    click.echo(f"wrote {out}: {len(frames)} frames, steps {kept[0][0]} to {kept[-1][0]}")
