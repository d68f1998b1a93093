"""Differentiable augmentations for training on small data: ``diffaug`` and ``ada``.

Both transform every batch the critic sees, real and generated alike, in both phases, with operations that are
differentiable with respect to the pixels, so the generator's gradients flow through them and it is not taught
to make augmented-looking covers.

``diffaug`` (DiffAugment, Zhao et al. 2020): each of its policies applied to every image, with per-image random
strength. ``color``: brightness (+-0.5), saturation (x0 to x2) and contrast (x0.5 to x1.5); ``translation``:
an integer shift of up to 1/8 of the side, zero padded; ``cutout``: a square of half the side at a random place
set to zero (``cutout``:
the square's side as a share of the image's, cut off at the border). As in the paper, on images in [-1, 1].

``ada`` (StyleGAN2-ADA, Karras et al. 2020): stylegan2-ada's pipeline, each operation applied to each image with
probability p (times the operation's multiplier: 'bgc' by default). Geometric: horizontal flip, quarter turns,
integer translation (up to 1/8 of the side), isotropic scaling (2^N(0, 0.2)), rotation (uniform, twice, each with
probability 1 - sqrt(1 - p)), anisotropic scaling (2^N(0, 0.2)) and fractional translation (N(0, 0.125) of the
side), composed into one affine map and applied by one bilinear resampling with reflected borders (the paper
upsamples with a wavelet filter before resampling, to limit aliasing; ganzoo does not). Colour: brightness
(N(0, 0.2)), contrast (2^N(0, 0.5), about mid-grey), luma flip, hue rotation about the grey axis and
saturation (2^N(0, 1)), composed into one affine colour map; cutout (half the side) when its multiplier is set.
p adapts to the overfitting signal r_t = E[sign D(x_real)] measured over ``interval`` critic updates: it moves
towards more augmentation when r_t exceeds ``target`` (0.6) and back when it is below, by batch x interval /
(``speed_kimg`` x 1000) per adjustment, so it can cross [0, 1] in ``speed_kimg`` thousand real images; or, with
``schedule_kimg``, it follows a fixed half-cosine schedule from ``initial_p`` to ``final_p`` (R3GAN). p lives on
the device (no host synchronisation to adjust it) and is kept in checkpoints; under data-parallel training the
signal is averaged over ranks.

Augmentations draw their random numbers from torch's global generator on the images' device, per image.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from ganzoo import Augmentation, Batch, GanzooError, hookimpl

POLICIES = ("color", "translation", "cutout")


class DiffAugOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: list[str] = Field(list(POLICIES), description="which of color, translation and cutout to apply")
    cutout: float = Field(0.5, gt=0, le=1, description="the cut square's side as a share of the image's "
                                                       "(DiffAugment: 0.5; Projected GAN: 0.2)")


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


def cutout(x: torch.Tensor, ratio: float, keep: torch.Tensor | None = None) -> torch.Tensor:
    """A square of ``ratio`` x the side (rounded: 32 px of 64 at 0.5) at a random place set to zero, cut off where
    it crosses the border, as DiffAugment's ``rand_cutout`` places it (in the images where ``keep`` is False)."""

    def inside(size: int) -> torch.Tensor:
        hole = int(size * ratio + 0.5)
        start = (uniform(x) * (size + 1 - hole % 2)).long() - hole // 2
        index = torch.arange(size, device=x.device).view(1, -1)
        return (index >= start.view(-1, 1)) & (index < start.view(-1, 1) + hole)

    size_y, size_x = x.shape[2], x.shape[3]
    hole = inside(size_y).view(-1, 1, size_y, 1) & inside(size_x).view(-1, 1, 1, size_x)
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
        self.cutout = options.cutout

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
            x = cutout(x, self.cutout)
        return x


class ADAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: float = Field(0.6, gt=0, lt=1, description="the overfitting signal E[sign D(real)] to hold")
    interval: int = Field(4, gt=0, description="critic updates between adjustments of p")
    speed_kimg: float = Field(500.0, gt=0, description="thousands of real images for p to move by 1")
    initial_p: float = Field(0.0, ge=0, le=1)
    max_p: float = Field(1.0, gt=0, le=1)
    schedule_kimg: float | None = Field(None, gt=0, description="instead of adapting: p moves from initial_p to "
                                                                "final_p along a half cosine over this many kimg "
                                                                "(R3GAN)")
    final_p: float = Field(0.0, ge=0, le=1, description="p at the schedule's end")
    xflip: float = Field(1.0, ge=0, description="probability multiplier of each operation, as in stylegan2-ada's "
                                                "AugmentPipe ('bgc': these at 1, cutout 0)")
    rotate90: float = Field(1.0, ge=0)
    xint: float = Field(1.0, ge=0)
    scale: float = Field(1.0, ge=0)
    rotate: float = Field(1.0, ge=0)
    aniso: float = Field(1.0, ge=0)
    xfrac: float = Field(1.0, ge=0)
    brightness: float = Field(1.0, ge=0)
    contrast: float = Field(1.0, ge=0)
    lumaflip: float = Field(1.0, ge=0)
    hue: float = Field(1.0, ge=0)
    saturation: float = Field(1.0, ge=0)
    cutout: float = Field(0.0, ge=0)


LUMA_AXIS = torch.tensor([1.0, 1.0, 1.0]) / 3 ** 0.5
"""The grey axis of RGB, around which ADA's hue rotates and along which its luma flips."""


def matrices(rows: int, device, dtype, size: int) -> torch.Tensor:
    """``rows`` identity matrices of ``size`` x ``size``."""
    return torch.eye(size, device=device, dtype=dtype).repeat(rows, 1, 1)


def rotation_about_axis(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotations by ``theta`` (B,) about the unit ``axis`` (Rodrigues' formula)."""
    cross = torch.zeros(3, 3, device=theta.device, dtype=theta.dtype)
    x, y, z = axis.tolist()
    cross[0, 1], cross[0, 2], cross[1, 0], cross[1, 2], cross[2, 0], cross[2, 1] = -z, y, z, -x, -y, x
    outer = torch.outer(axis, axis)
    eye = torch.eye(3, device=theta.device, dtype=theta.dtype)
    cos, sin = theta.cos().view(-1, 1, 1), theta.sin().view(-1, 1, 1)
    return cos * eye + sin * cross + (1 - cos) * outer


class ADA(Augmentation):
    """stylegan2-ada's augmentation pipeline (its 'bgc' preset by default) with its adaptive probability."""

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
        x = self.geometric(images, p)
        x = self.colour(x, p)
        if self.options.cutout:
            x = cutout(x, 0.5, keep=~(uniform(x) < self.options.cutout * p))
        return x

    def geometric(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Flip, quarter turns, integer translation, then isotropic scaling, rotation, anisotropic scaling,
        rotation again and fractional translation, composed into one inverse affine map (output to input
        coordinates, in units of half the side) and applied by one bilinear resampling with reflected borders."""
        o, batch = self.options, x.shape[0]

        def chosen(multiplier: float, probability=None) -> torch.Tensor:
            return uniform(x) < (multiplier * p if probability is None else probability)

        inverse = matrices(batch, x.device, x.dtype, 3)

        def then(matrix: torch.Tensor) -> None:
            nonlocal inverse
            inverse = inverse @ matrix

        def scaling(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
            m = matrices(batch, x.device, x.dtype, 3)
            m[:, 0, 0], m[:, 1, 1] = sx, sy
            return m

        def rotation(theta: torch.Tensor) -> torch.Tensor:
            m = matrices(batch, x.device, x.dtype, 3)
            m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = theta.cos(), -theta.sin(), theta.sin(), theta.cos()
            return m

        def translation(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
            m = matrices(batch, x.device, x.dtype, 3)
            m[:, 0, 2], m[:, 1, 2] = tx, ty
            return m

        one = torch.ones(batch, device=x.device, dtype=x.dtype)
        flip = torch.where(chosen(o.xflip), (uniform(x) * 2).floor(), 0 * one)
        then(scaling(1 - 2 * flip, one))
        quarter = torch.where(chosen(o.rotate90), (uniform(x) * 4).floor(), 0 * one)
        then(rotation(-torch.pi / 2 * quarter))
        side = x.shape[-1]
        shift = (uniform(x, 2) * 2 - 1) * 0.125
        shift = torch.where(chosen(o.xint).view(-1, 1), (shift * side).round() * 2 / side, 0 * shift)
        then(translation(shift[:, 0], shift[:, 1]))
        factor = torch.where(chosen(o.scale), torch.exp2(0.2 * torch.randn_like(one)), one)
        then(scaling(factor, factor))
        rotate_p = 1 - (1 - o.rotate * p).clamp(0, 1).sqrt()
        angle = torch.where(chosen(0, rotate_p), (uniform(x) * 2 - 1) * torch.pi, 0 * one)
        then(rotation(-angle))
        factor = torch.where(chosen(o.aniso), torch.exp2(0.2 * torch.randn_like(one)), one)
        then(scaling(factor, 1 / factor))
        angle = torch.where(chosen(0, rotate_p), (uniform(x) * 2 - 1) * torch.pi, 0 * one)
        then(rotation(-angle))
        shift = torch.where(chosen(o.xfrac).view(-1, 1), 0.125 * torch.randn_like(uniform(x, 2)) * 2, 0 * shift)
        then(translation(shift[:, 0], shift[:, 1]))
        grid = F.affine_grid(inverse[:, :2, :], list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def colour(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Brightness, contrast (about mid-grey: 0 in [-1, 1]), luma flip, hue rotation and saturation, composed
        into one affine colour map per image."""
        o, batch = self.options, x.shape[0]
        one = torch.ones(batch, device=x.device, dtype=x.dtype)

        def chosen(multiplier: float) -> torch.Tensor:
            return uniform(x) < multiplier * p

        axis = LUMA_AXIS.to(x.device, x.dtype)
        outer = torch.outer(axis, axis)
        eye = torch.eye(3, device=x.device, dtype=x.dtype)
        offset = torch.where(chosen(o.brightness), 0.2 * torch.randn_like(one), 0 * one).view(-1, 1, 1)
        linear = matrices(batch, x.device, x.dtype, 3)
        scale = torch.where(chosen(o.contrast), torch.exp2(0.5 * torch.randn_like(one)), one).view(-1, 1, 1)
        linear, offset = scale * linear, scale * offset
        flip = torch.where(chosen(o.lumaflip), (uniform(x) * 2).floor(), 0 * one).view(-1, 1, 1)
        step = eye - 2 * outer * flip
        linear, offset = step @ linear, step @ offset.expand(-1, 3, 1)
        theta = torch.where(chosen(o.hue), (uniform(x) * 2 - 1) * torch.pi, 0 * one)
        step = rotation_about_axis(axis, theta)
        linear, offset = step @ linear, step @ offset
        factor = torch.where(chosen(o.saturation), torch.exp2(torch.randn_like(one)), one).view(-1, 1, 1)
        step = outer + (eye - outer) * factor
        linear, offset = step @ linear, step @ offset
        flat = x.flatten(2)
        return (linear @ flat + offset).view_as(x)

    def follow_schedule(self, images: int) -> None:
        o = self.options
        if o.schedule_kimg is None:
            return
        progress = min(images / (o.schedule_kimg * 1000), 1.0)
        value = o.initial_p + (o.final_p - o.initial_p) * 0.5 * (1 - math.cos(math.pi * progress))
        if self.p is None:
            self.initial = value
        else:
            self.p.fill_(value)

    def observe(self, batch: Batch) -> None:
        if self.options.schedule_kimg is not None:
            return
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
