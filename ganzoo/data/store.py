"""The packed store: a folder with ``images.u8`` (raw uint8, N x S x S x 3, memory-mapped when read),
``metadata.csv`` (one row per image, in order) and ``manifest.json`` (size, count, fingerprint, report).

A sharded store, for training on many machines, is a folder of K ordinary stores ``shard-00000`` ... and a
``shards.json``; under DDP each rank opens only the shards ``k`` with ``k % world_size == rank``, so a machine
needs only its own ranks' shards on disk.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

from typing import Annotated, Literal

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ganzoo.api.options import format_validation_error
from ganzoo.runtime.context import Ranks
from ganzoo.data.select import select
from ganzoo.api.errors import GanzooError
from ganzoo.runtime.files import publish_folder, staging_folder
from ganzoo.api.interfaces import ImageData, Metadata

STORE_FORMAT = "ganzoo-store"
SHARDED_FORMAT = "ganzoo-sharded-store"
STORE_VERSION = 1
IMAGES_FILE = "images.u8"
SHARDS_FILE = "shards.json"


def is_store(path: Path) -> bool:
    return (path / "manifest.json").is_file() or (path / SHARDS_FILE).is_file()


class CleaningReport(BaseModel):
    """What ``data prepare`` kept, dropped and fixed (the report ``ganzoo data inspect`` shows)."""

    model_config = ConfigDict(extra="allow")
    dropped: dict[str, int] = {}
    fixed: dict[str, int] = {}


class StoreManifest(BaseModel):
    """manifest.json of a store: what ganzoo reads of it, typed (other fields are ignored)."""

    format: Literal["ganzoo-store"]
    version: Literal[1]
    name: str = Field(min_length=1, max_length=1000)
    image_size: int = Field(ge=8, le=4096)
    count: int = Field(ge=1, le=1 << 40)
    fingerprint: str = Field(min_length=1, max_length=1000)
    source: str | None = None
    source_key: str | None = None
    report: CleaningReport = CleaningReport()


class ShardsManifest(StoreManifest):
    """shards.json of a sharded store: the shard folders, each an ordinary store inside it."""

    format: Literal["ganzoo-sharded-store"]
    shards: list[Annotated[str, StringConstraints(pattern=r"^shard-[0-9]+$")]] = Field(min_length=1)


MAX_MANIFEST_BYTES = 1 << 24


def read_manifest(path: Path) -> dict:
    """A store's manifest.json, or a sharded store's shards.json (name, image_size, count, fingerprint, and
    for a sharded store its shards), validated: an edited or damaged file is one line naming the field."""
    sharded = (path / SHARDS_FILE).is_file()
    file = path / (SHARDS_FILE if sharded else "manifest.json")
    try:
        if file.stat().st_size > MAX_MANIFEST_BYTES:
            raise GanzooError(f"{file} is larger than {MAX_MANIFEST_BYTES >> 20} MiB; not a ganzoo store manifest")
        manifest = (ShardsManifest if sharded else StoreManifest).model_validate_json(file.read_bytes())
    except OSError as error:
        raise GanzooError(f"{path} is not a readable ganzoo store: {error.strerror}") from None
    except pydantic.ValidationError as error:
        raise GanzooError(format_validation_error(error, heading=f"{path} is not a usable ganzoo store")) from None
    return manifest.model_dump()


def write_metadata_csv(path: Path, metadata: Metadata, count: int) -> None:
    columns = list(metadata)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i in range(count):
            writer.writerow([metadata[c][i] for c in columns])


def read_csv_rows(path: Path, what: str = "metadata") -> list[list[str]]:
    """Every row of a UTF-8 CSV file (a byte-order mark is allowed); a file that cannot be read, is not UTF-8 or
    is not CSV is a GanzooError naming the line."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise GanzooError(f"cannot read {what} {path}: {error.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - raw.rfind(b"\n", 0, error.start)
        raise GanzooError(f"{what} {path} is not UTF-8: byte {raw[error.start]:#04x} on line {line}, column "
                          f"{column}; convert it, e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8") from None
    try:
        return list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise GanzooError(f"{what} {path} is not valid CSV: {error}") from None


def read_metadata_csv(path: Path) -> Metadata:
    """Read a metadata table; a column whose every value parses as a number becomes float64."""
    header, *rows = read_csv_rows(path) or [[]]
    return typed_table({column: [row[i] if i < len(row) else "" for row in rows] for i, column in enumerate(header)})


def typed_table(columns: dict[str, list[str]]) -> Metadata:
    """Text columns as a metadata table: a column whose every value parses as a number (blank: missing) becomes
    float64, any other stays text."""
    table: Metadata = {}
    for column, values in columns.items():
        try:
            table[column] = np.array([float(v) if v != "" else np.nan for v in values], dtype=np.float64)
        except ValueError:
            table[column] = np.array(values, dtype=object)
    return table


def load_store(path: str | Path, ranks: Ranks = Ranks()) -> ImageData:
    """Open a packed store (images memory-mapped, not read); a sharded store opens the shards of ``ranks``."""
    path = Path(path)
    if (path / SHARDS_FILE).is_file():
        return load_shards(path, ranks)
    manifest = read_manifest(path)
    count, size = manifest["count"], manifest["image_size"]
    expected = count * size * size * 3
    try:
        found = (path / IMAGES_FILE).stat().st_size
        if found != expected:
            raise GanzooError(f"store {path}: {IMAGES_FILE} holds {found:,} bytes, not the {expected:,} of the "
                              f"{count:,} images of {size} px its manifest lists")
        images = np.memmap(path / IMAGES_FILE, dtype=np.uint8, mode="r", shape=(count, size, size, 3))
    except (OSError, ValueError) as error:
        raise GanzooError(f"store {path}: cannot map {IMAGES_FILE} as {count} images of {size} px: {error}") from None
    metadata = read_metadata_csv(path / "metadata.csv") if (path / "metadata.csv").is_file() else {}
    try:
        return ImageData(name=manifest["name"], images=images, metadata=metadata, fingerprint=manifest["fingerprint"])
    except ValueError as error:
        raise GanzooError(f"store {path} is not usable: {error}") from None


class ShardImages:
    """Several memory-mapped shards indexed as one uint8 (N, S, S, 3) array (integer-array indexing only)."""

    def __init__(self, parts: list[np.ndarray]):
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(part) for part in parts])
        self.shape = (int(self.offsets[-1]), *parts[0].shape[1:])
        self.ndim, self.dtype = 4, np.dtype(np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, indices) -> np.ndarray:
        indices = np.asarray(indices)
        out = np.empty((len(indices), *self.shape[1:]), dtype=np.uint8)
        part_of = np.searchsorted(self.offsets, indices, side="right") - 1
        for part in np.unique(part_of):
            chosen = part_of == part
            out[chosen] = self.parts[part][indices[chosen] - self.offsets[part]]
        return out


def load_shards(path: Path, ranks: Ranks) -> ImageData:
    index = read_manifest(path)
    if len(index["shards"]) < ranks.world_size:
        raise GanzooError(f"{path} has {len(index['shards'])} shards, fewer than the {ranks.world_size} ranks")
    shards = [load_store(path / name) for name in index["shards"][ranks.rank::ranks.world_size]]
    if any(shard.images.shape[1] != index["image_size"] for shard in shards):
        raise GanzooError(f"{path}: a shard's images are not the {index['image_size']} px its shards.json lists")
    images = shards[0].images if len(shards) == 1 else ShardImages([shard.images for shard in shards])
    population = (concatenate_tables([read_metadata_csv(path / name / "metadata.csv") for name in index["shards"]])
                  if ranks.distributed else None)
    return ImageData(name=index["name"], images=images, metadata=concatenate_tables([s.metadata for s in shards]),
                     fingerprint=index["fingerprint"], population=population)


def concatenate_tables(tables: list[Metadata]) -> Metadata:
    return {column: np.concatenate([table[column] for table in tables]) for column in tables[0]}


def write_rows(data: ImageData, rows: np.ndarray, folder: Path, name: str, fingerprint: str, **extra) -> None:
    """Write the given rows of ``data`` (in that order) as an ordinary store into the empty folder ``folder``."""
    chunks = (data.images[rows[start:start + 4096]] for start in range(0, len(rows), 4096))
    write_store(folder, chunks, data.rows(rows), len(rows), int(data.images.shape[1]), name, fingerprint, **extra)


def write_store(folder: Path, chunks, metadata: Metadata, count: int, size: int, name: str, fingerprint: str,
                **extra) -> None:
    """Write an ordinary store into the (empty or new) folder ``folder``: its images from ``chunks`` of uint8
    (B, S, S, 3), ``count`` in all, with ``metadata``, and a manifest."""
    folder.mkdir(exist_ok=True)
    with open(folder / IMAGES_FILE, "wb") as sink:
        for chunk in chunks:
            sink.write(np.ascontiguousarray(chunk, dtype=np.uint8).tobytes())
    write_metadata_csv(folder / "metadata.csv", metadata, count)
    manifest = {"format": STORE_FORMAT, "version": STORE_VERSION, "name": name, "image_size": size,
                "count": int(count), "fingerprint": fingerprint, **extra}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))


def derived_store(out: str | Path, write) -> Path:
    """Build a store derived from another into a staging folder beside ``out`` (which must not exist) with
    ``write(staging)``, then rename it into place; nothing is left behind if writing fails."""
    out = Path(out)
    if out.exists():
        raise GanzooError(f"{out} already exists; choose another --out")
    staging = staging_folder(out)
    try:
        write(staging)
        publish_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def shard_store(source: str | Path, shards: int, out: str | Path) -> Path:
    """Split a store into ``shards`` stores, row i going to shard i % shards (each a uniform sample)."""
    source = Path(source)
    if shards < 1:
        raise GanzooError("--shards must be at least 1")
    manifest = read_manifest(source)
    data = load_store(source)
    if shards > len(data.images):
        raise GanzooError(f"{source} holds {len(data.images)} images, fewer than {shards} shards")

    def write(staging: Path) -> None:
        names = [f"shard-{k:05d}" for k in range(shards)]
        for k, name in enumerate(names):
            write_rows(data, np.arange(k, len(data.images), shards), staging / name,
                       f"{manifest['name']}-{name}", f"{manifest['fingerprint']}-{k}-of-{shards}")
        index = {"format": SHARDED_FORMAT, "version": STORE_VERSION, "name": manifest.get("name", source.name),
                 "image_size": manifest["image_size"], "count": len(data.images), "shards": names,
                 "fingerprint": f"{manifest['fingerprint']}-{shards}-shards"}
        (staging / SHARDS_FILE).write_text(json.dumps(index, indent=1))

    return derived_store(out, write)


def split_store(source: str | Path, held_out: float, seed: int, out: str | Path) -> tuple[Path, Path]:
    """Split a store at random into ``out/train`` and ``out/held-out`` (a ``held_out`` share of the rows, drawn
    with ``seed``), each an ordinary store keeping the source's row order, plus ``out/split.json``."""
    source = Path(source)
    manifest = read_manifest(source)
    data = load_store(source)
    count = len(data.images)
    held = int(round(count * held_out))
    if not 0 < held < count:
        raise GanzooError(f"--held-out {held_out} of {count} images leaves an empty side; choose a share between "
                          f"{1 / count:.4f} and {1 - 1 / count:.4f}")
    order = np.random.default_rng(seed).permutation(count)
    sides = {"train": np.sort(order[held:]), "held-out": np.sort(order[:held])}

    def write(staging: Path) -> None:
        for side, rows in sides.items():
            write_rows(data, rows, staging / side, f"{manifest.get('name', source.name)}-{side}",
                       f"{manifest['fingerprint']}-split-{seed}-{held_out}-{side}",
                       source=str(source.resolve()), split={"held_out": held_out, "seed": seed, "side": side})
        (staging / "split.json").write_text(json.dumps({
            "source": str(source.resolve()), "source_fingerprint": manifest["fingerprint"], "held_out": held_out,
            "seed": seed, "train": len(sides["train"]), "held-out": len(sides["held-out"])}, indent=1))

    out = derived_store(out, write)
    return out / "train", out / "held-out"


def filter_store(source: str | Path, expressions: tuple[str, ...], out: str | Path) -> tuple[Path, dict]:
    """A new store of the rows of ``source`` for which every ``--where`` expression holds."""
    source = Path(source)
    manifest = read_manifest(source)
    if (source / SHARDS_FILE).is_file():
        raise GanzooError(f"{source} is a sharded store; choose rows of an ordinary store, then shard it")
    data = load_store(source)
    rows = select(data.metadata, expressions)
    if not len(rows):
        raise GanzooError(f"no row of {source} matches {' and '.join(expressions)}")
    report = {"files": len(data.images), "kept": int(len(rows)), "dropped": {}, "fixed": {}, "cached": False,
              "where": {"expressions": list(expressions), "rows": len(data.images), "matching": int(len(rows))}}
    digest = hashlib.sha256(chr(0).join(expressions).encode()).hexdigest()[:12]
    fingerprint = f"{manifest['fingerprint']}-where-{digest}"
    derived_store(out, lambda staging: write_rows(data, rows, staging, manifest.get("name", source.name), fingerprint,
                                                  source=str(source.resolve()), report=report))
    return Path(out), report
