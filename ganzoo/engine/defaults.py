"""What ``ganzoo train`` fills in that the user did not set: first what a fine-tuning source fixes (its
architecture, image size, width, latent size and conditions), then what the data suggests (the image size, a
batch no larger than the data, the best recipe for that size). Each choice comes back as a line for the start
banner, so that nothing is chosen silently."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ganzoo.api.errors import GanzooError
from ganzoo.data.prepare import prepare
from ganzoo.data.sources import DataSource, Survey, resolve_source, survey
from ganzoo.data.store import is_store, read_manifest
from ganzoo.engine.plan import stored_config
from ganzoo.registry.components import Component, Recipe, Registry
from ganzoo.runtime.checkpoint import load_checkpoint
from ganzoo.runtime.config import TrainConfig, given, set_value

LARGEST_DEFAULT_SIZE = {"cpu": 64, "gpu": 256}
"""Larger images train at this size unless ``data.image_size`` says otherwise: on a CPU, the largest size whose
default recipe the CPU leaderboard trained past the noise phase in minutes (a 256 px step takes minutes on two
cores); on a GPU, cover size (a 512 px run takes days)."""
SMALLEST_SIZE = 8
INHERITED = ("data.image_size", "model.width", "model.latent_dim", "model.conditions")
"""What a run started with ``--init-from`` takes from its source unless set (with the source's architecture)."""


def fill_in(settings: dict[str, Any], registry: Registry) -> tuple[dict[str, Any], list[str]]:
    """``settings`` (as gathered: only what the user set) completed from ``model.init_from`` and the data, and one
    line per choice made."""
    settings, notes = dict(settings), []
    init_from = settings.get("model", {}).get("init_from")
    if init_from:
        notes += inherit(settings, stored_config(load_checkpoint(init_from), registry, init_from), registry)
    data = settings.get("data", {})
    source = resolve_source(data.get("name"), registry, settings.get("options"))
    found = survey(source)
    if not given(settings, "data.image_size"):
        notes += choose_image_size(settings, found, registry)
    size = settings.get("data", {}).get("image_size", default_setting("data.image_size"))
    if not given(settings, "recipe"):
        settings["recipe"] = registry.default_recipe(size)
        notes.append(f"recipe {settings['recipe']} (the default at {size} px: `ganzoo plugins`)")
    batch_given = given(settings, "schedule.batch_size")
    notes += apply_recipe_settings(settings, registry.recipe(settings["recipe"], size), registry)
    batch_size = settings.get("schedule", {}).get("batch_size", default_setting("schedule.batch_size"))
    if found.count is not None and found.count < batch_size and not batch_given:
        count = counted(source, settings["data"].get("image_size", default_setting("data.image_size")))
        if count < batch_size:
            set_value(settings, "schedule.batch_size", count)
            notes.append(f"batch size {count} (the data holds {count} images)")
    return settings, notes


def device_kind(settings: dict[str, Any]) -> str:
    """``"cpu"`` or ``"gpu"``: the kind of device a run with these settings trains on."""
    import torch

    device = settings.get("system", {}).get("device", default_setting("system.device"))
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return "cpu" if str(device).startswith("cpu") else "gpu"


def apply_recipe_settings(settings: dict[str, Any], recipe: Recipe, registry: Registry) -> list[str]:
    """The settings plugins registered for ``recipe`` on this run's kind of device (``register_recipes``), set
    where ``settings`` sets nothing; a line per registration that set something."""
    kind = device_kind(settings)
    chosen: dict[str, tuple[Any, Any]] = {}
    for registration in registry.recipe_settings(recipe):
        chosen.update({key: (value, registration) for key, value in registration.on(kind).items()
                       if not given(settings, key)})
    notes = []
    for registration in registry.recipe_settings(recipe):
        mine = [f"{key}={value}" for key, (value, source) in chosen.items() if source is registration]
        if mine:
            where = f" ({registration.source})" if registration.source else ""
            notes.append(f"{registration.recipe}'s settings{where}: " + ", ".join(mine))
    for key, (value, _) in chosen.items():
        set_value(settings, key, value)
    return notes


def counted(source: DataSource, image_size: int) -> int:
    """How many images a store or folder gives at ``image_size``: a folder is prepared (and cached, as training
    would), since unreadable files and duplicates drop out."""
    path = Path(source.name)
    if not is_store(path):
        path, _ = prepare(path, size=image_size)
    return read_manifest(path)["count"]


def inherit(settings: dict[str, Any], source: TrainConfig, registry: Registry) -> list[str]:
    """Take the source run's architecture (and critic), image size, width, latent size and conditions where
    ``settings`` does not set them."""
    taken = []
    theirs = registry.recipe(source.recipe, source.data.image_size)
    networks = [c for c in (theirs.architecture, theirs.one("critic")) if c is not None]
    recipe = settings.get("recipe")
    if recipe is None:
        settings["recipe"] = source.recipe
        taken.append(f"recipe {source.recipe}")
        taken += inherit_options(settings, source, [c.name for c in networks])
    else:
        parts = recipe.split("+")
        named = {kind for part in parts for kind in ("architecture", "critic") if part in registry.components[kind]}
        added = [c.name for c in networks if c.kind not in named]
        if added:
            settings["recipe"] = "+".join(added + parts)
            taken.append(f"{' and '.join(added)} in the recipe")
            taken += inherit_options(settings, source, added)
    for key in INHERITED:
        if not given(settings, key):
            group, name = key.split(".")
            value = getattr(getattr(source, group), name)
            set_value(settings, key, value)
            taken.append(f"{key}={value}")
            if key == "model.conditions":
                taken += inherit_options(settings, source, value)
    return [f"from --init-from: {', '.join(taken)}"] if taken else []


def inherit_options(settings: dict[str, Any], source: TrainConfig, names: list[str]) -> list[str]:
    """The source's options of the components ``names`` (networks taken from it, its conditions), where not set."""
    taken = []
    for name in names:
        if name in source.options and not given(settings, f"options.{name}"):
            settings.setdefault("options", {})[name] = source.options[name]
            taken.append(f"options.{name}")
    return taken


def choose_image_size(settings: dict[str, Any], found: Survey, registry: Registry) -> list[str]:
    """The largest size at or below the data's (at most ``LARGEST_DEFAULT_SIZE``) that the recipe (or, with none
    given, the default recipe for that size) builds and the data gives; the smallest buildable size above it
    when there is none."""
    kind = device_kind(settings)
    largest = LARGEST_DEFAULT_SIZE[kind]
    target = min(found.image_size or default_setting("data.image_size"), largest)
    candidates = [*range(target, SMALLEST_SIZE - 1, -1), *range(target + 1, 4097)]
    recipe = settings.get("recipe")
    if recipe:
        registry.recipe(recipe)  # an unknown name is said as such, not as a size that does not suit
    for size in candidates:
        if found.sizes is not None and size not in found.sizes:
            continue
        try:
            parts = registry.recipe(recipe, size).components if recipe else default_networks(registry, size)
        except GanzooError:
            continue
        if all(size in sizes_of(component, registry) for component in parts):
            break
    else:
        raise GanzooError(f"no image size suits both the data and recipe {recipe or 'the default'}; set "
                          "data.image_size")
    set_value(settings, "data.image_size", size)
    if found.image_size is None:
        return [f"image size {size} px"]
    why = (f"at most {largest} px on a {kind.upper()}: set data.image_size for more" if size == largest < found.image_size
           else "the largest size at or below it that the recipe builds" if size != found.image_size else "the data's")
    return [f"image size {size} px (the data's images are {found.image_size} px; {why})"]


def default_networks(registry: Registry, size: int) -> list[Component]:
    """The networks of the default recipe at ``size``: its architecture and its critic, if it names one."""
    recipe = registry.recipe(registry.default_recipe(size), size)
    return [c for c in (recipe.architecture, recipe.one("critic")) if c is not None]


def sizes_of(component: Component, registry: Registry):
    """The image sizes a network component builds (every size for components that build no network)."""
    if component.kind not in ("architecture", "critic"):
        return range(SMALLEST_SIZE, 4097)
    sizes = getattr(component.factory, "image_sizes", None)
    return sizes if sizes is not None else registry.create(component.kind, component.name, None).image_sizes


def default_setting(key: str):
    group, name = key.split(".")
    return getattr(getattr(TrainConfig(), group), name)
