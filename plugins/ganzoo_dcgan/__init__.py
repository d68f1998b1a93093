"""DCGAN generator and critic (Radford et al. 2015) for 16 to 256 px, as a ganzoo architecture plugin.

Conditions enter the generator by concatenation with z (default) or conditional batch norm, and the critic by a
projection term (Miyato & Koyama 2018): score = linear(h) + <embed(c), h>. Auxiliary outputs are linear heads on h.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ganzoo import Architecture, ArchitectureSpec, Critic, CriticOutput, GanzooError, Generator, hookimpl

SUPPORTED_SIZES = (16, 32, 64, 128, 256)


class DCGANOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    critic_norm: Literal["auto", "batch", "layer", "none"] = Field(
        "auto", description="auto: batch norm unless the loss forbids it, then none")
    condition_input: Literal["concat", "cbn"] = Field(
        "concat", description="how conditions enter the generator: joined to z, or conditional batch norm")


def _stages(image_size: int) -> int:
    return int(math.log2(image_size)) - 2


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose per-channel scale and shift are predicted from the condition (de Vries et al. 2017)."""

    def __init__(self, channels: int, condition_dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.scale = nn.Linear(condition_dim, channels)
        self.shift = nn.Linear(condition_dim, channels)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        scale = 1 + self.scale(c)[:, :, None, None]
        return self.norm(x) * scale + self.shift(c)[:, :, None, None]


class DCGANGenerator(Generator):
    """Transposed-convolution stages, 4 px doubling to the image size. ``condition_input`` is ``concat`` (the
    condition joins z at the input) or ``cbn`` (it sets the scale and shift of every batch norm)."""

    def __init__(self, latent_dim: int, condition_dim: int, image_size: int, width: int, channels: int = 3,
                 condition_input: str = "concat"):
        super().__init__()
        self.latent_dim = latent_dim
        self.uses_cbn = condition_input == "cbn" and condition_dim > 0
        stages = _stages(image_size)
        widths = [width * 2 ** i for i in reversed(range(stages))]
        input_dim = latent_dim if self.uses_cbn else latent_dim + condition_dim
        self.convs = nn.ModuleList([nn.ConvTranspose2d(input_dim, widths[0], 4, 1, 0, bias=False)] + [
            nn.ConvTranspose2d(wide, narrow, 4, 2, 1, bias=False) for wide, narrow in zip(widths, widths[1:])])
        self.norms = nn.ModuleList([ConditionalBatchNorm2d(w, condition_dim) if self.uses_cbn else nn.BatchNorm2d(w)
                                    for w in widths])
        self.to_rgb = nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if c is not None and not self.uses_cbn:
            z = torch.cat([z, c], dim=1)
        h = z[:, :, None, None]
        for conv, norm in zip(self.convs, self.norms):
            h = conv(h)
            h = torch.relu(norm(h, c) if self.uses_cbn else norm(h))
        return torch.tanh(self.to_rgb(h))


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


class DCGANCritic(Critic):
    def __init__(self, image_size: int, width: int, norm: str, condition_dim: int, aux_outputs: dict[str, int],
                 channels: int = 3):
        super().__init__()
        stages = _stages(image_size)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        current = width
        for _ in range(stages - 1):
            layers += [nn.Conv2d(current, current * 2, 4, 2, 1, bias=norm == "none"),
                       _norm(norm, current * 2), nn.LeakyReLU(0.2, True)]
            current *= 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        feature_dim = current * 4 * 4
        self.score = nn.Linear(feature_dim, 1)
        self.projection = nn.Linear(condition_dim, feature_dim, bias=False) if condition_dim else None
        self.heads = nn.ModuleDict({name: nn.Linear(feature_dim, dim) for name, dim in aux_outputs.items()})

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> CriticOutput:
        h = self.features(x)
        score = self.score(h).squeeze(1)
        if self.projection is not None and c is not None:
            score = score + (self.projection(c) * h).sum(dim=1)
        return CriticOutput(score=score, aux={name: head(h) for name, head in self.heads.items()})

    def blocks(self) -> list[nn.Module]:
        """The convolution blocks from the input on (each a convolution with its norm and activation)."""
        layers = list(self.features)
        starts = [i for i, layer in enumerate(layers) if isinstance(layer, nn.Conv2d)]
        return [nn.Sequential(*layers[a:b]) for a, b in zip(starts, starts[1:] + [len(layers) - 1])]


class DCGAN(Architecture):
    """DCGAN generator and critic (Radford et al. 2015) with a projection term for conditions."""

    image_sizes = SUPPORTED_SIZES

    def __init__(self, options: DCGANOptions):
        self.options = options

    def build(self, spec: ArchitectureSpec) -> tuple[DCGANGenerator, DCGANCritic]:
        norm = self.options.critic_norm
        if norm == "auto":
            norm = "batch" if spec.critic_batchnorm else "none"
        elif norm == "batch" and not spec.critic_batchnorm:
            raise GanzooError("invalid config: options.dcgan.critic_norm: batch norm in the critic is not allowed "
                              "with this loss (its gradient penalty is per sample); use none or layer")
        generator = DCGANGenerator(spec.latent_dim, spec.condition_dim, spec.image_size, spec.width, spec.channels,
                                   self.options.condition_input)
        critic = DCGANCritic(spec.image_size, spec.width, norm, spec.condition_dim, spec.aux_outputs, spec.channels)
        for module in (*generator.modules(), *critic.modules()):
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        return generator, critic

    def critic_blocks(self, critic: DCGANCritic) -> list[nn.Module]:
        return critic.blocks()


@hookimpl
def register_architectures(register):
    register("dcgan", DCGAN, options=DCGANOptions, default=range(8, 64))


@hookimpl
def register_recipes(register):
    register("dcgan+ns+diffaug", leaves_noise={32: 500},
             source="benchmarks/RESULTS.md, the noise phase on 138 real covers at the default settings")
