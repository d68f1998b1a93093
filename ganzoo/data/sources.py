"""Where images come from: a registered dataset plugin, a packed store or an image folder (prepared and cached on
first use). A name is resolved once into a ``DataSource`` (``resolve_source``, which builds a dataset plugin from
its validated options) and opened later (``open_source``), when the run is ready for data."""

from __future__ import annotations

import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from PIL import Image

from ganzoo.api.errors import GanzooError
from ganzoo.api.interfaces import Dataset, ImageData
from ganzoo.data.prepare import list_files, prepare
from ganzoo.data.store import is_store, load_store, read_manifest
from ganzoo.registry.components import Registry, blame
from ganzoo.runtime.context import Ranks
from ganzoo.runtime.memory import check_fits


@dataclass
class DataSource:
    """A dataset plugin built from its options (``dataset``, named by ``label`` in errors), or the path of a
    store or image folder (``dataset`` None)."""

    name: str
    dataset: Dataset | None = None
    label: str = ""

    @property
    def is_plugin(self) -> bool:
        return self.dataset is not None


def resolve_source(name: str | None, registry: Registry, options: Mapping[str, Any] | None = None) -> DataSource:
    """A dataset plugin by name (the default one when None), built with ``options[name]``, or a folder; neither
    is an error listing close names."""
    name = name if name is not None else registry.default("dataset").name
    if name in registry.components["dataset"]:
        return DataSource(name, registry.create("dataset", name, (options or {}).get(name)),
                          registry.get("dataset", name).label)
    if not Path(name).is_dir():
        raise GanzooError(registry.unknown_name_message("dataset", name, registry.components["dataset"])
                          .replace("(known:", "(not a folder either; known:"))
    return DataSource(name)


SURVEYED_FILES = 256
"""How many of a folder's files ``survey`` opens (evenly spread over the sorted listing) to tell its image size."""


@dataclass
class Survey:
    """What can be told about a source without loading it: the side of its images (None: a dataset plugin that
    makes any size), the sizes it can give (None: any) and how many images it holds (None: unknown; for a folder,
    the number of files, an upper bound)."""

    image_size: int | None
    sizes: Any = None
    count: int | None = None


def survey(source: DataSource) -> Survey:
    """Look at a source cheaply: a store's manifest, the headers of some of a folder's files (the median of
    their shorter sides), or a dataset plugin's declared sizes."""
    if source.is_plugin:
        return Survey(None, source.dataset.image_sizes)
    path = Path(source.name)
    if is_store(path):
        manifest = read_manifest(path)
        return Survey(manifest["image_size"], (manifest["image_size"],), manifest["count"])
    files, _ = list_files(path)
    stride = max(1, len(files) // SURVEYED_FILES)
    sides = []
    for file in files[::stride][:SURVEYED_FILES]:
        try:
            with warnings.catch_warnings(), Image.open(file) as image:
                warnings.simplefilter("ignore")
                sides.append(min(image.size))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue  # not an image: preparing the folder counts and skips it
    if not sides:
        raise GanzooError(f"{path} holds no image ganzoo can read ({len(files)} files looked at)")
    return Survey(int(statistics.median(sides)), None, len(files))


def open_source(source: DataSource, image_size: int, wanted: int | None = None, ranks: Ranks = Ranks(),
                progress: bool = True) -> ImageData:
    """The images of ``source`` at ``image_size`` px. ``wanted`` asks a procedural dataset for that many
    images; ``ranks`` picks a rank's shards of a sharded store; a folder is prepared (and cached) first."""
    if source.is_plugin:
        data = load_plugin_dataset(source, image_size, wanted)
    else:
        path, report = Path(source.name), None
        if not is_store(path):
            path, report = prepare(path, size=image_size, progress=progress)
        data = load_store(path, ranks)
        data.preparation = report
    size = data.images.shape[1]
    if size != image_size:
        raise GanzooError(f"dataset {source.name!r} holds {size} px images but data.image_size is {image_size}; "
                          "prepare it at that size or change data.image_size")
    return data


def load_plugin_dataset(source: DataSource, image_size: int, wanted: int | None) -> ImageData:
    """A dataset plugin's images, after checking the size it can give and the memory it says it needs."""
    dataset = source.dataset
    if dataset.image_sizes is not None and image_size not in dataset.image_sizes:
        raise GanzooError(f"{source.label} gives images of {describe_sizes(dataset.image_sizes)} px, not "
                          f"{image_size}")
    needed = dataset.memory(image_size, wanted)
    if needed:
        check_fits(needed, torch.device("cpu"), f"dataset {source.name!r} at {image_size} px",
                   "ask it for fewer images")
    with blame(source.label, "failed to load"):
        data = dataset.load(image_size, wanted)
    if not isinstance(data, ImageData):
        raise GanzooError(f"{source.label} broke its promise: load returned a {type(data).__name__}, not an "
                          "ImageData")
    return data


def open_dataset(name: str | None, image_size: int, registry: Registry, options: Mapping[str, Any] | None = None,
                 wanted: int | None = None, progress: bool = True) -> ImageData:
    """``resolve_source`` and ``open_source`` in one call, for a name given on the command line."""
    return open_source(resolve_source(name, registry, options), image_size, wanted, progress=progress)


def describe_sizes(sizes) -> str:
    if isinstance(sizes, range):
        return f"{sizes.start} to {sizes.stop - 1}" + (f" in steps of {sizes.step}" if sizes.step != 1 else "")
    return ", ".join(str(size) for size in sorted(sizes))
