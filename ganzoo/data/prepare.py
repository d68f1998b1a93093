"""Clean a folder of images into a packed store: any mode to RGB, centre crop, antialiased resize, bad files
counted and skipped, duplicate covers (identical pixels, or perceptual hashes a few bits apart) dropped after
their first occurrence. The store is cached by content, so preparing the same folder twice is instant."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import multiprocessing
import os
import shutil
import stat
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from tqdm import tqdm

from ganzoo.data import DEFAULT_MAX_HASH_DISTANCE
from ganzoo.data.dedup import NearDuplicateIndex, cover_signature
from ganzoo.data.select import select
from ganzoo.data.store import (IMAGES_FILE, STORE_FORMAT, STORE_VERSION, filter_store, is_store, read_csv_rows,
                               read_manifest, typed_table, write_metadata_csv)
from ganzoo.api.errors import GanzooError
from ganzoo.runtime.files import cache_root, publish_folder, staging_folder

CLEANING_VERSION = 2
METADATA_FILE = "metadata.csv"
MIN_SIDE = 8
MAX_DECODED_PIXELS = 4096 * 4096
"""Images are refused ("too large") when decoding them would take more pixels than this (after JPEG draft
scaling): a cover needs at most a few thousand pixels a side, and a small file can declare a huge canvas."""
ALPHA_BACKGROUND = (255, 255, 255)


class BadImage(Exception):
    """An image file that cannot be used; the message is the reason counted in the report."""


def to_rgb(image: Image.Image, fixes: list[str]) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is flattened onto white, 16/32-bit greys rescaled."""
    mode = image.mode
    if mode == "RGB":
        return image
    fixes.append(f"mode {mode}")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = values.max(initial=0.0)
        scale = 255.0 / 65535.0 if peak > 255 else (255.0 if mode == "F" and peak <= 1.0 else 1.0)
        grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def decode_image(path: str | Path, draft: int | None = None, fixes: list[str] | None = None) -> Image.Image:
    """The one decoder for image files from anywhere: a regular, non-empty file whose declared size is within
    ``MAX_DECODED_PIXELS`` (checked from its header, before decoding: a 48 KB file declaring 20000 x 20000 is
    refused unread), decoded (JPEGs at about ``draft`` px, when given) and converted to 8-bit RGB, the
    conversion noted in ``fixes``. Raises BadImage with the reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with opened_image(path) as image:
                if draft is not None and image.format == "JPEG":
                    image.draft(image.mode, (draft, draft))
                image.load()
                return to_rgb(image, fixes if fixes is not None else [])
    except (BadImage, MemoryError, KeyboardInterrupt):
        raise
    except Image.DecompressionBombError:
        raise BadImage("too large") from None
    except Exception:  # Pillow's decoders fail on damaged files with many exception types
        raise BadImage("truncated or corrupt") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) an image file declares, from its header alone, checked as ``decode_image`` checks it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with opened_image(path) as image:
                return image.size
        except (BadImage, MemoryError, KeyboardInterrupt):
            raise
        except Image.DecompressionBombError:
            raise BadImage("too large") from None
        except Exception:
            raise BadImage("truncated or corrupt") from None


@contextlib.contextmanager
def opened_image(path: str | Path):
    """An image file opened (its header read, nothing decoded) after the checks every reader makes."""
    try:
        status = os.stat(path)
    except OSError:
        raise BadImage("unreadable") from None
    if not stat.S_ISREG(status.st_mode):
        raise BadImage("not a regular file")
    if status.st_size == 0:
        raise BadImage("empty file")
    try:
        image = Image.open(path)
    except Image.UnidentifiedImageError:
        raise BadImage("not an image") from None
    with image:
        width, height = image.size
        if width * height > MAX_DECODED_PIXELS:
            raise BadImage("too large")
        if min(width, height) < MIN_SIDE:
            raise BadImage("too small")
        yield image


def clean_image(path: str, size: int) -> tuple[np.ndarray, list[str]]:
    """Decode, convert, centre-crop and resize one file to (size, size, 3) uint8. Raises BadImage."""
    fixes: list[str] = []
    image = decode_image(path, draft=size, fixes=fixes)
    width, height = image.size
    side = min(width, height)
    if width != height:
        fixes.append("cropped to square")
    left, top = (width - side) // 2, (height - side) // 2
    if side != size:
        fixes.append("resized")
    resized = image.resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side))
    return np.asarray(resized, dtype=np.uint8), fixes


def _clean_worker(job: tuple[str, int, bool]):
    path, size, find_duplicates = job
    try:
        array, fixes = clean_image(path, size)
    except BadImage as error:
        return None, [], str(error), None
    return array, fixes, None, cover_signature(array) if find_duplicates else None


def list_files(folder: Path) -> tuple[list[Path], Counter[str]]:
    """Every file under ``folder`` (following links, hidden names skipped), sorted, and the count of entries
    that are not files: broken links and links that loop back into a folder already walked."""
    files: list[Path] = []
    skipped: Counter[str] = Counter()
    walked: set[tuple[int, int]] = set()
    for root, folders, names in os.walk(folder, followlinks=True):
        identity = os.stat(root)
        if (identity.st_dev, identity.st_ino) in walked:
            skipped["symlink loop"] += 1
            folders[:] = []
            continue
        walked.add((identity.st_dev, identity.st_ino))
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in names:
            if name.startswith("."):
                continue
            path = Path(root) / name
            try:
                if stat.S_ISREG(os.stat(path).st_mode):
                    files.append(path)
                else:
                    skipped["not a regular file"] += 1
            except OSError as error:
                skipped["symlink loop" if error.errno == errno.ELOOP else "broken symlink"] += 1
    return sorted(files), skipped


def source_key(files: list[Path], folder: Path, size: int, metadata_csv: Path | None,
               max_hash_distance: int | None, where: tuple[str, ...] = (), extra: str = "") -> str:
    digest = hashlib.sha256(f"{STORE_VERSION}:{CLEANING_VERSION}:{size}:{max_hash_distance}{extra}".encode())
    if where:
        digest.update(f"where:{where}".encode())
    for path in files:
        info = path.stat()
        digest.update(f"{path.relative_to(folder)}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    if metadata_csv is not None:
        digest.update(metadata_csv.read_bytes())
    return digest.hexdigest()


def read_metadata_rows(metadata_csv: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Rows keyed by their ``file`` column (or the first column): a file name or a path relative to the folder."""
    columns, *rows = read_csv_rows(metadata_csv) or [[]]
    if not columns:
        raise GanzooError(f"metadata {metadata_csv} has no header row")
    key = columns.index("file") if "file" in columns else 0
    return columns, {row[key]: dict(zip(columns, row + [""] * (len(columns) - len(row))))
                     for row in rows if len(row) > key}


def default_cache_dir() -> Path:
    return cache_root() / "stores"


@dataclass
class Source:
    """A folder's files to pack, each with its metadata row, and what was passed over on the way."""

    folder: Path
    jobs: list[tuple[str, dict[str, str]]]
    skipped: Counter
    metadata: Path | None = None
    key_column: str | None = None
    files: int = 0
    rows: int = 0
    rows_matched: int = 0
    where: dict | None = None


@dataclass(frozen=True)
class ExtraColumns:
    """Columns a later layer adds to every row before packing (the songs' descriptors): ``key`` joins the store's
    cache key; ``add(jobs, workers, progress)`` fills the rows of the (file, row) jobs in place and returns its
    report, kept in the store's report under ``name``."""

    name: str
    key: str
    add: Callable[[list[tuple[str, dict[str, str]]], int, bool], dict]


def prepare(folder: str | Path, size: int, metadata_csv: str | Path | None = None, out: str | Path | None = None,
            workers: int | None = None, progress: bool = True,
            max_hash_distance: int | None = DEFAULT_MAX_HASH_DISTANCE, where: tuple[str, ...] = (),
            extra: ExtraColumns | None = None) -> tuple[Path, dict]:
    """Pack ``folder`` into a store at ``out`` (or the cache). Returns (store path, report).

    With ``metadata_csv`` (by default the folder's own ``metadata.csv``, if it has one), only the files its rows
    name are packed, in file order, each with its row; ``where`` expressions (``ganzoo.data.select``) keep only
    the rows for which all hold. An image whose cleaned pixels equal an earlier one's, or whose pHash is within
    ``max_hash_distance`` bits of an earlier one's, is dropped as a duplicate; None keeps duplicates. A store
    given as ``folder`` is filtered by ``where`` into a new store at ``out``. ``extra`` adds columns to the rows.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise GanzooError(f"{folder} is not a folder of images")
    if is_store(folder):
        if extra is not None:
            raise GanzooError(f"{folder} is already a store; its {extra.name} columns are added when a folder of "
                              "images is prepared")
        if not where or out is None:
            raise GanzooError(f"{folder} is already a store; to keep some of its rows give --where and --out")
        return filter_store(folder, where, out)
    own_metadata = folder / METADATA_FILE
    metadata_path = Path(metadata_csv) if metadata_csv else (own_metadata if own_metadata.is_file() else None)
    listed, skipped = list_files(folder)
    files = [p for p in listed if metadata_path is None or p.resolve() != metadata_path.resolve()]
    if where and metadata_path is None:
        raise GanzooError(f"--where chooses rows of a metadata table, and {folder} has none (give --metadata "
                          "FILE.csv)")
    key = source_key(files, folder, size, metadata_path, max_hash_distance, where, extra.key if extra else "")
    target = Path(out) if out else default_cache_dir() / f"{folder.resolve().name}-{size}px-{key[:12]}"
    cached = cached_store(target, key)
    if cached:
        return cached
    check_target(target, folder)
    source = match_rows(folder, files, skipped, metadata_path, where)
    workers = workers or os.cpu_count() or 1
    extra_report = {extra.name: extra.add(source.jobs, workers, progress)} if extra else {}
    try:
        return pack(source, size, target, key, workers, progress, max_hash_distance, extra_report)
    except BaseException:
        cached = cached_store(target, key)  # another process may have packed the same folder meanwhile
        if cached:
            return cached
        raise


def match_rows(folder: Path, files: list[Path], skipped: Counter, metadata_path: Path | None,
               where: tuple[str, ...]) -> Source:
    """The files to pack: every file without a metadata table, else each file its table names (by relative path
    or name) whose row satisfies every ``where`` expression."""
    columns, rows = read_metadata_rows(metadata_path) if metadata_path else ([], {})
    source = Source(folder, [], skipped, metadata_path, ("file" if "file" in columns else columns[0]) if columns
                    else None, len(files), len(rows))
    if where:
        table = typed_table({column: [row.get(column, "") for row in rows.values()] for column in columns})
        keys = list(rows)
        rows = {keys[i]: rows[keys[i]] for i in select(table, where)}
        if not rows:
            raise GanzooError(f"no row of {metadata_path} matches {' and '.join(where)}")
        source.where = {"expressions": list(where), "rows": source.rows, "matching": len(rows)}
    matched: set[str] = set()
    for path in files:
        relative = str(path.relative_to(folder))
        row_key = relative if relative in rows else path.name
        row = rows.get(row_key) if metadata_path else {}
        if row is not None:
            matched.add(row_key)
            source.jobs.append((str(path), row))
    source.rows, source.rows_matched = len(rows), len(matched)
    return source


class Duplicates:
    """Covers seen so far: identical cleaned pixels, or a pHash within ``max_hash_distance`` bits and a similar
    colour thumbnail (None: nothing is a duplicate)."""

    def __init__(self, max_hash_distance: int | None):
        self.find = max_hash_distance is not None
        self.pixels: set[bytes] = set()
        self.near = NearDuplicateIndex(max_hash_distance) if self.find else None

    def reason(self, signature) -> str | None:
        """Why the cover with this signature is dropped ("exact duplicate", "near duplicate"), or None to keep
        it (and remember it)."""
        if not signature:
            return None
        digest, phash, thumbnail = signature
        if digest in self.pixels:
            return "exact duplicate"
        self.pixels.add(digest)
        return None if self.near.add_unless_near(phash, thumbnail) else "near duplicate"


def pack(source: Source, size: int, target: Path, key: str, workers: int, progress: bool,
         max_hash_distance: int | None, extra_report: dict) -> tuple[Path, dict]:
    """Clean ``source``'s files into a staging folder beside ``target`` and rename it into place when complete;
    nothing is left behind if it fails."""
    staging = staging_folder(target)
    try:
        with open(staging / IMAGES_FILE, "wb") as sink:
            kept_rows, dropped, fixed = clean_into(sink, source, size, workers, progress,
                                                   Duplicates(max_hash_distance))
        if not kept_rows:
            raise GanzooError(f"no usable images in {source.folder} ({format_counts(dropped) or 'no files'})")
        metadata = {c: np.array([r.get(c, "") for r in kept_rows], dtype=object) for c in kept_rows[0]}
        write_metadata_csv(staging / "metadata.csv", metadata, len(kept_rows))
        with_table = source.metadata is not None
        report = {"files": len(source.jobs) + sum(source.skipped.values()), "kept": len(kept_rows),
                  "dropped": dict(dropped), "fixed": dict(fixed),
                  "files_without_metadata_row": source.files - len(source.jobs) if with_table else 0,
                  "metadata_rows_without_image": source.rows - source.rows_matched if with_table else 0,
                  **({"where": source.where} if source.where else {}),
                  "metadata": str(source.metadata) if with_table else None, "max_hash_distance": max_hash_distance,
                  **extra_report}
        manifest = {"format": STORE_FORMAT, "version": STORE_VERSION, "name": source.folder.resolve().name,
                    "image_size": size, "count": len(kept_rows), "source": str(source.folder.resolve()),
                    "source_key": key, "fingerprint": fingerprint_file(staging / IMAGES_FILE), "report": report}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
        publish_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target, dict(report, cached=False)


def clean_into(sink, source: Source, size: int, workers: int, progress: bool, duplicates: Duplicates):
    """Clean every file of ``source`` (in ``workers`` processes when there are many), writing the kept covers'
    pixels to ``sink`` in order. Returns the kept rows and the counts of dropped and fixed files. Running out of
    memory stops it: a valid file is never counted as corrupt for want of memory."""
    dropped: Counter[str] = Counter(source.skipped)
    fixed: Counter[str] = Counter()
    kept_rows: list[dict[str, str]] = []
    work = [(path, size, duplicates.find) for path, _ in source.jobs]
    pool = multiprocessing.Pool(workers) if workers > 1 and len(work) > 256 else None
    try:
        results = pool.imap(_clean_worker, work, chunksize=64) if pool else map(_clean_worker, work)
        for (path, row), (array, fixes, reason, signature) in tqdm(
                zip(source.jobs, results), total=len(work), desc=f"prepare {source.folder.name}", unit="img",
                disable=not progress):
            reason = reason or duplicates.reason(signature)
            if reason:
                dropped[reason] += 1
                continue
            sink.write(array.tobytes())
            fixed.update(fixes)
            kept_rows.append({"file": str(Path(path).relative_to(source.folder)),
                              **{c: v for c, v in row.items() if c != source.key_column}})
    except MemoryError:
        raise GanzooError(f"ran out of memory while decoding the images of {source.folder} (nothing was dropped for "
                          "it); free memory or give fewer --workers, and prepare again") from None
    finally:
        if pool:
            pool.close()
            pool.join()
    return kept_rows, dropped, fixed


def cached_store(target: Path, key: str) -> tuple[Path, dict] | None:
    """The store at ``target`` with its report, if it was packed from the same files and settings; None if there
    is none. A store of other content there is an error: it is never replaced."""
    if not is_store(target):
        return None
    manifest = read_manifest(target)
    if manifest.get("source_key") != key:
        raise GanzooError(f"{target} already holds a different store; choose another --out")
    return target, dict(manifest["report"], cached=True)


def check_target(target: Path, folder: Path) -> None:
    """Refuse an output folder that holds anything ganzoo did not write, or that lies inside the source."""
    resolved, source = target.resolve(), folder.resolve()
    if resolved == source or source in resolved.parents:
        raise GanzooError(f"--out {target} lies inside the source folder {folder}; choose a folder outside it")
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        raise GanzooError(f"{target} exists and is not a ganzoo store; refusing to replace it (choose a new or "
                          "empty --out)")


def fingerprint_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def describe_report(report: dict) -> list[str]:
    """What preparing a folder did, as lines: files kept, dropped and fixed by reason, metadata matched."""
    lines = [f"kept {report['kept']} of {report['files']} files"]
    if report["dropped"]:
        lines.append(f"dropped: {format_counts(report['dropped'])}")
    if report["fixed"]:
        lines.append(f"fixed: {format_counts(report['fixed'])}")
    if report.get("metadata"):
        lines.append(f"metadata {report['metadata']}: {report['files_without_metadata_row']} files without a row, "
                     f"{report['metadata_rows_without_image']} rows without an image")
    if report.get("where"):
        chosen = report["where"]
        lines.append(f"where {' and '.join(chosen['expressions'])}: {chosen['matching']} of {chosen['rows']} rows")
    return lines


def format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]))
