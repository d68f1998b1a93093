"""``r3gan``: the simplified modern ResNet of R3GAN (Huang et al. 2025, arXiv 2501.05441) as a ganzoo
architecture, for 16 to 256 px. Meant for the ``rpgan`` loss (relativistic pairing with R1 and R2), with which
the paper trains it without normalisation or other tricks.

- Residual blocks are inverted bottlenecks: a 1x1 convolution widening by ``expansion``, a grouped 3x3
  convolution (groups of ``group_channels``), a 1x1 convolution back; leaky ReLU (0.2) with a learnt bias after
  the first two. No normalisation layer anywhere.
- Initialisation (the paper's "fix-up"): He-normal weights scaled by the activation's gain and by
  L^(-1/4) for L blocks in all (so the residual sum's variance does not grow with depth), and the last layer of
  every block at zero, so each block starts as the identity.
- Resampling as R3GAN's: its [1, 2, 1] filter convolved with [1, 1] (the box of a factor-2 resampling) gives
  a 4x4 [1, 3, 3, 1] x [1, 3, 3, 1] kernel. Upsampling interleaves zeros and filters (gain 4): bilinear
  interpolation with pixel centres at half-pixel offsets, symmetric at the borders (zero padded, as upfirdn2d
  pads); downsampling filters and keeps every second pixel, each output centred between the two inputs it
  replaces. Width changes are 1x1 convolutions on the narrow side.
- The generator starts from a learnt 4x4 basis scaled per channel by a linear map of z, and ends in a 1x1
  convolution to RGB without a squashing nonlinearity (as in R3GAN: its images are near [-1, 1] because the
  data is; sampling clamps). The critic starts with a 1x1 convolution from RGB and ends in a depthwise 4x4
  convolution, a linear score and, for conditions, a projection term <embed(c), h> (R3GAN projects the same
  way). Conditions enter the generator through a linear embedding joined to z.

Widths follow ``model.width``: ``width`` channels at the image resolution, doubling per halving, at most
``max_width x width``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ganzoo import Architecture, ArchitectureSpec, Critic, CriticOutput, Generator, hookimpl

SIZES = (16, 32, 64, 128, 256)
LEAK = 0.2
ACTIVATION_GAIN = math.sqrt(2 / (1 + LEAK ** 2))
FILTER = torch.tensor([1.0, 3.0, 3.0, 1.0])
"""R3GAN's [1, 2, 1] convolved with [1, 1] (its ``CreateLowpassKernel``)."""


class R3GANOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    blocks: int = Field(2, gt=0, description="residual blocks per resolution")
    expansion: int = Field(2, gt=0, description="how much a block's inner layers widen its channels")
    group_channels: int = Field(16, gt=0, description="channels per group of the grouped 3x3 convolution")
    max_width: int = Field(4, gt=0, description="the widest layer, in multiples of model.width")
    condition_embedding: int = Field(32, gt=0, description="width of the generator's condition embedding")


def he_init(layer: nn.Module, gain: float) -> nn.Module:
    """Normal weights with standard deviation gain / sqrt(fan-in) (zero when gain is 0), zero biases."""
    fan_in = layer.weight[0].numel()
    with torch.no_grad():
        if gain:
            layer.weight.normal_(0, gain / math.sqrt(fan_in))
        else:
            layer.weight.zero_()
        if getattr(layer, "bias", None) is not None:
            layer.bias.zero_()
    return layer


class BiasedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1), LEAK)


class ResidualBlock(nn.Module):
    """x + (1x1 widen, act, grouped 3x3, act, 1x1 narrow)(x); the narrowing layer starts at zero."""

    def __init__(self, channels: int, expansion: int, group_channels: int, total_blocks: int):
        super().__init__()
        inner = channels * expansion
        groups = max(1, inner // group_channels)
        while inner % groups:
            groups -= 1
        gain = ACTIVATION_GAIN * total_blocks ** (-1 / 4)
        self.widen = he_init(nn.Conv2d(channels, inner, 1, bias=False), gain)
        self.act1 = BiasedLeakyReLU(inner)
        self.grouped = he_init(nn.Conv2d(inner, inner, 3, padding=1, groups=groups, bias=False), gain)
        self.act2 = BiasedLeakyReLU(inner)
        self.narrow = he_init(nn.Conv2d(inner, channels, 1, bias=False), 0)

    def forward(self, x):
        return x + self.narrow(self.act2(self.grouped(self.act1(self.widen(x)))))


def resampling_kernel(channels: int, scale: float) -> torch.Tensor:
    """The depthwise 4x4 [1, 3, 3, 1] x [1, 3, 3, 1] kernel, normalised to sum to ``scale``."""
    kernel = torch.outer(FILTER, FILTER)
    return (kernel / kernel.sum() * scale).expand(channels, 1, 4, 4).contiguous()


class Upsample(nn.Module):
    """Twice the resolution by bilinear interpolation; a 1x1 convolution first when the width changes."""

    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.project = he_init(nn.Conv2d(inputs, outputs, 1, bias=False), 1.0) if inputs != outputs else None
        self.register_buffer("kernel", resampling_kernel(outputs, 4.0), persistent=False)

    def forward(self, x):
        if self.project is not None:
            x = self.project(x)
        return F.conv_transpose2d(x, self.kernel.to(x.dtype), stride=2, padding=1, groups=x.shape[1])


class Downsample(nn.Module):
    """Half the resolution: the [1, 3, 3, 1] filter at every second pixel; then a 1x1 convolution if the width
    changes."""

    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.register_buffer("kernel", resampling_kernel(inputs, 1.0), persistent=False)
        self.project = he_init(nn.Conv2d(inputs, outputs, 1, bias=False), 1.0) if inputs != outputs else None

    def forward(self, x):
        x = F.conv2d(x, self.kernel.to(x.dtype), stride=2, padding=1, groups=x.shape[1])
        return self.project(x) if self.project is not None else x


def widths_for(spec: ArchitectureSpec, max_width: int) -> list[int]:
    """Channels at 4, 8, ... image_size px."""
    stages = int(math.log2(spec.image_size)) - 2
    return [spec.width * min(2 ** (stages - i), max_width) for i in range(stages + 1)]


class R3GANGenerator(Generator):
    def __init__(self, spec: ArchitectureSpec, options: R3GANOptions):
        super().__init__()
        widths = widths_for(spec, options.max_width)
        total = options.blocks * len(widths)
        self.latent_dim = spec.latent_dim
        embedding = options.condition_embedding if spec.condition_dim else 0
        self.embed = he_init(nn.Linear(spec.condition_dim, embedding, bias=False), 1.0) if embedding else None
        self.basis = nn.Parameter(torch.randn(widths[0], 4, 4))
        self.scale = he_init(nn.Linear(spec.latent_dim + embedding, widths[0], bias=False), 1.0)
        self.stages = nn.ModuleList()
        for index, channels in enumerate(widths):
            layers = [] if index == 0 else [Upsample(widths[index - 1], channels)]
            layers += [ResidualBlock(channels, options.expansion, options.group_channels, total)
                       for _ in range(options.blocks)]
            self.stages.append(nn.Sequential(*layers))
        self.to_rgb = he_init(nn.Conv2d(widths[-1], spec.channels, 1), 1.0)

    def forward(self, z, c=None):
        if self.embed is not None and c is not None:
            z = torch.cat([z, self.embed(c)], dim=1)
        h = self.basis.unsqueeze(0) * self.scale(z)[:, :, None, None]
        for stage in self.stages:
            h = stage(h)
        return self.to_rgb(h)


class R3GANCritic(Critic):
    def __init__(self, spec: ArchitectureSpec, options: R3GANOptions):
        super().__init__()
        widths = list(reversed(widths_for(spec, options.max_width)))  # image resolution first
        total = options.blocks * len(widths)
        self.from_rgb = he_init(nn.Conv2d(spec.channels, widths[0], 1), 1.0)
        self.stages = nn.ModuleList()
        for index, channels in enumerate(widths):
            layers = [ResidualBlock(channels, options.expansion, options.group_channels, total)
                      for _ in range(options.blocks)]
            if index + 1 < len(widths):
                layers.append(Downsample(channels, widths[index + 1]))
            self.stages.append(nn.Sequential(*layers))
        features = widths[-1]
        self.basis = he_init(nn.Conv2d(features, features, 4, groups=features, bias=False), 1.0)
        self.score = he_init(nn.Linear(features, 1), 1.0)
        self.projection = (he_init(nn.Linear(spec.condition_dim, features, bias=False), 1 / math.sqrt(features))
                           if spec.condition_dim else None)
        self.heads = nn.ModuleDict({name: he_init(nn.Linear(features, dim), 1.0)
                                    for name, dim in spec.aux_outputs.items()})

    def forward(self, x, c=None):
        h = self.from_rgb(x)
        for stage in self.stages:
            h = stage(h)
        h = self.basis(h).flatten(1)
        score = self.score(h).squeeze(1)
        if self.projection is not None and c is not None:
            score = score + (self.projection(c) * h).sum(dim=1)
        return CriticOutput(score, {name: head(h) for name, head in self.heads.items()})


class R3GAN(Architecture):
    """R3GAN's normalisation-free residual generator and critic."""

    image_sizes = SIZES
    bounded_output = False  # no final tanh, as in R3GAN: its first images reach about [-3.7, 3.1] at 64 px

    def __init__(self, options: R3GANOptions):
        self.options = options

    def build(self, spec: ArchitectureSpec) -> tuple[R3GANGenerator, R3GANCritic]:
        return R3GANGenerator(spec, self.options), R3GANCritic(spec, self.options)

    def critic_blocks(self, critic: R3GANCritic) -> list[nn.Module]:
        return [critic.from_rgb, *critic.stages]


@hookimpl
def register_architectures(register):
    register("r3gan", R3GAN, options=R3GANOptions,
             description="R3GAN's normalisation-free ResNet: inverted bottlenecks, grouped convolutions (2025)")


@hookimpl
def register_recipes(register):
    register("r3gan+rpgan", settings={
        "options.rpgan.lr_generator": 2e-4, "options.rpgan.lr_critic": 2e-4, "options.rpgan.lr_final": 5e-5,
        "options.rpgan.betas": [0.0, 0.9], "options.rpgan.beta2_final": 0.99, "options.rpgan.r1": 2.0,
        "options.rpgan.r2": 2.0, "options.rpgan.r1_final": 0.2, "options.rpgan.r2_final": 0.2,
        "options.rpgan.schedule_kimg": 20000, "model.ema_kimg": 500, "model.ema_ramp_kimg": 20000},
        source="R3GAN's train.py, its FFHQ-64 preset: every schedule a half cosine over 20,000 kimg")
    register("r3gan+rpgan+ada", settings={
        "options.ada.schedule_kimg": 20000, "options.ada.final_p": 0.3, "options.ada.brightness": 0.5,
        "options.ada.contrast": 0.5, "options.ada.lumaflip": 0.5, "options.ada.hue": 0.5,
        "options.ada.saturation": 0.5, "options.ada.cutout": 1.0},
        source="R3GAN's train.py: a fixed probability schedule (0 to 0.3, FFHQ-64) over the whole ADA pipeline")
