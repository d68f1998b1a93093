"""Whether a run fits in memory, decided before anything large is allocated.

Networks are built on PyTorch's ``meta`` device (shapes without storage) to count their parameters and the
activations of one forward pass, so an impossible ``model.width`` or ``batch_size`` is one line instead of an
allocator error minutes later. The estimate is a lower bound of what training holds at once: weights with
their gradients and Adam moments, the generator's average, and the activations autograd keeps for the critic
phase (real, fake and the gradient penalty's interpolates, with its double backward) or the generator phase.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ganzoo.api.errors import GanzooError

PER_PARAMETER_COPIES = 4
"""Weights, gradients and Adam's two moments."""
CRITIC_PHASE_FORWARDS = 4
"""Critic activations kept in the critic phase, in forward passes: real, fake, interpolates, double backward."""


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device``: on the CPU the least of the machine's (MemAvailable of /proc/meminfo), what this
    process's address-space limit leaves (``ulimit -v``: RLIMIT_AS less VmSize) and what its cgroup's limit
    leaves (memory.max less memory.current, v2 or v1); the CUDA allocator's free memory on a GPU; None when none
    can be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    found = [value for value in (proc_value("/proc/meminfo", "MemAvailable:"), address_space_left(), cgroup_left())
             if value is not None]
    return min(found) if found else None


def proc_value(path: str, key: str) -> int | None:
    """A ``KEY: N kB`` line of a /proc file, in bytes."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def address_space_left() -> int | None:
    """What this process's address-space limit (``ulimit -v``, ``prlimit --as``) leaves, or None without one."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    used = proc_value("/proc/self/status", "VmSize:")
    if soft == resource.RLIM_INFINITY or used is None:
        return None
    return max(soft - used, 0)


CGROUP_FILES = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))
"""Where a cgroup's memory limit and use are read: v2, then v1."""


def cgroup_left() -> int | None:
    """What this process's cgroup memory limit leaves, or None without one."""
    for limit_file, usage_file in CGROUP_FILES:
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            with open(usage_file) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 1 << 60:
            return None
        return max(int(limit) - usage, 0)
    return None


def format_bytes(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(count) < 1024 or unit == "PiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def check_fits(needed: int, device: torch.device, what: str, advice: str) -> None:
    """Raise a GanzooError when ``needed`` bytes exceed what ``device`` has free."""
    free = available_bytes(device)
    if free is not None and needed > free:
        raise GanzooError(f"{what} needs about {format_bytes(needed)}, more than the {format_bytes(free)} "
                          f"free on {device.type}; {advice}")


def tensor_bytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    return sum(tensor_bytes(v) for v in vars(value).values()) if hasattr(value, "__dataclass_fields__") else 0


def activation_bytes(module: nn.Module, *inputs) -> int:
    """Bytes of every leaf module's output in one forward pass of ``module`` (on meta tensors: nothing is
    computed)."""
    total = 0

    def count(leaf, args, output):
        nonlocal total
        total += tensor_bytes(output)

    leaves = [m for m in module.modules() if not any(True for _ in m.children())]
    handles = [leaf.register_forward_hook(count) for leaf in leaves]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return total


def parameter_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


@dataclass
class NetworkFootprint:
    """Bytes of each network's parameters, and of the activations of one forward pass of a batch."""

    generator_parameters: int
    critic_parameters: int
    generator_activations: int
    critic_activations: int

    def training(self) -> tuple[int, int]:
        """(parameters with gradients, optimiser state and the generator's average; activations kept by the
        larger of the critic phase and the generator phase)."""
        parameters = (PER_PARAMETER_COPIES * (self.generator_parameters + self.critic_parameters)
                      + self.generator_parameters)
        activations = max(CRITIC_PHASE_FORWARDS * self.critic_activations,
                          self.generator_activations + self.critic_activations)
        return parameters, activations

    def sampling(self) -> int:
        """Both networks' weights (a checkpoint builds the pair) and the generator's activations."""
        return self.generator_parameters + self.critic_parameters + self.generator_activations


def network_footprint(build: Callable[[], tuple[nn.Module, nn.Module]], batch_size: int, latent_dim: int,
                      condition_dim: int, image_size: int, channels: int = 3) -> NetworkFootprint | None:
    """The footprint of the networks ``build`` makes, measured on the meta device (nothing allocated). None when
    the architecture cannot be built or run there."""
    try:
        with torch.device("meta"):
            generator, critic = build()
            z = torch.empty(batch_size, latent_dim)
            c = torch.empty(batch_size, condition_dim) if condition_dim else None
            x = torch.empty(batch_size, channels, image_size, image_size)
            return NetworkFootprint(parameter_bytes(generator), parameter_bytes(critic),
                                    activation_bytes(generator, z, c), activation_bytes(critic, x, c))
    except GanzooError:
        raise
    except Exception:  # an architecture that needs real tensors to build or run: no estimate
        return None
