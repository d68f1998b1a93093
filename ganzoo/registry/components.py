"""The component registry: every component the loaded plugins registered, by kind and name, built from
validated options and checked against the interface its kind promises; recipes resolved into components.

A plugin that raises while registering is left out; ``ganzoo plugins`` lists it with its error, and so does any
error that names a component it might have provided.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pluggy
from pydantic import BaseModel

from ganzoo.api import interfaces
from ganzoo.api.errors import GanzooError
from ganzoo.api.hookspecs import KINDS
from ganzoo.api.options import parse_options
from ganzoo.runtime.config import known_keys

LOAD_PLUGINS_ENV = "GANZOO_LOAD_PLUGINS"
DEFAULT_SIZES = range(8, 4097)
"""Image sizes at which no two components of a kind may both claim the default."""
RECIPE_KINDS = tuple(name for name, kind in KINDS.items() if kind.recipe)


@dataclass
class Component:
    """One registered component: its factory, its options model (if it declared one) and its plugin."""

    name: str
    kind: str
    factory: Callable[..., Any]
    plugin: str
    options: type[BaseModel] | None = None
    description: str = ""
    default: bool | Collection[int] = False
    """True: the default of its kind; a collection of image sizes: the default at those sizes only."""

    def is_default_for(self, image_size: int | None) -> bool:
        """Whether this component is its kind's default at ``image_size`` (any default, when None)."""
        if self.default is True or self.default is False:
            return bool(self.default)
        return image_size is None or image_size in self.default

    @property
    def label(self) -> str:
        """``loss 'wgan' (plugin 'wgan')``: how errors name it."""
        return f"{self.kind.replace('_', ' ')} {self.name!r} (plugin {self.plugin!r})"

    def parse_options(self, options: dict[str, Any] | None) -> Any:
        """The validated options model (or the raw dict for a component without one). Fields the model does not
        declare are refused whatever the model's own setting, so a misspelt option is never silently ignored."""
        options = dict(options or {})
        if self.options is None:
            return options
        declared = {name for name, info in self.options.model_fields.items()} | {
            info.alias for info in self.options.model_fields.values() if info.alias}
        unknown = sorted(set(options) - declared)
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(declared), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise GanzooError(f"invalid config: options.{self.name}.{unknown[0]}: {self.label} has no such option"
                              f"{hint} (it has: {', '.join(sorted(declared)) or 'none'})")
        return parse_options(self.options, options, f"options.{self.name}")

    def local_path_options(self) -> list[str]:
        """Its options that name a file on this machine (marked ``json_schema_extra={"local_path": True}``)."""
        if self.options is None:
            return []
        return [name for name, info in self.options.model_fields.items()
                if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("local_path")]

    def option_defaults(self) -> dict[str, Any]:
        if self.options is None:
            return {}
        return {name: info.default for name, info in self.options.model_fields.items() if not info.is_required()}


@dataclass(frozen=True)
class RecipeSettings:
    """Settings a plugin registered for every run whose recipe holds all the components of ``recipe``: its
    paper's (``settings``), and what a CPU or a GPU run changes (``cpu``, ``gpu``)."""

    recipe: str
    settings: dict[str, Any]
    cpu: dict[str, Any]
    gpu: dict[str, Any]
    source: str
    plugin: str
    leaves_noise: dict[int, int] = field(default_factory=dict)
    """Image size -> the generator steps (at the CPU settings) after which its sample grids left the noise phase
    in the plugin author's measurement."""

    @property
    def parts(self) -> frozenset[str]:
        return frozenset(part.strip() for part in self.recipe.split("+"))

    def on(self, device_kind: str) -> dict[str, Any]:
        """The settings for a run on a ``"cpu"`` or a ``"gpu"``."""
        return {**self.settings, **(self.cpu if device_kind == "cpu" else self.gpu)}


@dataclass
class PluginInfo:
    name: str
    version: str | None
    components: list[Component] = field(default_factory=list)
    recipes: list[RecipeSettings] = field(default_factory=list)
    error: str | None = None


@dataclass
class Recipe:
    """A training recipe (``wgan``, ``wgan+logan``, ``fastgan+projected+hinge+diffaug``) resolved to components:
    ``parts`` holds each recipe kind's, in recipe order."""

    text: str
    parts: dict[str, list[Component]]

    @property
    def resolved(self) -> str:
        """The recipe as it ran: the text with the architecture it implied written out (``lsgan`` -> ``dcgan+lsgan``)."""
        parts = [part.strip() for part in self.text.split("+")]
        return "+".join(parts if self.architecture.name in parts else [self.architecture.name, *parts])

    def one(self, kind: str) -> Component | None:
        """The recipe's component of a kind it holds at most one of, or None."""
        return (self.parts.get(kind) or [None])[0]

    @property
    def architecture(self) -> Component:
        return self.one("architecture")

    @property
    def loss(self) -> Component:
        return self.one("loss")

    @property
    def latent_optimiser(self) -> Component | None:
        return self.one("latent_optimiser")

    @property
    def auxiliaries(self) -> list[Component]:
        return self.parts.get("auxiliary", [])

    @property
    def augmentations(self) -> list[Component]:
        return self.parts.get("augmentation", [])

    @property
    def components(self) -> list[Component]:
        return [c for kind in RECIPE_KINDS for c in self.parts.get(kind, [])]


class Registry:
    """Every component the loaded plugins registered, by kind and name."""

    def __init__(self, plugin_manager: pluggy.PluginManager, plugins: dict[str, PluginInfo]):
        self.plugin_manager = plugin_manager
        self.plugins = plugins
        self.components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        for name, info in self.plugins.items():
            plugin = plugin_manager.get_plugin(name)
            if plugin is None:
                continue
            added: list[Component] = []
            try:
                for kind in KINDS.values():
                    for impl in getattr(plugin_manager.hook, kind.hook).get_hookimpls():
                        if impl.plugin is plugin:
                            impl.function(register=self._register_function(kind.name, info, added))
                for impl in plugin_manager.hook.register_recipes.get_hookimpls():
                    if impl.plugin is plugin:
                        impl.function(register=self._recipe_function(info))
            except GanzooError:
                raise
            except Exception as error:  # a plugin that raises while registering is left out, not fatal
                for component in added:
                    del self.components[component.kind][component.name]
                info.components.clear()
                info.recipes.clear()
                info.error = f"registering raised {type(error).__name__}: {first_line(error)}"
        self.clashes = {kind: clash for kind in KINDS if (clash := self.default_clash(kind)) is not None}
        """Kinds whose default two plugins claim, with the sizes where they do: only what needs that default
        stops (``default``), and ``ganzoo plugins`` lists them."""

    def _register_function(self, kind: str, info: PluginInfo, added: list[Component]):
        def register(name: str, factory: Callable[..., Any], *, options: type[BaseModel] | None = None,
                     description: str | None = None, default: bool | Collection[int] = False) -> None:
            if not isinstance(name, str) or not name or "+" in name or name != name.strip():
                raise GanzooError(f"plugin {info.name!r} registered {KINDS[kind].article} named {name!r}; names are "
                                  "non-empty and hold no '+' or surrounding spaces")
            if options is not None and not (isinstance(options, type) and issubclass(options, BaseModel)):
                raise GanzooError(f"plugin {info.name!r} registered {name!r} with options={options!r}, which is "
                                  "not a pydantic model class")
            namespace = RECIPE_KINDS if kind in RECIPE_KINDS else (kind,)
            for other_kind in namespace:
                existing = self.components[other_kind].get(name)
                if existing is not None:
                    raise GanzooError(
                        f"component name {name!r} is registered twice: as {KINDS[existing.kind].article} by plugin "
                        f"{existing.plugin!r} and as {KINDS[kind].article} by plugin {info.name!r}; uninstall one, or "
                        f"choose plugins with {LOAD_PLUGINS_ENV}")
            doc = (getattr(factory, "__doc__", None) or "").strip().splitlines()
            component = Component(name, kind, factory, info.name, options,
                                  description if description is not None else (doc[0] if doc else ""), default)
            self.components[kind][name] = component
            info.components.append(component)
            added.append(component)
        return register

    @staticmethod
    def _recipe_function(info: PluginInfo):
        """``register`` for ``register_recipes``: a malformed registration leaves the plugin out (it raises)."""
        def register(recipe: str, *, settings: dict[str, Any] | None = None, cpu: dict[str, Any] | None = None,
                     gpu: dict[str, Any] | None = None, source: str = "",
                     leaves_noise: dict[int, int] | None = None) -> None:
            if not isinstance(recipe, str) or not all(part.strip() for part in recipe.split("+")):
                raise ValueError(f"plugin {info.name!r} registered settings for the recipe {recipe!r}; a recipe "
                                  "is component names joined with '+'")
            keys = set(known_keys())
            for where, values in (("settings", settings), ("cpu", cpu), ("gpu", gpu)):
                if not isinstance(values or {}, dict):
                    raise ValueError(f"plugin {info.name!r} registered {where}={values!r} for recipe {recipe!r}, "
                                      "not a mapping of dotted config keys to values")
                for key in values or {}:
                    if key not in keys and not (key.startswith("options.") and key.count(".") >= 2):
                        raise ValueError(f"plugin {info.name!r} registered the setting {key!r} for recipe "
                                          f"{recipe!r}, which is not a config key")
            if not all(isinstance(k, int) and isinstance(v, int) and v > 0 for k, v in (leaves_noise or {}).items()):
                raise ValueError(f"plugin {info.name!r} registered leaves_noise={leaves_noise!r} for recipe "
                                 f"{recipe!r}, not image sizes mapped to step counts")
            info.recipes.append(RecipeSettings(recipe, dict(settings or {}), dict(cpu or {}), dict(gpu or {}),
                                               source, info.name, dict(leaves_noise or {})))
        return register

    def recipe_settings(self, recipe: Recipe) -> list[RecipeSettings]:
        """The registered settings that apply to ``recipe``: those naming only components it holds, the most
        general first (each refines the ones before)."""
        names = {component.name for component in recipe.components}
        found = [r for info in self.plugins.values() for r in info.recipes if r.parts <= names]
        return sorted(found, key=lambda r: len(r.parts))

    def leaves_noise(self, recipe: Recipe, image_size: int) -> tuple[int, RecipeSettings] | None:
        """The steps after which ``recipe``'s grids leave the noise phase at ``image_size``, as the most specific
        registration that measured it says, with that registration; None when none did."""
        found = [(r.leaves_noise[image_size], r) for r in self.recipe_settings(recipe) if image_size in r.leaves_noise]
        return found[-1] if found else None

    def add_commands(self, cli) -> None:
        """Let each plugin add click commands to ``cli`` (or to one of its groups); each is listed as the
        plugin's component."""
        for impl in self.plugin_manager.hook.register_commands.get_hookimpls():
            info = self.plugins[self.plugin_manager.get_name(impl.plugin)]

            def register(command, group: str | None = None, _info=info):
                parent = cli
                for part in (group or "").split():
                    parent = parent.commands.get(part)
                    if parent is None or not hasattr(parent, "add_command"):
                        raise GanzooError(f"plugin {_info.name!r} adds a command to group {group!r}, which ganzoo "
                                          "does not have")
                if command.name in parent.commands:
                    raise GanzooError(f"plugin {_info.name!r} adds command {command.name!r}, which "
                                      f"`ganzoo {group or ''}` already has")
                parent.add_command(command)
                path = f"{group} {command.name}" if group else command.name
                _info.components.append(Component(path, "command", command, _info.name))

            impl.function(register=register)

    def default_clash(self, kind: str) -> str | None:
        """The sizes at which several components claim ``kind``'s default, said as a sentence; None when none."""
        defaults = [c for c in self.components[kind].values() if c.default is not False]
        if len(defaults) < 2:
            return None
        sizes = [size for size in DEFAULT_SIZES if sum(c.is_default_for(size) for c in defaults) > 1]
        if not sizes:
            return None
        claimants = [c for c in defaults if c.is_default_for(sizes[0])]
        where = f"{sizes[0]} px" if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]} px"
        return (f"{len(claimants)} plugins claim the default {kind.replace('_', ' ')} at {where}: "
                f"{', '.join(c.label for c in claimants)}")

    def defaults_at(self, kind: str, image_size: int | None) -> list[Component]:
        """The components claiming ``kind``'s default at ``image_size``; two or more is the clash said as one
        line (uninstall one, or choose plugins)."""
        found = [c for c in self.components[kind].values() if c.is_default_for(image_size)]
        if len(found) > 1 and (image_size is not None or all(c.default is True for c in found)):
            at = f" at {image_size} px" if image_size is not None else ""
            raise GanzooError(f"{len(found)} plugins claim the default {kind.replace('_', ' ')}{at}: "
                              f"{', '.join(c.label for c in found)}; uninstall one, or choose plugins with "
                              f"{LOAD_PLUGINS_ENV}")
        return found

    def get(self, kind: str, name: str) -> Component:
        """The component of this kind and name, or an error listing close matches and plugins that failed."""
        found = self.components[kind].get(name)
        if found is None:
            raise GanzooError(self.unknown_name_message(kind.replace("_", " "), name, self.components[kind]))
        return found

    def default(self, kind: str, image_size: int | None = None) -> Component:
        """The component a plugin registered as this kind's default (at ``image_size``, for a kind whose
        defaults depend on the size)."""
        found = self.defaults_at(kind, image_size)
        if found:
            return found[0]
        at = f" at {image_size} px" if image_size is not None else ""
        raise GanzooError(f"no installed plugin provides a default {kind.replace('_', ' ')}{at}; name one "
                          f"(installed: {', '.join(sorted(self.components[kind])) or 'none'})")

    def without_local_paths(self, options: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """``options`` (a checkpoint's, a stranger's) without the options that name files on this machine: a path
        inside a checkpoint is not the user's choice, so it is never followed; the component's default stands."""
        by_name = {name: c for kind in self.components.values() for name, c in kind.items()}
        kept = {}
        for name, values in options.items():
            dropped = set(by_name[name].local_path_options()) if name in by_name else set()
            kept[name] = {key: value for key, value in values.items() if key not in dropped} \
                if isinstance(values, dict) else values
        return kept

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def create(self, kind: str, name: str, options: dict[str, Any] | None = None) -> Any:
        """Build a component from its options, checking that the factory kept its promise (the kind's
        interface); whatever the factory raises is one line naming the plugin."""
        component = self.get(kind, name)
        parsed = component.parse_options(options)
        with blame(component.label, "failed to build"):
            instance = component.factory(parsed)
        interface = getattr(interfaces, KINDS[kind].interface)
        if not isinstance(instance, interface):
            raise GanzooError(f"{component.label} broke its promise: its factory returned a "
                              f"{type(instance).__name__}, not {KINDS[kind].article} (ganzoo.{interface.__name__})")
        return instance

    def default_recipe(self, image_size: int | None = None) -> str:
        """The recipe the installed plugins declare as default at ``image_size``: each recipe kind's default there,
        joined with '+' (the best recipe for that size, as the plugins' authors measured it)."""
        parts = [c.name for kind in RECIPE_KINDS for c in self.defaults_at(kind, image_size)
                 if c.default is True or image_size is not None]
        if not any(self.components[kind].get(name) for kind in ("loss",) for name in parts):
            at = f" at {image_size} px" if image_size is not None else ""
            raise GanzooError(f"no installed plugin provides a default loss{at}, so there is no default recipe there; "
                              f"name one (losses: {', '.join(self.names('loss')) or 'none installed'})")
        return "+".join(parts)

    def recipe(self, text: str | None, image_size: int | None = None) -> Recipe:
        """Resolve a ``+``-joined recipe into one architecture, one loss, an optional latent optimiser and any
        number of auxiliary objectives and augmentations (None: the default recipe at ``image_size``). A recipe
        that names no architecture gets the first architecture registered as a default at any size (``dcgan``
        among the built-ins), whatever the size, so that a recipe text means the same networks at every size
        and in every checkpoint."""
        text = text if text is not None else self.default_recipe(image_size)
        by_name = {name: c for kind in RECIPE_KINDS for name, c in self.components[kind].items()}
        chosen: dict[str, list[Component]] = {kind: [] for kind in RECIPE_KINDS}
        for part in text.split("+"):
            part = part.strip()
            if part not in by_name:
                raise GanzooError(self.unknown_name_message(f"component in recipe {text!r}:", part, by_name))
            if by_name[part] in chosen[by_name[part].kind]:
                raise GanzooError(f"recipe {text!r} names {part!r} twice")
            chosen[by_name[part].kind].append(by_name[part])
        for kind in RECIPE_KINDS:
            if KINDS[kind].single and len(chosen[kind]) > 1:
                names = ", ".join(c.name for c in chosen[kind])
                raise GanzooError(f"recipe {text!r} names more than one {kind.replace('_', ' ')}: {names}")
        if not chosen["loss"]:
            losses = ", ".join(sorted(self.components["loss"])) or "none installed"
            raise GanzooError(f"recipe {text!r} names no adversarial loss; add one of: {losses}")
        if not chosen["architecture"]:
            chosen["architecture"] = [self.default("architecture")]
        return Recipe(text=text, parts=chosen)

    def failures(self) -> list[PluginInfo]:
        return [info for info in self.plugins.values() if info.error]

    def unknown_name_message(self, what: str, name: str, known) -> str:
        message = unknown_name_message(what, name, known)
        failed = "; ".join(f"plugin {info.name!r} failed to load: {info.error}" for info in self.failures())
        return f"{message}; {failed}" if failed else message


def unknown_name_message(what: str, name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(sorted(known)) or "none installed"
    return f"unknown {what} {name!r}{hint} (known: {listing}; see `ganzoo plugins`)"


@contextmanager
def blame(label: str, doing: str):
    """Within it, whatever a plugin's code raises (but a GanzooError, already one line) becomes one line naming
    the component: ``loss 'x' (plugin 'y') failed to build: KeyError: 'z'``."""
    try:
        yield
    except GanzooError:
        raise
    except Exception as error:
        raise GanzooError(f"{label} {doing}: {type(error).__name__}: {first_line(error)}") from None


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


