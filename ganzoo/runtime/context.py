"""Where and how a run computes: the device, this process's place among data-parallel ranks, and the
precision of forward passes, in one ``RunContext`` passed down explicitly (no module-global state).

Data parallelism is PyTorch's DistributedDataParallel in processes started by torchrun. Every rank draws the
same random numbers for the whole global batch and keeps its own slice (``RunContext.rank_slice``), so a run on
N ranks with per-rank batch B makes the same draws as one process with batch N x B; DDP averages the gradients
of per-rank means, which equals the gradient of the global mean.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ganzoo.api.errors import GanzooError


@dataclass(frozen=True)
class Ranks:
    """This process's ``rank`` of ``world_size`` (and its ``local_rank`` on its machine)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


@dataclass(frozen=True)
class RunContext:
    """Device, ranks and precision of a run. ``amp`` runs forward passes under bf16 autocast; losses and the
    terms the engine hands them stay in float32."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    ranks: Ranks = Ranks()
    amp: bool = False

    def autocast(self):
        """The forward passes' precision context: bf16 autocast when ``amp``, otherwise nothing."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def rank_slice(self, global_batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a tensor drawn for the whole global batch."""
        share = global_batch.shape[0] // self.ranks.world_size
        return global_batch[self.ranks.rank * share:(self.ranks.rank + 1) * share]

    def per_sample_rand(self, batch: int, *shape: int, device=None, dtype=None) -> torch.Tensor:
        """Uniform noise for this rank's ``batch`` samples: the rows a single process would draw for them."""
        return self.rank_slice(torch.rand(batch * self.ranks.world_size, *shape, device=device or self.device,
                                          dtype=dtype))

    def per_sample_randn(self, batch: int, *shape: int, device=None, dtype=None) -> torch.Tensor:
        """Normal noise for this rank's ``batch`` samples, like ``per_sample_rand``."""
        return self.rank_slice(torch.randn(batch * self.ranks.world_size, *shape, device=device or self.device,
                                           dtype=dtype))

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DDP around ``module`` when distributed (batch norm made synchronous on CUDA), else ``module``."""
        if not self.ranks.distributed:
            return module
        if self.device.type == "cuda":
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        return DistributedDataParallel(module, device_ids=[self.device] if self.device.type == "cuda" else None)

    def any_rank(self, flags: list[bool]) -> list[bool]:
        """Each flag true on every rank when it is true on at least one (stop requests, deadlines)."""
        if not self.ranks.distributed:
            return flags
        values = torch.tensor([1.0 if flag else 0.0 for flag in flags], device=self.device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return [bool(v) for v in values.tolist()]

    def barrier(self) -> None:
        if self.ranks.distributed:
            dist.barrier()


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GanzooError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GanzooError("device cuda was asked for but no CUDA GPU is available")
    return device


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank_from_environment() -> int:
    """This process's rank as torchrun's environment says, known before the process group is joined."""
    return int(os.environ.get("RANK", "0"))


def setup(device_name: str, amp: bool = False) -> RunContext:
    """The run's context: joins the process group torchrun describes in the environment (NCCL on CUDA, gloo
    on CPU) and picks this rank's device; without torchrun, rank 0 of 1 on ``device_name``."""
    device = resolve_device(device_name)
    if not launched_by_torchrun():
        return RunContext(device, Ranks(), amp)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
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
    return RunContext(device, Ranks(dist.get_rank(), dist.get_world_size(), local_rank), amp)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
