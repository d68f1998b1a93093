"""Plugin discovery and the component registry.

Plugins are modules registered under the ``ganzoo`` entry-point group. ganzoo's own plugins load first, then
third-party ones. ``GANZOO_LOAD_PLUGINS=name1,name2`` loads only the named entry points (built-ins included;
an empty value loads none). A plugin that fails to import is reported on stderr and skipped.
"""

from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from typing import Any, Callable

import pluggy

from ganzoo import hookspecs
from ganzoo.errors import GanzooError

ENTRY_POINT_GROUP = "ganzoo"
LOAD_PLUGINS_ENV = "GANZOO_LOAD_PLUGINS"

KIND_HOOKS = {
    "architecture": "register_architectures",
    "loss": "register_losses",
    "latent_optimiser": "register_latent_optimisers",
    "auxiliary": "register_auxiliaries",
    "condition": "register_conditions",
    "dataset": "register_datasets",
    "feature_extractor": "register_feature_extractors",
}
RECIPE_KINDS = ("architecture", "loss", "latent_optimiser", "auxiliary")
DEFAULT_ARCHITECTURE = "dcgan"


@dataclass
class Component:
    name: str
    kind: str
    factory: Callable[..., Any]
    plugin: str


@dataclass
class PluginInfo:
    name: str
    version: str | None
    components: list[Component] = field(default_factory=list)


@dataclass
class Recipe:
    """A training recipe: ``wgan``, ``wgan+logan``, ``mygan+wgan`` resolved to components."""

    text: str
    architecture: Component
    loss: Component
    latent_optimiser: Component | None
    auxiliaries: list[Component]


class Registry:
    """Every component the loaded plugins registered, by kind and name."""

    def __init__(self, plugin_manager: pluggy.PluginManager, versions: dict[str, str | None]):
        self.plugin_manager = plugin_manager
        self.plugins: dict[str, PluginInfo] = {}
        self.components: dict[str, dict[str, Component]] = {kind: {} for kind in KIND_HOOKS}
        for kind, hook_name in KIND_HOOKS.items():
            for impl in getattr(plugin_manager.hook, hook_name).get_hookimpls():
                plugin_name = plugin_manager.get_name(impl.plugin) or impl.plugin_name
                info = self.plugins.setdefault(plugin_name, PluginInfo(plugin_name, versions.get(plugin_name)))
                impl.function(register=lambda name, factory, _k=kind, _p=info: self._add(_k, name, factory, _p))
        for plugin in plugin_manager.get_plugins():
            name = plugin_manager.get_name(plugin)
            self.plugins.setdefault(name, PluginInfo(name, versions.get(name)))

    def _add(self, kind: str, name: str, factory: Callable[..., Any], plugin: PluginInfo) -> None:
        namespace = RECIPE_KINDS if kind in RECIPE_KINDS else (kind,)
        for other_kind in namespace:
            existing = self.components[other_kind].get(name)
            if existing is not None:
                raise GanzooError(
                    f"component name {name!r} is registered twice: as a {existing.kind} by plugin "
                    f"{existing.plugin!r} and as a {kind} by plugin {plugin.name!r}; uninstall one, or choose "
                    f"plugins with {LOAD_PLUGINS_ENV}")
        component = Component(name, kind, factory, plugin.name)
        self.components[kind][name] = component
        plugin.components.append(component)

    def add_commands(self, cli) -> None:
        """Let each plugin add click commands to ``cli``; each new command is listed as the plugin's component."""
        for impl in self.plugin_manager.hook.register_commands.get_hookimpls():
            plugin_name = self.plugin_manager.get_name(impl.plugin) or impl.plugin_name
            info = self.plugins.setdefault(plugin_name, PluginInfo(plugin_name, None))
            before = command_paths(cli)
            impl.function(cli=cli)
            after = command_paths(cli)
            for path in sorted(set(after) - set(before)):
                info.components.append(Component(path, "command", after[path], plugin_name))

    def get(self, kind: str, name: str) -> Component:
        """The component of this kind and name, or an error listing close matches."""
        found = self.components[kind].get(name)
        if found is None:
            raise GanzooError(unknown_name_message(kind.replace("_", " "), name, self.components[kind]))
        return found

    def recipe(self, text: str) -> Recipe:
        """Resolve a ``+``-joined recipe into one architecture, one loss, an optional latent optimiser and any
        number of auxiliary objectives."""
        by_name = {name: c for kind in RECIPE_KINDS for name, c in self.components[kind].items()}
        chosen: dict[str, list[Component]] = {kind: [] for kind in RECIPE_KINDS}
        for part in text.split("+"):
            part = part.strip()
            if part not in by_name:
                raise GanzooError(unknown_name_message(f"component in recipe {text!r}:", part, by_name))
            chosen[by_name[part].kind].append(by_name[part])
        for kind in ("architecture", "loss", "latent_optimiser"):
            if len(chosen[kind]) > 1:
                names = ", ".join(c.name for c in chosen[kind])
                raise GanzooError(f"recipe {text!r} names more than one {kind.replace('_', ' ')}: {names}")
        if not chosen["loss"]:
            losses = ", ".join(sorted(self.components["loss"])) or "none installed"
            raise GanzooError(f"recipe {text!r} names no adversarial loss; add one of: {losses}")
        architecture = chosen["architecture"][0] if chosen["architecture"] else self.get(
            "architecture", DEFAULT_ARCHITECTURE)
        return Recipe(text=text, architecture=architecture, loss=chosen["loss"][0],
                      latent_optimiser=(chosen["latent_optimiser"] or [None])[0],
                      auxiliaries=chosen["auxiliary"])


def command_paths(group, prefix: str = "") -> dict[str, Any]:
    """Every command under a click group by its full path, e.g. ``data spotify collect``."""
    paths = {}
    for name, command in getattr(group, "commands", {}).items():
        path = f"{prefix}{name}"
        paths[path] = command
        paths.update(command_paths(command, path + " "))
    return paths


def unknown_name_message(what: str, name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(sorted(known)) or "none installed"
    return f"unknown {what} {name!r}{hint} (known: {listing}; see `ganzoo plugins`)"


def _entry_points() -> list[importlib_metadata.EntryPoint]:
    points = list(importlib_metadata.entry_points(group=ENTRY_POINT_GROUP))
    builtin = [ep for ep in points if ep.dist is not None and ep.dist.name == "ganzoo"]
    third_party = [ep for ep in points if ep not in builtin]
    return builtin + third_party


def load_plugins(extra_plugins: dict[str, object] | None = None) -> Registry:
    """Load built-in and installed plugins (plus ``extra_plugins``, name -> module or object) into a Registry."""
    manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
    manager.add_hookspecs(hookspecs)
    allowed = os.environ.get(LOAD_PLUGINS_ENV)
    allowed_names = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    versions: dict[str, str | None] = {}
    entry_points = _entry_points()
    unknown = sorted((allowed_names or set()) - {entry_point.name for entry_point in entry_points})
    if unknown:
        installed = ", ".join(sorted({entry_point.name for entry_point in entry_points})) or "none"
        raise GanzooError(f"{LOAD_PLUGINS_ENV} names {', '.join(map(repr, unknown))}, which no installed plugin is "
                          f"called (installed: {installed})")
    for entry_point in entry_points:
        if allowed_names is not None and entry_point.name not in allowed_names:
            continue
        if manager.has_plugin(entry_point.name):
            continue
        try:
            module = entry_point.load()
            manager.register(module, name=entry_point.name)
        except Exception as error:  # a broken plugin must not take the others down
            print(f"ganzoo: plugin {entry_point.name!r} failed to load: {type(error).__name__}: {error}",
                  file=sys.stderr)
            continue
        versions[entry_point.name] = entry_point.dist.version if entry_point.dist else None
    for name, plugin in (extra_plugins or {}).items():
        manager.register(plugin, name=name)
        versions[name] = getattr(plugin, "__version__", None)
    return Registry(manager, versions)


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None:
        _registry = load_plugins()
    return _registry
