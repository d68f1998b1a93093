"""Data-parallel training with PyTorch's own engine: DistributedDataParallel in processes started by torchrun.

Every rank draws the same random numbers for the whole global batch and keeps its own slice (``rank_slice``),
so a run on N ranks with per-rank batch B makes the same draws as one process with batch N x B; DDP averages
the gradients of per-rank means, which equals the gradient of the global mean. Plugins that draw per-sample
noise (the WGAN-GP interpolation, for one) use ``per_sample_rand`` to keep that property.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ganzoo.errors import GanzooError


@dataclass(frozen=True)
class Ranks:
    """Where this process stands: ``rank`` of ``world_size``, and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


_ranks = Ranks()


def current() -> Ranks:
    """The ranks of this process (one rank of one when not launched by torchrun)."""
    return _ranks


def current_rank_is_main() -> bool:
    """Whether this process is rank 0 (as torchrun's environment says), known before the group is joined."""
    return int(os.environ.get("RANK", "0")) == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device_name: str) -> tuple[Ranks, torch.device]:
    """Join the process group torchrun describes in the environment (NCCL on CUDA, gloo on CPU); pick the device.

    Without torchrun (or with one process) this is a no-op returning rank 0 of 1.
    """
    global _ranks
    from ganzoo.train import resolve_device

    if not launched_by_torchrun():
        _ranks = Ranks()
        return _ranks, resolve_device(device_name)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
        except (RuntimeError, ValueError) as error:
            raise GanzooError(f"cannot join the torchrun process group: {error}") from None
    _ranks = Ranks(dist.get_rank(), dist.get_world_size(), local_rank)
    return _ranks, device


def teardown() -> None:
    global _ranks
    if dist.is_initialized():
        dist.destroy_process_group()
    _ranks = Ranks()


def wrap(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DDP around ``module`` when distributed (batch norm made synchronous on CUDA), else ``module`` itself."""
    if not _ranks.distributed:
        return module
    if device.type == "cuda":
        module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module


def rank_slice(global_batch: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous share of a tensor drawn for the whole global batch."""
    share = global_batch.shape[0] // _ranks.world_size
    return global_batch[_ranks.rank * share:(_ranks.rank + 1) * share]


def per_sample_rand(batch: int, *shape: int, device=None, dtype=None) -> torch.Tensor:
    """Uniform noise for this rank's ``batch`` samples: the rows a single process would draw for them."""
    return rank_slice(torch.rand(batch * _ranks.world_size, *shape, device=device, dtype=dtype))


def per_sample_randn(batch: int, *shape: int, device=None, dtype=None) -> torch.Tensor:
    """Normal noise for this rank's ``batch`` samples, like ``per_sample_rand``."""
    return rank_slice(torch.randn(batch * _ranks.world_size, *shape, device=device, dtype=dtype))


def any_rank(flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag true on every rank when it is true on at least one (stop requests, deadlines)."""
    if not _ranks.distributed:
        return flags
    values = torch.tensor([1.0 if flag else 0.0 for flag in flags], device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(v) for v in values.tolist()]


def barrier() -> None:
    if _ranks.distributed:
        dist.barrier()
