"""``fastgan``: the generator and critic of FastGAN (Liu et al., ICLR 2021, "Towards Faster and Stabilized GAN
Training for High-fidelity Few-shot Image Synthesis"), and ``recon``, its self-supervised reconstruction
objective, as ganzoo components, for 64 to 1,024 px.

Generator: z, normalised to unit second moment, becomes a 4x4 map (transposed convolution, batch norm, GLU), then
up-blocks double it to the image size: nearest upsampling, 3x3 convolution, batch norm, GLU, and on every other
block a second convolution with noise injection. Skip-layer excitation: the 64, 128, 256 and 512 px maps are
scaled channel by channel by a gate computed from the 4, 8, 16 and 32 px maps (pooled to 4x4, a 4x4 convolution,
Swish, a 1x1 convolution, a sigmoid). Convolutions are spectrally normalised, as in the paper's code. Conditions
join z (the paper's model is unconditional).

Critic: down-blocks halve the image to 8x8 (4x4 strided convolution, batch norm, leaky ReLU, beside an average-
pooled 1x1 shortcut), the 32, 16 and 8 px maps excited by the 256, 128 and 64 px ones as in the generator (the
paper's se_2_16, se_4_32 and se_8_64: at 64 px only the last), then 5x5 patch logits (1x1 convolution, batch
norm, leaky ReLU, 4x4 convolution). A second, small branch reads the image resized to half its side (at most
128 px, the paper's small input) down to 8x8 (a strided convolution, then plain down-blocks) and gives 5x5
logits of its own (a 4x4 convolution). The score is the mean of all 50 patch logits, which are kept for losses
that average over locations (the paper's hinge loss does). Conditions enter by a projection term on the big
branch's pooled features; extra outputs are linear heads on them.

Reconstruction (``recon``): three small decoders read the critic's features back into images at the side the
paper decodes to (128 px, or the image's side when smaller): the big branch's 8x8 map into the whole input, the
small branch's 8x8 map into the whole input, and the quadrant (sample i: quadrant i mod 4) of its 16x16 map into
that quarter of the input. The critic reports, per image, the sum of the three mean absolute errors against its
own (augmented) input under the extra output "recon", and the ``recon`` auxiliary makes the critic minimise them
on real images, summed over the batch as the paper's code sums its distances. The paper measures the distance
with LPIPS; ganzoo uses pixels, since LPIPS needs weights that are not at hand offline.

Not built: the paper's generator also draws its 128 px map as an image (``to_128``), which the small branch
judges on fakes; ganzoo's generator makes one image, so the small branch sees every input resized (as the paper's
critic does for real images). The paper draws one quadrant per batch; ganzoo one per sample.

``model.width`` is the channels at the image resolution; the paper's widths follow from it (8 px maps carry 8x
the 64 px width).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganzoo import Architecture, ArchitectureSpec, Auxiliary, Batch, Critic, CriticOutput, Generator, Terms, hookimpl

SIZES = (64, 128, 256, 512, 1024)
MULTIPLIERS = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125}
"""FastGAN's channels at each resolution, in multiples of its base width."""
RECON_SIZE = 128
"""Side of the reconstructions the critic's decoders make (the image's side when smaller)."""
SMALL_SIZE = 128
"""The largest side of the small branch's input (half the image's side when smaller)."""


def conv(*args, **kwargs) -> nn.Module:
    return spectral_norm(nn.Conv2d(*args, **kwargs))


def channels(image_size: int, width: int) -> dict[int, int]:
    """Channels at each resolution up to ``image_size``, ``width`` at the image size itself."""
    base = width / MULTIPLIERS[image_size]
    return {size: max(int(base * multiple), 4) for size, multiple in MULTIPLIERS.items() if size <= image_size}


class GLU(nn.Module):
    def forward(self, x):
        half = x.shape[1] // 2
        return x[:, :half] * torch.sigmoid(x[:, half:])


class NoiseInjection(nn.Module):
    """Adds per-pixel Gaussian noise with a learnt strength (zero at start): drawn afresh in training; in eval
    mode one fixed map per size (seeded by it, kept out of checkpoints), so a latent always gives one cover, as
    stylegan2-ada's 'const' noise does. FastGAN's reference draws it afresh in eval too."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.fixed: dict[tuple, torch.Tensor] = {}

    def forward(self, x):
        if self.training:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        else:
            key = (x.shape[2], x.shape[3], x.device, x.dtype)
            if key not in self.fixed:
                with torch.inference_mode(False):  # an ordinary tensor, whatever mode eval first ran in
                    self.fixed[key] = torch.randn(1, 1, *key[:2], generator=torch.Generator().manual_seed(
                        key[0])).to(x.device, x.dtype)
            noise = self.fixed[key]
        return x + self.weight * noise


def up_block(inputs: int, outputs: int, compound: bool) -> nn.Sequential:
    layers = [nn.Upsample(scale_factor=2, mode="nearest"), conv(inputs, outputs * 2, 3, 1, 1, bias=False)]
    if compound:
        layers += [NoiseInjection(), nn.BatchNorm2d(outputs * 2), GLU(),
                   conv(outputs, outputs * 2, 3, 1, 1, bias=False), NoiseInjection()]
    return nn.Sequential(*layers, nn.BatchNorm2d(outputs * 2), GLU())


class Excitation(nn.Module):
    """Skip-layer excitation: a channel gate for a large map computed from a small one."""

    def __init__(self, small: int, large: int):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(4), conv(small, large, 4, 1, 0, bias=False), nn.SiLU(),
                                  conv(large, large, 1, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, small, large):
        return large * self.gate(small)


class FastGANGenerator(Generator):
    def __init__(self, spec: ArchitectureSpec):
        super().__init__()
        self.latent_dim, self.size = spec.latent_dim, spec.image_size
        width = channels(spec.image_size, spec.width)
        self.initial = nn.Sequential(
            spectral_norm(nn.ConvTranspose2d(spec.latent_dim + spec.condition_dim, width[4] * 2, 4, 1, 0, bias=False)),
            nn.BatchNorm2d(width[4] * 2), GLU())
        sizes = [size for size in width if 8 <= size <= spec.image_size]
        self.ups = nn.ModuleDict({str(size): up_block(width[size // 2], width[size], compound=size in (8, 32, 128, 512))
                                  for size in sizes})
        self.excitations = nn.ModuleDict({str(size): Excitation(width[size // 16], width[size])
                                          for size in sizes if size >= 64})
        self.to_rgb = conv(width[spec.image_size], spec.channels, 3, 1, 1)

    def forward(self, z, c=None):
        z = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        if c is not None:
            z = torch.cat([z, c], dim=1)
        maps = {4: self.initial(z[:, :, None, None])}
        size = 4
        while size < self.size:
            size *= 2
            h = self.ups[str(size)](maps[size // 2])
            maps[size] = self.excitations[str(size)](maps[size // 16], h) if str(size) in self.excitations else h
        return torch.tanh(self.to_rgb(maps[self.size]))


class DownBlock(nn.Module):
    """Halves a map: a 4x4 strided convolution path beside an average-pooled 1x1 shortcut, averaged."""

    def __init__(self, inputs: int, outputs: int, norm):
        super().__init__()
        self.main = nn.Sequential(conv(inputs, outputs, 4, 2, 1, bias=False), norm(outputs), nn.LeakyReLU(0.2),
                                  conv(outputs, outputs, 3, 1, 1, bias=False), norm(outputs), nn.LeakyReLU(0.2))
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), conv(inputs, outputs, 1, 1, 0, bias=False), norm(outputs),
                                      nn.LeakyReLU(0.2))

    def forward(self, x):
        return (self.main(x) + self.shortcut(x)) / 2


def decoder(inputs: int, steps: int) -> nn.Sequential:
    """A small decoder: ``steps`` doublings (upsample, 3x3 convolution, batch norm, GLU) to an RGB image."""
    layers, width = [], inputs
    for _ in range(steps):
        narrower = max(width // 2, 8)
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), conv(width, narrower * 2, 3, 1, 1, bias=False),
                   nn.BatchNorm2d(narrower * 2), GLU()]
        width = narrower
    return nn.Sequential(*layers, conv(width, 3, 3, 1, 1), nn.Tanh())


class SmallBranch(nn.Module):
    """The critic's second look: the image at ``size`` px, a strided convolution and plain down-blocks (4x4
    strided convolution, batch norm, leaky ReLU) to 8x8, then 5x5 logits."""

    def __init__(self, size: int, width: dict[int, int], norm):
        super().__init__()
        self.size = size
        layers = [conv(3, width[size], 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
        side = size // 2
        while side > 8:
            layers += [conv(width[side * 2], width[side], 4, 2, 1, bias=False), norm(width[side]), nn.LeakyReLU(0.2)]
            side //= 2
        self.main = nn.Sequential(*layers)
        self.channels = width[16]
        self.logits = conv(self.channels, 1, 4, 1, 0, bias=False)

    def forward(self, x):
        """(the 8x8 map, its 25 logits per image)."""
        h = self.main(F.interpolate(x, size=self.size, mode="area"))
        return h, self.logits(h).flatten(1)


class FastGANCritic(Critic):
    def __init__(self, spec: ArchitectureSpec):
        super().__init__()
        width = channels(spec.image_size, spec.width)

        def norm(features):
            return nn.BatchNorm2d(features) if spec.critic_batchnorm else nn.Identity()

        self.size = spec.image_size
        self.stem = nn.Sequential(conv(spec.channels, width[spec.image_size], 3, 1, 1, bias=False), nn.LeakyReLU(0.2))
        self.downs = nn.ModuleDict({str(size): DownBlock(width[size * 2], width[size], norm)
                                    for size in width if 8 <= size < spec.image_size})
        self.excitations = nn.ModuleDict({str(size): Excitation(width[size * 8], width[size])
                                          for size in (8, 16, 32) if size * 8 <= spec.image_size})
        self.logits = nn.Sequential(conv(width[8], width[8], 1, 1, 0, bias=False), norm(width[8]), nn.LeakyReLU(0.2),
                                    conv(width[8], 1, 4, 1, 0, bias=False))
        self.small = SmallBranch(min(SMALL_SIZE, spec.image_size // 2), width, norm)
        self.projection = nn.Linear(spec.condition_dim, width[8], bias=False) if spec.condition_dim else None
        self.heads = nn.ModuleDict({name: nn.Linear(width[8], dim) for name, dim in spec.aux_outputs.items()
                                    if name != "recon"})
        self.reconstructs = "recon" in spec.aux_outputs
        if self.reconstructs:
            self.recon_size = min(RECON_SIZE, spec.image_size)
            steps = int(math.log2(self.recon_size // 8))
            self.decode_whole = decoder(width[8], steps)
            self.decode_small = decoder(self.small.channels, steps)
            self.decode_part = decoder(width[16], steps)

    def forward(self, x, c=None):
        maps = {self.size: self.stem(x)}
        size = self.size
        while size > 8:
            size //= 2
            h = self.downs[str(size)](maps[size * 2])
            maps[size] = self.excitations[str(size)](maps[size * 8], h) if str(size) in self.excitations else h
        small, small_logits = self.small(x)
        patches = torch.cat([self.logits(maps[8]).flatten(1), small_logits], dim=1)
        pooled = maps[8].sum(dim=(2, 3))
        score = patches.mean(dim=1)
        if self.projection is not None and c is not None:
            projected = (self.projection(c) * pooled).sum(dim=1)
            score, patches = score + projected, patches + projected[:, None]
        aux = {name: head(pooled) for name, head in self.heads.items()}
        if self.reconstructs:
            aux["recon"] = self.reconstruction_error(x, maps, small)
        return CriticOutput(score, aux, patches)

    def reconstruction_error(self, x: torch.Tensor, maps: dict[int, torch.Tensor], small: torch.Tensor) -> torch.Tensor:
        """Per image (B, 1): the mean absolute errors of the whole input decoded from the big and the small
        branch, and of one quadrant (sample i: quadrant i mod 4) decoded from the 16x16 map, each at
        ``recon_size`` px against the input itself, summed."""
        whole = F.interpolate(x, size=self.recon_size, mode="area")
        error = (self.decode_whole(maps[8]) - whole).abs().flatten(1).mean(dim=1)
        error = error + (self.decode_small(small) - whole).abs().flatten(1).mean(dim=1)
        quadrant = torch.arange(x.shape[0], device=x.device) % 4
        rows, cols = quadrant // 2, quadrant % 2
        part_maps = torch.stack([maps[16][i, :, 8 * r:8 * r + 8, 8 * k:8 * k + 8]
                                 for i, (r, k) in enumerate(zip(rows.tolist(), cols.tolist()))])
        half = x.shape[2] // 2
        part_images = torch.stack([x[i, :, half * r:half * r + half, half * k:half * k + half]
                                   for i, (r, k) in enumerate(zip(rows.tolist(), cols.tolist()))])
        target = F.interpolate(part_images, size=self.recon_size, mode="bilinear", align_corners=False,
                               antialias=True)
        error = error + (self.decode_part(part_maps) - target).abs().flatten(1).mean(dim=1)
        return error[:, None]

    def blocks(self) -> list[nn.Module]:
        return [self.stem, *self.downs.values()]


class FastGANOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FastGAN(Architecture):
    """FastGAN's skip-layer-excitation generator and its critic (Liu et al. 2021)."""

    image_sizes = SIZES

    def __init__(self, options: FastGANOptions):
        self.options = options

    def build(self, spec: ArchitectureSpec) -> tuple[FastGANGenerator, FastGANCritic]:
        generator, critic = FastGANGenerator(spec), FastGANCritic(spec)
        for module in (*generator.modules(), *critic.modules()):
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)
        return generator, critic

    def critic_blocks(self, critic: FastGANCritic) -> list[nn.Module]:
        return critic.blocks()


class ReconOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weight: float = Field(1.0, ge=0, description="weight of the reconstruction errors, summed over the batch as "
                                                 "FastGAN's code sums them, in the critic's terms")


class Reconstruction(Auxiliary):
    """FastGAN's self-supervised critic regulariser: the critic reconstructs real inputs from its own features.
    Needs a critic that reports the error under the extra output "recon" (``fastgan``'s)."""

    def __init__(self, options: ReconOptions):
        self.weight = options.weight

    def outputs(self, conditions) -> dict[str, int]:
        return {"recon": 1}

    def critic_terms(self, batch: Batch) -> Terms:
        return {"recon": self.weight * batch.real_out.aux["recon"].sum()}

    def generator_terms(self, batch: Batch) -> Terms:
        return {}


@hookimpl
def register_architectures(register):
    register("fastgan", FastGAN, options=FastGANOptions, default=range(64, 1025),
             description="FastGAN (Liu et al. 2021): skip-layer excitation generator and its critic, 64-1,024 px")


@hookimpl
def register_auxiliaries(register):
    register("recon", Reconstruction, options=ReconOptions,
             description="FastGAN's self-supervised reconstruction of real inputs by the critic's decoders")


@hookimpl
def register_recipes(register):
    register("fastgan+hinge+recon", settings={"options.hinge.n_critic": 1, "options.hinge.margin": [0.8, 1.0],
                                              "options.hinge.lr_generator": 2e-4, "options.hinge.lr_critic": 2e-4,
                                              "options.hinge.betas": [0.5, 0.999], "model.ema_decay": 0.999},
             cpu={"model.width": 16, "schedule.batch_size": 16},
             source="FastGAN's train.py: hinge with a margin in [0.8, 1], Adam(2e-4, betas (0.5, 0.999)); on a CPU "
                    "the 64 px leaderboard's")
    register("fastgan+recon+diffaug", settings={"options.diffaug.policy": ["color", "translation"]},
             source="FastGAN's train.py: DiffAugment's colour and translation")
