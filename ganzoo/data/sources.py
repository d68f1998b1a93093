"""Registered dataset plugins, packed stores and image folders, behind one ``open_dataset``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from ganzoo.context import Ranks
from ganzoo.data.prepare import prepare
from ganzoo.data.store import is_store, load_store
from ganzoo.errors import GanzooError
from ganzoo.interfaces import ImageData
from ganzoo.memory import check_fits
from ganzoo.plugins import Registry, blame


def dataset_name(name: str | None, registry: Registry) -> str:
    """``name``, or the default dataset plugin's name when None."""
    return name if name is not None else registry.default("dataset").name


def open_dataset(name: str | None, image_size: int, registry: Registry, options: Mapping[str, Any] | None = None,
                 wanted: int | None = None, ranks: Ranks = Ranks(), progress: bool = True) -> ImageData:
    """A registered dataset by name (built with ``options[name]``), a prepared store, or an image folder
    (prepared and cached on first use). ``wanted`` asks a procedural dataset for that many images; ``ranks``
    picks a rank's shards of a sharded store."""
    name = dataset_name(name, registry)
    if name in registry.components["dataset"]:
        component = registry.get("dataset", name)
        dataset = registry.create("dataset", name, (options or {}).get(name))
        if dataset.image_sizes is not None and image_size not in dataset.image_sizes:
            raise GanzooError(f"{component.label} gives images of {describe_sizes(dataset.image_sizes)} px, not "
                              f"{image_size}")
        needed = dataset.memory(image_size, wanted)
        if needed:
            check_fits(needed, torch.device("cpu"), f"dataset {name!r} at {image_size} px", "ask it for fewer images")
        with blame(component.label, "failed to load"):
            data = dataset.load(image_size, wanted)
        if not isinstance(data, ImageData):
            raise GanzooError(f"{component.label} broke its promise: load returned a {type(data).__name__}, not an "
                              "ImageData")
    else:
        path = Path(name)
        if not path.is_dir():
            raise GanzooError(registry.unknown_name_message("dataset", name, registry.components["dataset"])
                              .replace("(known:", "(not a folder either; known:"))
        if not is_store(path):
            path, _ = prepare(path, size=image_size, progress=progress)
        data = load_store(path, ranks)
    size = data.images.shape[1]
    if size != image_size:
        raise GanzooError(f"dataset {name!r} holds {size} px images but data.image_size is {image_size}; prepare it "
                          "at that size or change data.image_size")
    return data


def describe_sizes(sizes) -> str:
    if isinstance(sizes, range):
        return f"{sizes.start} to {sizes.stop - 1}" + (f" in steps of {sizes.step}" if sizes.step != 1 else "")
    return ", ".join(str(size) for size in sorted(sizes))
