"""Loader throughput from a large synthetic store: images/s the training loop's data path can deliver.

    python benchmarks/bench_loader.py --count 200000 --size 64 --scratch /tmp/loader-bench

Writes a store of ``--count`` random images (kept in --scratch for reruns), then times the training loop's own
path: ``BatchLoader`` (sampler indices, gathers from the memory-mapped ``images.u8``, with ``lookahead`` batches
read ahead in threads), optionally ``to_images`` (uint8 NHWC to float NCHW in [-1, 1], channels_last) on the
CPU. "cold" first drops the file from the page cache (posix_fadvise DONTNEED), so reads come from the disk;
"cold then read-ahead" asks the kernel to read the file ahead, as training does, and reads five
successive chunks; "warm" runs after a full pass has cached it.
"""

import argparse
import gc
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ganzoo.data.store import IMAGES_FILE, STORE_FORMAT, STORE_VERSION, load_store, write_metadata_csv
from ganzoo.data.loader import BatchLoader, BatchSampler, read_ahead, to_images


def write_store(path: Path, count: int, size: int) -> None:
    if (path / "manifest.json").is_file():
        return
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(path / IMAGES_FILE, "wb") as sink:
        for start in range(0, count, 10_000):
            sink.write(rng.integers(0, 256, (min(10_000, count - start), size, size, 3), dtype=np.uint8).tobytes())
    write_metadata_csv(path / "metadata.csv", {"file": np.array([f"{i}.jpg" for i in range(count)], dtype=object)},
                       count)
    manifest = {"format": STORE_FORMAT, "version": STORE_VERSION, "name": path.name, "image_size": size,
                "count": count, "fingerprint": "synthetic", "report": {}}
    (path / "manifest.json").write_text(json.dumps(manifest))


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def rate(images, batch: int, count: int, lookahead: int, convert: bool) -> float:
    """Images/s through the training loop's BatchLoader (``lookahead`` batches read ahead in threads)."""
    loader = BatchLoader(images, BatchSampler(len(images), batch, seed=1), lookahead=lookahead)
    start = time.perf_counter()
    for _ in range(count // batch):
        _, gathered = loader.next()
        if convert:
            to_images(gathered, "cpu", torch.channels_last)
    elapsed = time.perf_counter() - start
    loader.close()
    return count // batch * batch / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/ganzoo-loader-bench"))
    parser.add_argument("--cold-images", type=int, default=25_600, help="Images read per cold measurement.")
    parser.add_argument("--warm-images", type=int, default=102_400, help="Images read per warm measurement.")
    args = parser.parse_args()
    store = args.scratch / f"synthetic-{args.count}-{args.size}px"
    write_store(store, args.count, args.size)
    images = load_store(store).images
    nbytes = images.nbytes
    del images
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "torch_threads": torch.get_num_threads(),
              "store": f"{args.count} images of {args.size} px, {nbytes / 1e9:.2f} GB", "images_per_s": {}}
    per_s = report["images_per_s"]
    for lookahead in (0, 8):
        for batch in (64, 256):
            drop_from_page_cache(store / IMAGES_FILE)  # unmapped first: mapped pages stay cached
            per_s[f"cold, batch {batch}, lookahead {lookahead}"] = round(
                rate(load_store(store).images, batch, args.cold_images, lookahead, False))
            gc.collect()
    drop_from_page_cache(store / IMAGES_FILE)
    images = load_store(store).images
    read_ahead(images)  # what training does: the kernel reads the file into the page cache in the background
    started = time.perf_counter()
    per_s["cold then read-ahead, batch 64, lookahead 8, successive chunks"] = [
        round(rate(images, 64, args.cold_images, 8, False)) for _ in range(5)]
    report["seconds_for_the_five_chunks"] = round(time.perf_counter() - started, 2)
    np.asarray(images).sum(dtype=np.uint64)  # one full pass: the file is now in the page cache
    for lookahead in (0, 8):
        for batch in (64, 256):
            per_s[f"warm, batch {batch}, lookahead {lookahead}"] = round(rate(images, batch, args.warm_images,
                                                                              lookahead, False))
            per_s[f"warm + to_images, batch {batch}, lookahead {lookahead}"] = round(
                rate(images, batch, args.warm_images, lookahead, True))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
