"""Finding and loading plugins: modules registered under the ``ganzoo`` entry-point group, ganzoo's own first,
then third-party ones. ``GANZOO_LOAD_PLUGINS=name1,name2`` loads only the named entry points (built-ins
included; an empty value loads none). A plugin that fails to import or implements a hook that does not exist
is left out, said once on stderr, and listed by ``ganzoo plugins`` with its error; the others still work.
"""

from __future__ import annotations

import difflib
import os
import sys
from importlib import metadata as importlib_metadata

import pluggy

from ganzoo.api import hookspecs
from ganzoo.api.errors import GanzooError
from ganzoo.registry.components import LOAD_PLUGINS_ENV, PluginInfo, Registry, first_line

ENTRY_POINT_GROUP = "ganzoo"
HOOK_NAMES = {name for name in dir(hookspecs) if name.startswith("register_")}


def _entry_points() -> list[importlib_metadata.EntryPoint]:
    points = list(importlib_metadata.entry_points(group=ENTRY_POINT_GROUP))
    builtin = [ep for ep in points if ep.dist is not None and ep.dist.name == "ganzoo"]
    third_party = [ep for ep in points if ep not in builtin]
    return builtin + third_party


def misspelt_hooks(manager: pluggy.PluginManager, plugin) -> str | None:
    """Why a registered plugin cannot be used because of its hook names, or None."""
    for caller in manager.get_hookcallers(plugin) or []:
        if caller.spec is None:
            close = difflib.get_close_matches(caller.name, sorted(HOOK_NAMES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"it implements {caller.name!r}, which is not a ganzoo hook{hint}"
    return None


def load_plugins(extra_plugins: dict[str, object] | None = None) -> Registry:
    """Load built-in and installed plugins (plus ``extra_plugins``, name -> module or object) into a Registry."""
    manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
    manager.add_hookspecs(hookspecs)
    allowed = os.environ.get(LOAD_PLUGINS_ENV)
    allowed_names = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    infos: dict[str, PluginInfo] = {}
    entry_points = _entry_points()
    unknown = sorted((allowed_names or set()) - {entry_point.name for entry_point in entry_points})
    if unknown:
        installed = ", ".join(sorted({entry_point.name for entry_point in entry_points})) or "none"
        raise GanzooError(f"{LOAD_PLUGINS_ENV} names {', '.join(map(repr, unknown))}, which no installed plugin is "
                          f"called (installed: {installed})")
    candidates = []
    for entry_point in entry_points:
        if (allowed_names is not None and entry_point.name not in allowed_names) or entry_point.name in infos:
            continue
        info = infos[entry_point.name] = PluginInfo(entry_point.name,
                                                     entry_point.dist.version if entry_point.dist else None)
        try:
            candidates.append((info, entry_point.load()))
        except Exception as error:  # a broken plugin must not take the others down
            info.error = f"importing it raised {type(error).__name__}: {first_line(error)}"
    for name, plugin in (extra_plugins or {}).items():
        info = infos[name] = PluginInfo(name, getattr(plugin, "__version__", None))
        candidates.append((info, plugin))
    for info, plugin in candidates:
        try:
            manager.register(plugin, name=info.name)
        except pluggy.PluginValidationError as error:
            info.error = f"its hooks do not match ganzoo's: {first_line(error)}"
            continue
        problem = misspelt_hooks(manager, plugin)
        if problem:
            manager.unregister(plugin)
            info.error = problem
    return Registry(manager, infos)


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use; plugins that failed to load are said once on stderr."""
    global _registry
    if _registry is None:
        _registry = load_plugins()
        for info in _registry.failures():
            print(f"ganzoo: plugin {info.name!r} failed to load: {info.error}", file=sys.stderr)
    return _registry
