"""Registered dataset plugins, packed stores and image folders, behind one ``open_dataset``."""

from __future__ import annotations

from pathlib import Path

import torch

from ganzoo.config import DataConfig
from ganzoo.data.prepare import prepare
from ganzoo.data.store import is_store, load_store, read_manifest
from ganzoo.errors import GanzooError
from ganzoo.interfaces import ImageData
from ganzoo.memory import check_fits
from ganzoo.plugins import Registry, unknown_name_message


def open_dataset(config: DataConfig, registry: Registry, progress: bool = True) -> ImageData:
    """A registered dataset by name, a prepared store, or an image folder (prepared and cached on first use)."""
    if config.name in registry.components["dataset"]:
        check_fits(config.count * config.image_size ** 2 * 3, torch.device("cpu"),
                   f"data.count={config.count} (images of {config.image_size} px held in memory)", "lower data.count")
        data = registry.get("dataset", config.name).factory(config)
    else:
        path = Path(config.name)
        if not path.is_dir():
            raise GanzooError(unknown_name_message("dataset", config.name, registry.components["dataset"])
                              .replace("(known:", "(not a folder either; known:"))
        if not is_store(path):
            path, _ = prepare(path, size=config.image_size, progress=progress)
        data = load_store(path)
    size = data.images.shape[1]
    if size != config.image_size:
        raise GanzooError(f"dataset {config.name!r} holds {size} px images but data.image_size is "
                          f"{config.image_size}; prepare it at that size or change data.image_size")
    return data

