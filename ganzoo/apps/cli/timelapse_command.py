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
    from tqdm import tqdm

    from ganzoo.apps.covers import write_gif
    from ganzoo.data.prepare import BadImage, decode_image

    folder = check_no_link(Path(run) / "samples", "folder")
    grids = sorted((int(match.group(1)), entry) for entry in (folder.iterdir() if folder.is_dir() else ())
                   if (match := re.fullmatch(r"step_([0-9]+)\.png", entry.name)))
    if len(grids) < 2:
        raise GanzooError(f"{run} has {len(grids)} sample grids in samples/; a time-lapse needs at least 2 "
                          "(train longer, or with a smaller schedule.sample_every)")
    kept = [grids[round(i * (len(grids) - 1) / (min(max_frames, len(grids)) - 1))]
            for i in range(min(max_frames, len(grids)))]
    out = writable_file(out or Path(run) / "timelapse.gif")
    for _, path in kept:  # every frame checked before any is decoded
        check_no_link(path)
    check_frames_fit([frame_shape(path, side) for _, path in kept])
    frames = []
    for step, path in tqdm(kept, desc="frames", unit="frame"):
        try:
            image = decode_image(path)
        except BadImage as error:
            raise GanzooError(f"cannot use {path}: {error}") from None
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
        frames.append(np.asarray(image))
    if len({frame.shape for frame in frames}) > 1:
        raise GanzooError(f"{run}'s sample grids differ in size; they are not one run's grids")
    write_gif(out, frames, round(1000 / fps))
    click.echo(f"wrote {out}: {len(frames)} frames, steps {kept[0][0]} to {kept[-1][0]}")


def frame_shape(path: Path, side: int) -> tuple[int, int]:
    """The (height, width) a grid will have as a frame, read from its header alone (refusing a declared size
    past the decoder's limit)."""
    from ganzoo.data.prepare import BadImage, image_size

    try:
        width, height = image_size(path)
    except BadImage as error:
        raise GanzooError(f"cannot use {path}: {error}") from None
    scale = min(1.0, side / max(width, height))
    return max(1, round(height * scale)), max(1, round(width * scale))


def check_frames_fit(shapes: list[tuple[int, int]]) -> None:
    """Refuse, before decoding, a GIF whose frames (held at once, RGB and again quantised) cannot fit in memory."""
    import torch

    from ganzoo.runtime.memory import check_fits

    check_fits(sum(height * width * 4 for height, width in shapes), torch.device("cpu"),
               f"the time-lapse ({len(shapes)} frames)", "lower --side or --max-frames")
