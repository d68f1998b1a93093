"""What the critic sees of a dataset under a recipe's augmentations, before any training (``ganzoo data
preview``)."""

from __future__ import annotations

import numpy as np
import torch

from ganzoo.api.errors import GanzooError
from ganzoo.data.loader import flipped, unmirror
from ganzoo.data.sources import open_dataset
from ganzoo.engine.defaults import fill_in
from ganzoo.registry.components import blame
from ganzoo.registry.loading import get_registry
from ganzoo.runtime.pixels import to_float, to_uint8


def augmentation_grid(source: str, recipe: str | None, size: int | None, options: dict[str, dict], count: int,
                      variants: int, mirror: bool, seed: int) -> tuple[str, int, np.ndarray, int]:
    """(recipe, image size, uint8 covers (count x (1 + variants), S, S, 3), columns): ``count`` random images of
    ``source`` at the size and recipe ``ganzoo train`` would choose unless given, each followed by ``variants``
    draws of the recipe's augmentations, in the recipe's order."""
    registry = get_registry()
    settings = {"data": {"name": source} | ({"image_size": size} if size else {})} | ({"recipe": recipe} if recipe
                                                                                       else {})
    settings, _ = fill_in(settings | {"options": options}, registry)
    size, recipe = settings["data"]["image_size"], settings["recipe"]
    chosen = registry.recipe(recipe, size).augmentations
    if not chosen:
        raise GanzooError(f"recipe {recipe!r} has no augmentations: the critic sees the images as they are")
    unused = set(options) - {c.name for c in chosen} - {source}
    if unused:
        raise GanzooError(f"options for {', '.join(sorted(unused))}, which recipe {recipe!r} does not augment with")
    augmentations = {c.name: registry.create("augmentation", c.name, options.get(c.name)) for c in chosen}
    data = open_dataset(source, size, registry, options, wanted=count)
    generator = torch.Generator().manual_seed(seed)
    sampled = len(data.images) * (2 if mirror else 1)
    rows, flips = unmirror(torch.randperm(sampled, generator=generator)[:count], len(data.images), sampled)
    images = flipped(to_float(torch.from_numpy(np.ascontiguousarray(data.images[rows.numpy()])), torch.device("cpu")),
                     flips)
    torch.manual_seed(seed)
    columns = [images]
    for _ in range(variants):
        augmented = images
        for name, augmentation in augmentations.items():
            with blame(registry.get("augmentation", name).label, "failed to augment a batch"), torch.no_grad():
                augmented = augmentation.augment(augmented)
        columns.append(augmented)
    grid = torch.stack(columns, dim=1).flatten(0, 1)
    return recipe, size, to_uint8(grid).permute(0, 2, 3, 1).numpy(), 1 + variants
