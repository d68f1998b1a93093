"""Training batches on the run's device.

``BatchSampler`` is a shuffled order that is its own checkpoint. Two ways to turn it into batches:

- ``ResidentBatches``: the whole dataset (uint8) and its condition encodings are copied to the device once;
  every batch is gathered, converted and conditioned there. Nothing crosses from the host in a step, so
  nothing makes the host wait for the device. The default whenever the data fits in half the device's free
  memory (a 64 px cover is 12 KB: 1,000,000 covers are 12 GB).
- ``StreamedBatches``: batches read from a memory-mapped store in background threads into pinned memory and
  copied asynchronously, for data that does not fit.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

from ganzoo.runtime.context import RunContext
from ganzoo.runtime.pixels import to_float
from ganzoo.api.errors import GanzooError
from ganzoo.runtime.memory import available_bytes

EncodeRows = Callable[[np.ndarray], "torch.Tensor | None"]
"""Condition encodings (rows, dim) on the CPU for metadata row indices, or None for an unconditional model."""


class BatchSampler:
    """Shuffled batches, reshuffled every epoch from (seed, epoch) alone, so ``position`` is the whole state.

    Under DDP every rank walks the same global batches of ``batch_size`` x world size and takes its own slice
    (``context``): the ranks never read the same row within an epoch. On a sharded store each rank holds its
    own rows and walks them alone (no ``context``). With ``device``, each epoch's order is copied there once and
    batches of indices are slices of it.
    """

    def __init__(self, count: int, batch_size: int, seed: int, context: RunContext | None = None,
                 device: torch.device | None = None):
        if count < batch_size:
            raise GanzooError(f"dataset has {count} images, fewer than the batch of {batch_size}; lower "
                              "schedule.batch_size")
        self.count, self.batch_size, self.seed, self.context, self.device = count, batch_size, seed, context, device
        self.batches_per_epoch = count // batch_size
        self.position = 0
        self._epoch, self._order = -1, None

    def next(self) -> torch.Tensor:
        epoch, index = divmod(self.position, self.batches_per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.count, generator=generator)
            if self.device is not None and self.device.type != "cpu":
                order = order.pin_memory().to(self.device, non_blocking=True)
            self._epoch, self._order = epoch, order
        self.position += 1
        batch = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        return self.context.rank_slice(batch) if self.context else batch


def unmirror(indices: torch.Tensor, count: int, sampled: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Indices of a sampler over ``sampled`` rows into a dataset of ``count`` rows, mirrored when ``sampled`` is
    twice ``count`` (``count + i`` is row i flipped left to right), as (rows, which to flip; None when the data is
    not mirrored). Decided from the counts, so that indices on the device are never read back."""
    if sampled == count:
        return indices, None
    return indices % count, indices >= count


def flipped(images: torch.Tensor, flips: torch.Tensor | None) -> torch.Tensor:
    """Images (B, C, H, W) with the rows ``flips`` marks flipped left to right."""
    if flips is None:
        return images
    return torch.where(flips.to(images.device)[:, None, None, None], images.flip(-1), images)


class ResidentBatches:
    """The dataset and its condition encodings held on the device; batches gathered there. A sampler over twice
    the rows mirrors the dataset (``data.mirror``)."""

    def __init__(self, images: np.ndarray, encode_rows: EncodeRows, sampler: BatchSampler, context: RunContext,
                 memory_format):
        self.sampler, self.context, self.memory_format = sampler, context, memory_format
        self.count = len(images)
        if not isinstance(images, np.ndarray) or not images.flags.writeable:  # shards or a read-only memory map
            images = np.array(images[np.arange(self.count)] if not isinstance(images, np.ndarray) else images)
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(context.device)
        table = encode_rows(np.arange(self.count))
        self.conditions = table.to(context.device) if table is not None else None

    def real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next real batch (float, [-1, 1]) and its conditions."""
        indices, flips = unmirror(self.sampler.next(), self.count, self.sampler.count)
        images = flipped(to_float(self.images[indices], self.context.device, self.memory_format), flips)
        return images, self.conditions[indices] if self.conditions is not None else None

    def random_conditions(self, count: int) -> torch.Tensor | None:
        """The conditions of ``count`` random rows (this rank's share of the global draw)."""
        if self.conditions is None:
            return None
        rows = torch.randint(self.count, (count * self.context.ranks.world_size,), device=self.context.device)
        return self.conditions[self.context.rank_slice(rows)]

    @property
    def position(self) -> int:
        return self.sampler.position

    def close(self) -> None:
        pass


class StreamedBatches:
    """Reads the sampler's upcoming batches from the store in background threads, in order, into pinned memory
    when the device is a GPU.

    Reads overlap each other (several page faults in flight when the store is not cached) and the training
    step. ``position`` is the sampler position of the next batch handed out, which is what a checkpoint keeps:
    batches read ahead but not used are read again after a resume.
    """

    def __init__(self, images, encode_rows: EncodeRows, sampler: BatchSampler, context: RunContext, memory_format,
                 lookahead: int = 4):
        self.images, self.encode_rows, self.sampler, self.lookahead = images, encode_rows, sampler, lookahead
        self.context, self.memory_format = context, memory_format
        self.count = len(images)
        self.pin = context.device.type == "cuda"
        self.pool = ThreadPoolExecutor(max(lookahead, 1), thread_name_prefix="ganzoo-loader")
        self.pending: deque = deque()
        for part in getattr(images, "parts", [images]):
            read_ahead(part)

    def _read(self, indices: torch.Tensor):
        indices, flips = unmirror(indices, self.count, self.sampler.count)
        rows = indices.numpy()
        images = torch.from_numpy(self.images[rows])
        conditions = self.encode_rows(rows)
        if self.pin:
            images = images.pin_memory()
            conditions = conditions.pin_memory() if conditions is not None else None
        return images, conditions, flips

    def real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        while len(self.pending) <= self.lookahead:
            self.pending.append(self.pool.submit(self._read, self.sampler.next()))
        images, conditions, flips = self.pending.popleft().result()
        device = self.context.device
        return (flipped(to_float(images, device, self.memory_format), flips),
                conditions.to(device, non_blocking=True) if conditions is not None else None)

    def random_conditions(self, count: int) -> torch.Tensor | None:
        rows = self.context.rank_slice(torch.randint(self.count, (count * self.context.ranks.world_size,)))
        conditions = self.encode_rows(rows.numpy())
        if conditions is None:
            return None
        return (conditions.pin_memory() if self.pin else conditions).to(self.context.device, non_blocking=True)

    @property
    def position(self) -> int:
        return self.sampler.position - len(self.pending)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def fits_on_device(images, condition_dim: int, device: torch.device) -> bool:
    """Whether the images (uint8) and their condition encodings take at most half the device's free memory."""
    needed = images.shape[0] * (int(np.prod(images.shape[1:])) + 4 * condition_dim)
    free = available_bytes(device)
    return free is not None and needed <= free // 2


def read_ahead(images) -> None:
    """Ask the kernel to read a memory-mapped store into the page cache in the background, when it fits in half
    the memory: random reads of an uncached store run at disk latency (benchmarks/bench_loader.py)."""
    filename = getattr(images, "filename", None)
    if filename is None or not hasattr(os, "posix_fadvise"):
        return
    if os.path.getsize(filename) > os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2:
        return
    descriptor = os.open(filename, os.O_RDONLY)
    try:
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_WILLNEED)
    finally:
        os.close(descriptor)
