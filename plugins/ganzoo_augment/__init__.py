"""Differentiable augmentations for training on small data: ``diffaug`` and ``ada``.

Both transform every batch the critic sees, real and generated alike, in both phases, with operations that are
differentiable with respect to the pixels, so the generator's gradients flow through them and it is not taught
to make augmented-looking covers.

``diffaug`` (DiffAugment, Zhao et al. 2020): each of its policies applied to every image, with per-image random
strength. ``color``: brightness (+-0.5), saturation (x0 to x2) and contrast (x0.5 to x1.5); ``translation``:
an integer shift of up to 1/8 of the side, zero padded; ``cutout``: a square of half the side at a random place
set to zero. As in the paper, on images in [-1, 1].

``ada`` (StyleGAN2-ADA, Karras et al. 2020): each operation is applied to each image with probability p, which
adapts to the overfitting signal r_t = E[sign D(x_real)] measured over ``interval`` critic updates: p moves
towards more augmentation when r_t exceeds ``target`` (0.6) and back when it is below, by
batch x interval / (``speed_kimg`` x 1000) per adjustment, so it can cross [0, 1] in ``speed_kimg`` thousand real
images. Operations (a differentiable subset of the paper's "bgc" pipeline): horizontal flip, rotation by a
multiple of 90 degrees, integer translation (up to 1/8, reflected), brightness, contrast, saturation, and
cutout. p lives on the device (no host synchronisation to adjust it) and is kept in checkpoints; under
data-parallel training the signal is averaged over ranks.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict, Field

from ganzoo import Augmentation, Batch, GanzooError, hookimpl

POLICIES = ("color", "translation", "cutout")


class DiffAugOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: list[str] = Field(list(POLICIES), description="which of color, translation and cutout to apply")


def uniform(images: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.rand(images.shape[0], *shape, device=images.device, dtype=images.dtype)


def brightness(x: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    return x + strength


def saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * factor + mean


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * factor + mean


def shift(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, reflect: bool) -> torch.Tensor:
    """Each image moved by integer (dx, dy) pixels (per image, (B,) long tensors); uncovered pixels are zeros or
    the image reflected at its border. A gather, so gradients reach the pixels that were moved."""
    size_y, size_x = x.shape[2], x.shape[3]
    rows = torch.arange(size_y, device=x.device).view(1, -1) - dy.view(-1, 1)
    cols = torch.arange(size_x, device=x.device).view(1, -1) - dx.view(-1, 1)
    if reflect:
        rows = reflect_index(rows, size_y)
        cols = reflect_index(cols, size_x)
        inside = torch.ones(x.shape[0], 1, size_y, size_x, device=x.device, dtype=x.dtype)
    else:
        inside = (((rows >= 0) & (rows < size_y)).view(-1, 1, size_y, 1)
                  & ((cols >= 0) & (cols < size_x)).view(-1, 1, 1, size_x)).to(x.dtype)
        rows, cols = rows.clamp(0, size_y - 1), cols.clamp(0, size_x - 1)
    channels = x.shape[1]
    gathered = x.gather(2, rows.view(-1, 1, size_y, 1).expand(-1, channels, size_y, size_x))
    gathered = gathered.gather(3, cols.view(-1, 1, 1, size_x).expand(-1, channels, size_y, size_x))
    return gathered * inside


def reflect_index(index: torch.Tensor, size: int) -> torch.Tensor:
    period = 2 * size - 2 if size > 1 else 1
    index = index.remainder(period)
    return torch.where(index >= size, period - index, index)


def cutout(x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """A square of half the side at a random place set to zero (in the images where ``keep`` is False)."""
    size_y, size_x = x.shape[2], x.shape[3]
    centre_y = (uniform(x) * size_y).long()
    centre_x = (uniform(x) * size_x).long()
    half_y, half_x = size_y // 4, size_x // 4
    rows = torch.arange(size_y, device=x.device).view(1, -1)
    cols = torch.arange(size_x, device=x.device).view(1, -1)
    in_rows = (rows - centre_y.view(-1, 1)).abs() < max(half_y, 1)
    in_cols = (cols - centre_x.view(-1, 1)).abs() < max(half_x, 1)
    hole = (in_rows.view(-1, 1, size_y, 1) & in_cols.view(-1, 1, 1, size_x))
    if keep is not None:
        hole = hole & ~keep.view(-1, 1, 1, 1)
    return x * (~hole).to(x.dtype)


class DiffAugment(Augmentation):
    def __init__(self, options: DiffAugOptions):
        unknown = sorted(set(options.policy) - set(POLICIES))
        if unknown:
            raise GanzooError(f"invalid config: options.diffaug.policy: unknown {unknown[0]!r} "
                              f"(valid: {', '.join(POLICIES)})")
        self.policy = options.policy

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        if "color" in self.policy:
            x = brightness(x, uniform(x, 1, 1, 1) - 0.5)
            x = saturation(x, uniform(x, 1, 1, 1) * 2)
            x = contrast(x, uniform(x, 1, 1, 1) + 0.5)
        if "translation" in self.policy:
            limit_y, limit_x = max(x.shape[2] // 8, 1), max(x.shape[3] // 8, 1)
            dy = (uniform(x) * (2 * limit_y + 1)).long() - limit_y
            dx = (uniform(x) * (2 * limit_x + 1)).long() - limit_x
            x = shift(x, dx, dy, reflect=False)
        if "cutout" in self.policy:
            x = cutout(x)
        return x


class ADAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: float = Field(0.6, gt=0, lt=1, description="the overfitting signal E[sign D(real)] to hold")
    interval: int = Field(4, gt=0, description="critic updates between adjustments of p")
    speed_kimg: float = Field(500.0, gt=0, description="thousands of real images for p to move by 1")
    initial_p: float = Field(0.0, ge=0, le=1)
    max_p: float = Field(1.0, gt=0, le=1)


class ADA(Augmentation):
    def __init__(self, options: ADAOptions):
        self.options = options
        self.p: torch.Tensor | None = None
        self.signal_sum: torch.Tensor | None = None
        self.signal_count = 0
        self.updates = 0
        self.last_signal: torch.Tensor | None = None
        self.initial = options.initial_p

    def _state_on(self, device) -> None:
        if self.p is None:
            self.p = torch.tensor(self.initial, device=device)
            self.signal_sum = torch.zeros((), device=device)
            self.last_signal = torch.zeros((), device=device)
        elif self.p.device != device:
            self.p, self.signal_sum = self.p.to(device), self.signal_sum.to(device)
            self.last_signal = self.last_signal.to(device)

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        self._state_on(images.device)
        p = self.p.to(images.dtype)
        x = images

        def chosen() -> torch.Tensor:
            return uniform(x) < p

        flip = chosen().view(-1, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)
        if x.shape[2] == x.shape[3]:
            quarter = (uniform(x) * 4).long() * chosen().long()
            rotated = [x] + [torch.rot90(x, k, dims=(2, 3)) for k in (1, 2, 3)]
            x = sum(rotated[k] * (quarter == k).view(-1, 1, 1, 1).to(x.dtype) for k in range(4))
        limit = max(x.shape[2] // 8, 1)
        move = chosen().long()
        dy = ((uniform(x) * (2 * limit + 1)).long() - limit) * move
        dx = ((uniform(x) * (2 * limit + 1)).long() - limit) * move
        x = shift(x, dx, dy, reflect=True)
        x = brightness(x, 0.2 * torch.randn_like(uniform(x, 1, 1, 1)) * chosen().view(-1, 1, 1, 1))
        x = contrast(x, torch.exp2(0.5 * torch.randn_like(uniform(x, 1, 1, 1)) * chosen().view(-1, 1, 1, 1)))
        x = saturation(x, torch.exp2(torch.randn_like(uniform(x, 1, 1, 1)) * chosen().view(-1, 1, 1, 1)))
        return cutout(x, keep=~chosen())

    def observe(self, batch: Batch) -> None:
        score = batch.real_out.score.detach()
        self._state_on(score.device)
        self.signal_sum += score.sign().sum()
        self.signal_count += score.shape[0]
        self.updates += 1
        if self.updates % self.options.interval:
            return
        total = torch.stack([self.signal_sum, torch.tensor(float(self.signal_count), device=score.device)])
        if batch.context.ranks.distributed:
            dist.all_reduce(total)
        signal = total[0] / total[1]
        step = total[1] / (self.options.speed_kimg * 1000)
        self.p = (self.p + torch.sign(signal - self.options.target) * step).clamp(0, self.options.max_p)
        self.last_signal = signal
        self.signal_sum = torch.zeros((), device=score.device)
        self.signal_count = 0

    def statistics(self) -> dict[str, float]:
        if self.p is None:
            return {"p": self.initial}
        return {"p": float(self.p), "signal": float(self.last_signal)}

    def state_dict(self) -> dict:
        p = float(self.p) if self.p is not None else self.initial
        signal_sum = float(self.signal_sum) if self.signal_sum is not None else 0.0
        return {"p": p, "signal_sum": signal_sum, "signal_count": self.signal_count, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.initial = float(state["p"])
        self.p = None
        self._state_on(torch.device("cpu"))
        self.signal_sum.fill_(float(state["signal_sum"]))
        self.signal_count, self.updates = int(state["signal_count"]), int(state["updates"])


@hookimpl
def register_augmentations(register):
    register("diffaug", DiffAugment, options=DiffAugOptions, default=True,
             description="DiffAugment (Zhao et al. 2020): colour, translation and cutout on every critic input")
    register("ada", ADA, options=ADAOptions,
             description="adaptive augmentation (StyleGAN2-ADA): p follows the overfitting signal, target 0.6")
