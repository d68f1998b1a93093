"""Training batches: a shuffled order that is its own checkpoint (``BatchSampler``) and a reader that fetches
upcoming batches from a memory-mapped store in background threads (``BatchLoader``)."""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import torch

from ganzoo.context import RunContext
from ganzoo.errors import GanzooError


class BatchSampler:
    """Shuffled batches, reshuffled every epoch from (seed, epoch) alone, so ``position`` is the whole state.

    Under DDP every rank walks the same global batches of ``batch_size`` x world size and takes its own slice
    (``context``): the ranks never read the same row within an epoch. On a sharded store each rank holds its
    own rows and walks them alone (no ``context``).
    """

    def __init__(self, count: int, batch_size: int, seed: int, context: RunContext | None = None):
        if count < batch_size:
            raise GanzooError(f"dataset has {count} images, fewer than the batch of {batch_size}")
        self.count, self.batch_size, self.seed, self.context = count, batch_size, seed, context
        self.batches_per_epoch = count // batch_size
        self.position = 0
        self._epoch, self._order = -1, None

    def next(self) -> torch.Tensor:
        epoch, index = divmod(self.position, self.batches_per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._order = epoch, torch.randperm(self.count, generator=generator)
        self.position += 1
        batch = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        return self.context.rank_slice(batch) if self.context else batch


class BatchLoader:
    """Reads the sampler's upcoming batches from the store in background threads, in order.

    Reads overlap each other (several page faults in flight when the store is not cached) and the training
    step. ``position`` is the sampler position of the next batch handed out, which is what a checkpoint keeps:
    batches read ahead but not used are read again after a resume.
    """

    def __init__(self, images, sampler: BatchSampler, lookahead: int = 4):
        self.images, self.sampler, self.lookahead = images, sampler, lookahead
        self.pool = ThreadPoolExecutor(max(lookahead, 1), thread_name_prefix="ganzoo-loader")
        self.pending: deque = deque()
        for part in getattr(images, "parts", [images]):
            read_ahead(part)

    def _gather(self, indices: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.images[indices.numpy()])

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch's row indices and its images (uint8, B x S x S x 3)."""
        while len(self.pending) <= self.lookahead:
            indices = self.sampler.next()
            self.pending.append((indices, self.pool.submit(self._gather, indices)))
        indices, images = self.pending.popleft()
        return indices, images.result()

    @property
    def position(self) -> int:
        return self.sampler.position - len(self.pending)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


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


def to_images(batch_uint8: torch.Tensor, device, memory_format) -> torch.Tensor:
    """uint8 (B, S, S, 3) to float (B, 3, S, S) in [-1, 1] on ``device``."""
    images = batch_uint8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return images.contiguous(memory_format=memory_format)
