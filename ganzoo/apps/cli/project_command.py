"""``ganzoo project``: the closest cover a checkpoint can make to a real one, and variations around it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ganzoo.api.errors import GanzooError
from ganzoo.runtime.files import make_folder, write_atomically
from ganzoo.runtime.limits import MAX_SEED


@click.command("project")
@click.argument("checkpoint")
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.option("--steps", type=click.IntRange(0, 10000), default=200, show_default=True,
              help="Optimisation steps on the latent.")
@click.option("--space", type=click.Choice(["z", "w", "w+"]),
              help="What is optimised: the latent z, or for a generator with a W space (stylegan2) its w, or one w "
                   "per layer (w+) [default: w where there is a W space, else z].")
@click.option("--variations", "count", type=click.IntRange(0, 256), default=15, show_default=True,
              help="Covers around the projection.")
@click.option("--spread", type=click.FloatRange(0, 10), default=0.5, show_default=True,
              help="Variations: the standard deviation of the noise added to z; in W, the share of a random w's "
                   "offset from the average w added to the projection's.")
@click.option("--out-dir", type=click.Path(file_okay=False), default="projection", show_default=True)
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def project_command(checkpoint, image, steps, space, count, spread, out_dir, seed, device):
    """Find the latent (and, for a conditional model, the training row) whose cover from CHECKPOINT is closest to
    IMAGE, by pixels and, when the critic is the projected one, its frozen EfficientNet features; in z, or in W
    as stylegan2-ada's projector searches (--space). Writes
    target.png, reconstruction.png, variations.png (target, reconstruction, then the variations) and
    projection.json (distances before and after the search, the latent, the condition row)."""
    import torch

    from ganzoo.apps.covers import png_bytes, write_grid
    from ganzoo.apps.projection import project, record, variations
    from ganzoo.apps.toolkit import trained_critic
    from ganzoo.data.prepare import BadImage, clean_image
    from ganzoo.engine.sampling import load_sampler
    from ganzoo.runtime.context import resolve_device

    out = make_folder(out_dir)
    device = resolve_device(device)
    sampler = load_sampler(checkpoint, device)
    critic = trained_critic(checkpoint, device)
    try:
        target, _ = clean_image(image, sampler.image_size)
    except BadImage as error:
        raise GanzooError(f"cannot use {image}: {error}") from None
    target = torch.from_numpy(target.copy()).permute(2, 0, 1)
    found = project(sampler, critic, target, steps, seed, space or ("w" if sampler.mapped else "z"))
    covers = torch.cat([target[None], found.cover[None], variations(sampler, found, count, spread, seed)])
    as_rows = covers.permute(0, 2, 3, 1).numpy()
    write_atomically(out / "target.png", png_bytes(as_rows[0]))
    write_atomically(out / "reconstruction.png", png_bytes(as_rows[1]))
    write_grid(out / "variations.png", as_rows, int(len(as_rows) ** 0.5 + 0.999))
    write_atomically(out / "projection.json", json.dumps(record(found, steps, seed), indent=1))
    start, end = found.start, found.end
    click.echo(f"in {found.space}: distance {start['total']:.4f} -> {end['total']:.4f} (pixel {start['pixel']:.4f} -> "
               f"{end['pixel']:.4f}" + (f", features {start['features']:.4f} -> {end['features']:.4f}"
                                         if "features" in end else "") + f"); wrote {Path(out_dir)}/")
