"""The packed store: a folder with ``images.u8`` (raw uint8, N x S x S x 3, memory-mapped when read),
``metadata.csv`` (one row per image, in order) and ``manifest.json`` (size, count, fingerprint, report)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ganzoo.errors import GanzooError
from ganzoo.interfaces import ImageData, Metadata

STORE_FORMAT = "ganzoo-store"
STORE_VERSION = 1
IMAGES_FILE = "images.u8"


def is_store(path: Path) -> bool:
    return (path / "manifest.json").is_file()


def read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError) as error:
        raise GanzooError(f"{path} is not a readable ganzoo store: {error}") from None
    if manifest.get("format") != STORE_FORMAT:
        raise GanzooError(f"{path} is not a ganzoo store (format {manifest.get('format')!r})")
    return manifest


def write_metadata_csv(path: Path, metadata: Metadata, count: int) -> None:
    columns = list(metadata)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i in range(count):
            writer.writerow([metadata[c][i] for c in columns])


def read_metadata_csv(path: Path) -> Metadata:
    """Read a metadata table; a column whose every value parses as a number becomes float64."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        rows = list(reader)
    table: Metadata = {}
    for i, column in enumerate(header):
        values = [row[i] if i < len(row) else "" for row in rows]
        try:
            table[column] = np.array([float(v) if v != "" else np.nan for v in values], dtype=np.float64)
        except ValueError:
            table[column] = np.array(values, dtype=object)
    return table


def load_store(path: str | Path) -> ImageData:
    """Open a packed store; images are memory-mapped, not read."""
    path = Path(path)
    manifest = read_manifest(path)
    count, size = manifest["count"], manifest["image_size"]
    try:
        images = np.memmap(path / IMAGES_FILE, dtype=np.uint8, mode="r", shape=(count, size, size, 3))
    except (OSError, ValueError) as error:
        raise GanzooError(f"store {path}: cannot map {IMAGES_FILE} as {count} images of {size} px: {error}") from None
    metadata = read_metadata_csv(path / "metadata.csv") if (path / "metadata.csv").is_file() else {}
    return ImageData(name=manifest.get("name", path.name), images=images, metadata=metadata,
                     fingerprint=manifest["fingerprint"])
