"""``ganzoo plugins``: what each installed plugin registers, and the plugins that failed to load."""

from __future__ import annotations

import json

import click


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_command(as_json):
    """List plugins, their versions and what each registers (with its options' defaults, and the settings it gives
    recipes); plugins that failed to load are listed with the reason."""
    from ganzoo.data.sources import describe_sizes
    from ganzoo.registry.loading import get_registry

    registry = get_registry()
    click.get_current_context().find_root().command.add_plugin_commands()
    listing = [{"name": info.name, "version": info.version, "error": info.error,
                "components": [{"kind": c.kind, "name": c.name, "default": c.default if isinstance(c.default, bool) else f"at {describe_sizes(c.default)} px",
                                "description": c.description,
                                "options": {k: jsonable(v) for k, v in c.option_defaults().items()}}
                               for c in info.components],
                "recipes": [{"recipe": r.recipe, "source": r.source, "settings": r.settings, "cpu": r.cpu,
                             "gpu": r.gpu} for r in info.recipes]}
               for info in registry.plugins.values()]
    for clash in registry.clashes.values():
        click.echo(f"clash: {clash}; a run that needs that default stops until one is uninstalled (or name the "
                   "component)", err=True)
    if as_json:
        click.echo(json.dumps(listing, indent=2))
    else:
        for plugin in listing:
            click.echo(f"{plugin['name']} {plugin['version'] or ''}".rstrip())
            if plugin["error"]:
                click.echo(f"  failed to load: {plugin['error']}")
            for component in plugin["components"]:
                default = {True: " (default)", False: ""}.get(component["default"], f" (default {component['default']})")
                about = f" - {component['description']}" if component["description"] else ""
                click.echo(f"  {component['kind'].replace('_', ' ')}: {component['name']}{default}{about}")
                if component["options"]:
                    click.echo("    options: " + ", ".join(f"{k}={v}" for k, v in component["options"].items()))
            for recipe in plugin["recipes"]:
                click.echo(f"  recipe settings: {recipe['recipe']}" + (f" - {recipe['source']}" if recipe["source"] else ""))
                for where in ("settings", "cpu", "gpu"):
                    if recipe[where]:
                        label = {"settings": "everywhere", "cpu": "on a CPU", "gpu": "on a GPU"}[where]
                        click.echo(f"    {label}: " + ", ".join(f"{k}={v}" for k, v in recipe[where].items()))


def jsonable(value):
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else repr(value)
