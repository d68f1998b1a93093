"""``ganzoo studio``: the cover studio for a checkpoint, served on this machine."""

from __future__ import annotations

import logging
import socket

import click

from ganzoo.api.errors import GanzooError
from ganzoo.apps.cli.base import RegistryChoice


@click.command("studio")
@click.argument("checkpoint")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback exposes the page to the network.")
@click.option("--tracks", type=click.Path(exists=True, dir_okay=False),
              help="A features CSV (track_id or uri column) for looking tracks up by id.")
@click.option("--track-ids", type=RegistryChoice("track_ids"),
              help="The track id plugin that reads --tracks [default: the default one, spotify].")
@click.option("--device", default="auto", show_default=True)
def studio_command(checkpoint, port, host, tracks, track_ids, device):
    """Serve a page with one slider per condition of CHECKPOINT (a checkpoint, run folder, RUN@best or RUN@STEP)
    and a grid of covers that follows them."""
    from werkzeug.serving import make_server

    from ganzoo.runtime.context import resolve_device
    from ganzoo.registry.loading import get_registry
    from ganzoo.engine.sampling import load_sampler
    from ganzoo.apps.studio import Studio, create_app
    from ganzoo.apps.tracks import read_tracks

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
