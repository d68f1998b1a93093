"""The ``ganzoo`` command line: one module per verb, joined under the root group here."""

from __future__ import annotations

import gc

import click

from ganzoo.apps.cli.base import RootGroup
from ganzoo.apps.cli.bench_commands import bench_group
from ganzoo.apps.cli.data_commands import data_group
from ganzoo.apps.cli.fonts_command import fonts_command
from ganzoo.apps.cli.generate_command import generate_command
from ganzoo.apps.cli.plugins_command import plugins_command
from ganzoo.apps.cli.project_command import project_command
from ganzoo.apps.cli.studio_command import studio_command
from ganzoo.apps.cli.timelapse_command import timelapse_command
from ganzoo.apps.cli.train_command import train_command


@click.group(cls=RootGroup, epilog="Plugins can add commands of their own: `ganzoo plugins` lists them.")
@click.version_option(package_name="ganzoo")
def cli():
    """ganzoo: a plugin-based GAN zoo for album cover art."""


for command in (train_command, generate_command, project_command, timelapse_command, studio_command, bench_group,
                plugins_command, fonts_command, data_group):
    cli.add_command(command)


def main():
    try:
        cli(prog_name="ganzoo")
    finally:
        gc.freeze()  # the collector's last passes over what is alive at exit are skipped (0.5 s after torch)
