"""``resnet``: the residual generator and critic of SNGAN (Miyato et al. 2018) and BigGAN (Brock et al. 2019),
as a ganzoo architecture, for 16 to 256 px.

Generator: z -> linear -> 4x4 -> residual up-blocks (batch norm, ReLU, nearest 2x upsampling, 3x3 convolutions,
a 1x1 shortcut where the width changes) -> batch norm, ReLU, 3x3 convolution to RGB, tanh. Conditions set each
batch norm's scale and shift (conditional batch norm, de Vries et al. 2017; BigGAN's class-conditional norm
with a linear map of the condition vector instead of an embedding table).

Critic: residual down-blocks (ReLU, 3x3 convolutions, 2x2 average pooling; the first block without the leading
ReLU, SNGAN's "optimised" block) -> ReLU -> sum over positions -> linear score, plus the projection term of
Miyato & Koyama (2018) for conditions, <embed(c), h>. Every convolution and linear layer of the critic is
spectrally normalised (one power iteration per forward pass, in train mode). Extra outputs are linear heads on h.

Widths follow ``model.width`` as dcgan's do: ``width`` channels at the image resolution, doubling at each
halving, at most ``8 x width``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganzoo import Architecture, ArchitectureSpec, Critic, CriticOutput, Generator, hookimpl

SIZES = (16, 32, 64, 128, 256)


class ResNetOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_width: int = Field(8, gt=0, description="the widest layer, in multiples of model.width")
    critic_spectral_norm: bool = Field(True, description="spectral normalisation of every critic layer")


def stage_widths(image_size: int, width: int, max_multiple: int) -> list[int]:
    """Channels at 4 px, 8 px, ... image_size px: ``width`` at the image size, doubling per halving, capped."""
    stages = int(math.log2(image_size)) - 2
    return [width * min(2 ** (stages - i), max_multiple) for i in range(stages + 1)]


class ConditionalNorm(nn.Module):
    """Batch norm whose scale and shift come from the condition, or plain learnt ones without a condition."""

    def __init__(self, channels: int, condition_dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=condition_dim == 0)
        self.gain = nn.Linear(condition_dim, channels) if condition_dim else None
        self.bias = nn.Linear(condition_dim, channels) if condition_dim else None

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        x = self.norm(x)
        if self.gain is None:
            return x
        return x * (1 + self.gain(c)[:, :, None, None]) + self.bias(c)[:, :, None, None]


class UpBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int, condition_dim: int):
        super().__init__()
        self.norm1 = ConditionalNorm(inputs, condition_dim)
        self.conv1 = nn.Conv2d(inputs, outputs, 3, padding=1)
        self.norm2 = ConditionalNorm(outputs, condition_dim)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1)
        self.shortcut = nn.Conv2d(inputs, outputs, 1) if inputs != outputs else nn.Identity()

    def forward(self, x, c):
        h = F.interpolate(F.relu(self.norm1(x, c)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.norm2(self.conv1(h), c)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResNetGenerator(Generator):
    def __init__(self, spec: ArchitectureSpec, widths: list[int]):
        super().__init__()
        self.latent_dim, self.first = spec.latent_dim, widths[0]
        self.linear = nn.Linear(spec.latent_dim, 4 * 4 * widths[0])
        self.blocks = nn.ModuleList([UpBlock(a, b, spec.condition_dim) for a, b in zip(widths, widths[1:])])
        self.norm = nn.BatchNorm2d(widths[-1])
        self.to_rgb = nn.Conv2d(widths[-1], spec.channels, 3, padding=1)

    def forward(self, z, c=None):
        h = self.linear(z).view(-1, self.first, 4, 4)
        for block in self.blocks:
            h = block(h, c)
        return torch.tanh(self.to_rgb(F.relu(self.norm(h))))


class DownBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int, normalise, first: bool):
        super().__init__()
        self.first = first
        self.conv1 = normalise(nn.Conv2d(inputs, outputs, 3, padding=1))
        self.conv2 = normalise(nn.Conv2d(outputs, outputs, 3, padding=1))
        self.shortcut = normalise(nn.Conv2d(inputs, outputs, 1)) if inputs != outputs or first else None

    def forward(self, x):
        h = x if self.first else F.relu(x)
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(h))), 2)
        if self.first:  # pool, then project: the input is the image itself
            return h + self.shortcut(F.avg_pool2d(x, 2))
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        return h + F.avg_pool2d(shortcut, 2)


class ResNetCritic(Critic):
    def __init__(self, spec: ArchitectureSpec, widths: list[int], spectral: bool):
        super().__init__()
        normalise = spectral_norm if spectral else (lambda layer: layer)
        down = list(reversed(widths))  # image resolution first
        self.blocks = nn.ModuleList([DownBlock(spec.channels, down[0], normalise, first=True)] + [
            DownBlock(a, b, normalise, first=False) for a, b in zip(down, down[1:-1])])
        features = down[-2] if len(down) > 1 else down[0]
        self.features = features
        self.score = normalise(nn.Linear(features, 1))
        self.projection = normalise(nn.Linear(spec.condition_dim, features, bias=False)) if spec.condition_dim \
            else None
        self.heads = nn.ModuleDict({name: normalise(nn.Linear(features, dim))
                                    for name, dim in spec.aux_outputs.items()})

    def forward(self, x, c=None):
        h = x
        for block in self.blocks:
            h = block(h)
        h = F.relu(h).sum(dim=(2, 3))
        score = self.score(h).squeeze(1)
        if self.projection is not None and c is not None:
            score = score + (self.projection(c) * h).sum(dim=1)
        return CriticOutput(score, {name: head(h) for name, head in self.heads.items()})


class ResNet(Architecture):
    """SNGAN/BigGAN residual generator and spectrally normalised critic with a projection term."""

    image_sizes = SIZES

    def __init__(self, options: ResNetOptions):
        self.options = options

    def build(self, spec: ArchitectureSpec) -> tuple[ResNetGenerator, ResNetCritic]:
        widths = stage_widths(spec.image_size, spec.width, self.options.max_width)
        generator = ResNetGenerator(spec, widths)
        critic = ResNetCritic(spec, widths, self.options.critic_spectral_norm)
        for module in generator.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in generator.modules():
            if isinstance(module, ConditionalNorm) and module.gain is not None:
                nn.init.zeros_(module.gain.weight), nn.init.zeros_(module.gain.bias)
                nn.init.zeros_(module.bias.weight), nn.init.zeros_(module.bias.bias)
        return generator, critic

    def critic_blocks(self, critic: ResNetCritic) -> list[nn.Module]:
        return list(critic.blocks)


@hookimpl
def register_architectures(register):
    register("resnet", ResNet, options=ResNetOptions,
             description="SNGAN/BigGAN residual networks, spectral norm and a projection term in the critic")
