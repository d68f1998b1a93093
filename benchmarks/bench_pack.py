"""Packing throughput: decode, clean and resize real 640 px covers to 64 px (images/s), per core and on all cores.

    python benchmarks/bench_pack.py ../shared/data/covers640 --copies 10
    python benchmarks/bench_pack.py --smoke      # 16 JPEG covers made here, 2 copies: that the script runs

Stages, each timed over the same files in one run: decoding without JPEG draft mode (full 640 px decode, for
comparison), ``clean_image`` (draft mode on, as ``prepare`` does), ``clean_image`` plus the duplicate signature
(pixel digest, pHash, colour thumbnail), and the whole ``prepare`` with 1 worker and with all cores, on a folder
of ``--copies`` symlinked copies of the source (exact duplicates, so ``prepare`` runs with duplicates kept, then
once with detection on, where every copy after the first is dropped).
"""

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import JpegImagePlugin

from PIL import Image

from ganzoo.apps import toolkit
from ganzoo.apps.toolkit import BadImage, NearDuplicateIndex, clean_image, cover_signature, list_files, prepare

MAX_HASH_DISTANCE = 4


def rate(function, paths) -> float:
    start = time.perf_counter()
    for path in paths:
        try:
            function(str(path))
        except BadImage:
            pass
    return len(paths) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?")
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--index-size", type=int, default=0,
                        help="Also time the near-duplicate index filling up to this many random hashes.")
    parser.add_argument("--smoke", action="store_true", help="16 JPEG covers made here, 2 copies: seconds")
    args = parser.parse_args()
    if not args.smoke:
        return measure(args)
    with tempfile.TemporaryDirectory() as scratch:
        args.folder = Path(scratch) / "jpegs"
        args.folder.mkdir()
        for png in toolkit.write_cover_folder(Path(scratch) / "pngs", 16, 64).iterdir():
            Image.open(png).save(args.folder / f"{png.stem}.jpg", quality=90)
        args.copies, args.size, args.index_size = 2, 32, 100
        measure(args)


def measure(args):
    files = [p for p in list_files(args.folder)[0] if p.suffix.lower() in (".jpg", ".jpeg")]
    paths = files * args.copies
    size = args.size
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "source": str(args.folder),
              "files": len(files), "images_per_stage": len(paths), "size": size, "images_per_s": {}}
    per_s = report["images_per_s"]
    rate(lambda p: clean_image(p, size), files)  # warm the page cache
    with mock.patch.object(JpegImagePlugin.JpegImageFile, "draft", lambda self, mode, size: None):
        per_s["clean_without_draft_1_process"] = round(rate(lambda p: clean_image(p, size), paths))
    per_s["clean_1_process"] = round(rate(lambda p: clean_image(p, size), paths))
    per_s["clean_and_signature_1_process"] = round(rate(lambda p: cover_signature(clean_image(p, size)[0]), paths))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "copies"
        folder.mkdir()
        for copy in range(args.copies):
            for path in files:
                (folder / f"{copy:03d}_{path.name}").symlink_to(path.resolve())
        for workers in (1, os.cpu_count() or 1):
            for distance, label in ((None, "prepare_keep_duplicates"), (6, "prepare_drop_duplicates")):
                start = time.perf_counter()
                _, result = prepare(folder, size, out=Path(scratch) / f"store-{workers}-{distance}",
                                    workers=workers, progress=False, max_hash_distance=distance)
                per_s[f"{label}_{workers}_workers"] = round(len(paths) / (time.perf_counter() - start))
                report[f"kept_{label}"] = result["kept"]
    if args.index_size:
        report["near_duplicate_index_us_per_lookup"] = index_cost(args.index_size)
    print(json.dumps(report, indent=1))


def index_cost(total: int) -> dict[int, float]:
    """Microseconds per lookup while the index grows to ``total`` uniformly random hashes (the best case: real
    pHashes cluster, so their buckets are fuller)."""
    rng = random.Random(0)
    index, costs, done = NearDuplicateIndex(MAX_HASH_DISTANCE), {}, 0
    thumbnail = np.zeros((4, 4, 3), dtype=np.float32)
    for checkpoint in (total // 10, total // 2, total):
        start = time.perf_counter()
        for _ in range(checkpoint - done):
            index.add_unless_near(rng.getrandbits(64), thumbnail)
        costs[checkpoint] = round(1e6 * (time.perf_counter() - start) / (checkpoint - done), 1)
        done = checkpoint
    return costs


if __name__ == "__main__":
    main()
