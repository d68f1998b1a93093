"""Loader throughput from a large synthetic store: images/s the training loop's data path can deliver.

    python benchmarks/bench_loader.py --count 200000 --size 64 --scratch /tmp/loader-bench
    python benchmarks/bench_loader.py --smoke      # a small store in a temporary folder: that the script runs

Writes a store of ``--count`` random images (kept in --scratch for reruns), then times the training loop's own
path: ``StreamedBatches`` (sampler indices, gathers from the memory-mapped ``images.u8``, with ``lookahead``
batches read ahead in threads, each converted to float NCHW in [-1, 1], channels_last, on the CPU). "cold" first drops the file from the page cache (posix_fadvise DONTNEED), so reads come from the disk;
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

import tempfile

from ganzoo.apps import toolkit

IMAGES_FILE = "images.u8"


def write_store(path: Path, count: int, size: int) -> None:
    if (path / "manifest.json").is_file():
        return
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    chunks = (rng.integers(0, 256, (min(10_000, count - start), size, size, 3), dtype=np.uint8)
              for start in range(0, count, 10_000))
    toolkit.write_store(path, chunks, {"file": np.array([f"{i}.jpg" for i in range(count)], dtype=object)}, count,
                        size, path.name, "synthetic")


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def rate(images, batch: int, count: int, lookahead: int) -> float:
    """Images/s through the training loop's StreamedBatches (``lookahead`` batches read ahead in threads)."""
    context = toolkit.RunContext()
    loader = toolkit.StreamedBatches(images, lambda rows: None, toolkit.BatchSampler(len(images), batch, seed=1),
                                     context, torch.channels_last, lookahead=lookahead)
    start = time.perf_counter()
    for _ in range(count // batch):
        loader.real_batch()
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
    parser.add_argument("--smoke", action="store_true", help="2,048 images in a temporary folder: seconds")
    args = parser.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory() as scratch:
            args.count, args.size, args.scratch, args.cold_images, args.warm_images = 2048, 16, Path(scratch), 512, 512
            measure(args)
    else:
        measure(args)


def measure(args):
    store = args.scratch / f"synthetic-{args.count}-{args.size}px"
    write_store(store, args.count, args.size)
    images = toolkit.load_store(store).images
    nbytes = images.nbytes
    del images
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "torch_threads": torch.get_num_threads(),
              "store": f"{args.count} images of {args.size} px, {nbytes / 1e9:.2f} GB", "images_per_s": {}}
    per_s = report["images_per_s"]
    for lookahead in (0, 8):
        for batch in (64, 256):
            drop_from_page_cache(store / IMAGES_FILE)  # unmapped first: mapped pages stay cached
            per_s[f"cold, batch {batch}, lookahead {lookahead}"] = round(
                rate(toolkit.load_store(store).images, batch, args.cold_images, lookahead))
            gc.collect()
    drop_from_page_cache(store / IMAGES_FILE)
    images = toolkit.load_store(store).images
    toolkit.read_ahead(images)  # what training does: the kernel reads the file into the page cache in the background
    started = time.perf_counter()
    per_s["cold then read-ahead, batch 64, lookahead 8, successive chunks"] = [
        round(rate(images, 64, args.cold_images, 8)) for _ in range(5)]
    report["seconds_for_the_five_chunks"] = round(time.perf_counter() - started, 2)
    np.asarray(images).sum(dtype=np.uint64)  # one full pass: the file is now in the page cache
    for lookahead in (0, 8):
        for batch in (64, 256):
            per_s[f"warm, batch {batch}, lookahead {lookahead}"] = round(rate(images, batch, args.warm_images,
                                                                              lookahead))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
