"""``stylegan2``: StyleGAN2's generator and residual critic (Karras et al., CVPR 2020, "Analyzing and Improving the
Image Quality of StyleGAN"; with ADA, NeurIPS 2020), as ganzoo components, for 32 to 1,024 px.

Generator. A mapping network turns z (normalised to unit second moment; conditions embedded, normalised and
joined to it) into w through ``mapping_layers`` fully connected layers whose learning rate is scaled by
``mapping_lr`` (0.01 in the paper); the synthesis network starts from a learnt 4x4 constant and, at every
resolution, runs two modulated 3x3 convolutions (the first upsampling), each followed by per-pixel noise of a
learnt strength (zero at first), a bias and a leaky ReLU, and adds its own RGB image (a modulated 1x1 convolution
without demodulation) to the upsampled sum of the coarser ones (the "skip" generator). Modulation scales each
input channel of a convolution's weight by a style, an affine map of w (its bias starts at 1); demodulation
then rescales each output channel to unit norm, so unit-variance inputs give unit-variance outputs whatever the
style. Every layer uses equalised learning rates (weights drawn N(0, 1) and scaled at run time by
1/sqrt(fan in)). The generator keeps a running average of w (``w_average``, decay 0.995 over training batches):
truncation pulls w toward it. In training, ``style_mixing`` of the images (0.9, as the paper) take a second
latent's w from a random layer on, so that layers do not rely on their neighbours' styles.

Critic (the paper's "resnet" critic): a 1x1 convolution from RGB, then residual blocks halving the resolution
(two 3x3 convolutions, the second strided after a blur, beside a blurred, strided 1x1 skip, summed and scaled by
sqrt(1/2)) down to 4x4; then the minibatch standard deviation (groups of up to 4, one feature), a 3x3
convolution, a fully connected layer and the score. Conditions enter by a projection of their embedding onto the
last features (as the paper's cmap); extra outputs are linear heads on them.

Path-length regularisation (``pl``, an auxiliary for any generator with a W space): every ``interval`` generator
steps, for a batch of fresh latents (``batch_shrink`` times smaller), the length of J_w^T y (the images' Jacobian
with respect to w, times image-sized Gaussian noise scaled by 1/sqrt(pixels)) is pulled toward its running mean
(decay 0.01, kept in the auxiliary's state, so resume is exact), weighted by ``weight`` times ``interval``.

Deviations: resampling is a [1, 3, 3, 1] blur around nearest upsampling or stride-2 sampling rather than the
paper's fused, padded FIR kernels; no clamping of activations (the paper clamps at 256 in mixed precision only).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ganzoo import (Architecture, ArchitectureSpec, Auxiliary, Batch, Critic, CriticOutput, GanzooError,
                    MappedGenerator, Terms, hookimpl)

SIZES = tuple(2 ** k for k in range(5, 11))
LEAKY_GAIN = math.sqrt(2)
W_AVERAGE_DECAY = 0.995
BLUR = (1.0, 3.0, 3.0, 1.0)


class StyleGAN2Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mapping_layers: int = Field(8, ge=1, le=16, description="depth of the mapping network")
    mapping_lr: float = Field(0.01, gt=0, le=1, description="learning-rate multiplier of the mapping network")
    w_dim: int | None = Field(None, gt=0, description="size of w [default: the latent size]")
    max_channels: int | None = Field(None, gt=0, description="the most channels at any resolution [default: 8x "
                                                             "model.width]")
    style_mixing: float = Field(0.9, ge=0, le=1, description="share of training images drawn from two latents, "
                                                             "the second's w from a random layer on")


def normalise(x: torch.Tensor) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()


class EqualLinear(nn.Module):
    """A fully connected layer with an equalised learning rate: its weight is drawn N(0, 1) / ``lr`` and used
    times ``lr`` / sqrt(fan in), its bias used times ``lr``, so Adam's step on it is scaled by ``lr``."""

    def __init__(self, inputs: int, outputs: int, bias_init: float = 0.0, lr: float = 1.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(outputs, inputs) / lr)
        self.bias = nn.Parameter(torch.full((outputs,), float(bias_init) / lr))
        self.scale, self.lr, self.activate = lr / math.sqrt(inputs), lr, activate

    def forward(self, x):
        x = F.linear(x, self.weight * self.scale, self.bias * self.lr)
        return F.leaky_relu(x, 0.2) * LEAKY_GAIN if self.activate else x


class Mapping(nn.Module):
    """z (and the condition vector) to w."""

    def __init__(self, latent_dim: int, condition_dim: int, w_dim: int, layers: int, lr: float):
        super().__init__()
        self.embed = EqualLinear(condition_dim, w_dim) if condition_dim else None
        inputs = latent_dim + (w_dim if condition_dim else 0)
        self.layers = nn.Sequential(*[EqualLinear(inputs if i == 0 else w_dim, w_dim, lr=lr, activate=True)
                                      for i in range(layers)])

    def forward(self, z, c=None):
        x = normalise(z)
        if self.embed is not None and c is not None:
            x = torch.cat([x, normalise(self.embed(c))], dim=1)
        return self.layers(x)


def blur_kernel(device=None) -> torch.Tensor:
    k = torch.tensor(BLUR, device=device)
    k = k[:, None] * k[None, :]
    return k / k.sum()


def blur(x: torch.Tensor) -> torch.Tensor:
    """The [1, 3, 3, 1] filter (normalised), per channel, keeping the size (reflected borders)."""
    channels = x.shape[1]
    kernel = blur_kernel(x.device).to(x.dtype)[None, None].expand(channels, 1, 4, 4)
    return F.conv2d(F.pad(x, (1, 2, 1, 2), mode="reflect"), kernel, groups=channels)


def upsample(x: torch.Tensor) -> torch.Tensor:
    return blur(F.interpolate(x, scale_factor=2, mode="nearest"))


def downsample(x: torch.Tensor) -> torch.Tensor:
    return blur(x)[:, :, ::2, ::2]


def modulated_conv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool) -> torch.Tensor:
    """Each sample's convolution with ``weight`` (out, in, k, k) whose input channels are scaled by its styles
    (B, in), its output channels rescaled to unit norm when ``demodulate``. Computed as stylegan2-ada does when
    it does not fuse: the styles scale the input, one convolution shared by the batch, then each sample's
    demodulation coefficients scale the output (the same numbers, and much faster on a CPU than a grouped
    convolution of per-sample weights)."""
    out = F.conv2d(x * styles[:, :, None, None], weight, padding=weight.shape[-1] // 2)
    if demodulate:
        coefficients = (styles.square() @ weight.square().sum(dim=(2, 3)).T + 1e-8).rsqrt()
        out = out * coefficients[:, :, None, None]
    return out


class StyledConv(nn.Module):
    """A modulated convolution (upsampling first when ``up``), noise of a learnt strength, bias, leaky ReLU. The
    noise is drawn afresh in training and fixed in eval mode (stylegan2-ada's 'const' noise), so a latent always
    gives the same cover."""

    def __init__(self, inputs: int, outputs: int, w_dim: int, resolution: int, kernel: int = 3, up: bool = False,
                 demodulate: bool = True, activate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(outputs, inputs, kernel, kernel))
        self.scale = 1 / math.sqrt(inputs * kernel * kernel)
        self.affine = EqualLinear(w_dim, inputs, bias_init=1.0)
        self.bias = nn.Parameter(torch.zeros(outputs))
        self.noise_strength = nn.Parameter(torch.zeros(())) if activate else None
        if activate:
            self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution,
                                                            generator=torch.Generator().manual_seed(resolution)))
        self.up, self.demodulate, self.activate = up, demodulate, activate

    def forward(self, x, w):
        if self.up:
            x = upsample(x)
        styles = self.affine(w)
        if not self.demodulate:
            styles = styles * self.scale
        x = modulated_conv(x, self.weight * (self.scale if self.demodulate else 1.0), styles, self.demodulate)
        if self.noise_strength is not None:
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype) if self.training \
                else self.noise_const.to(x.dtype)
            x = x + self.noise_strength * noise
        x = x + self.bias[None, :, None, None]
        return F.leaky_relu(x, 0.2) * LEAKY_GAIN if self.activate else x


def channels_at(size: int, width: int, max_channels: int, image_size: int) -> int:
    """Channels at ``size``: ``width`` at the image size, doubling at each halving, at most ``max_channels``."""
    return min(width * image_size // size, max_channels)


class StyleGAN2Generator(MappedGenerator):
    def __init__(self, spec: ArchitectureSpec, options: StyleGAN2Options):
        super().__init__()
        self.latent_dim, self.size = spec.latent_dim, spec.image_size
        self.w_dim = options.w_dim or spec.latent_dim
        top = options.max_channels or spec.width * 8
        width = {4 * 2 ** i: channels_at(4 * 2 ** i, spec.width, top, spec.image_size)
                 for i in range(int(math.log2(spec.image_size)) - 1)}
        self.mapper = Mapping(spec.latent_dim, spec.condition_dim, self.w_dim, options.mapping_layers,
                              options.mapping_lr)
        self.register_buffer("w_average", torch.zeros(self.w_dim))
        self.constant = nn.Parameter(torch.randn(width[4], 4, 4))
        self.first = StyledConv(width[4], width[4], self.w_dim, 4)
        self.first_rgb = StyledConv(width[4], spec.channels, self.w_dim, 4, kernel=1, demodulate=False,
                                    activate=False)
        self.blocks = nn.ModuleList()
        for size in list(width)[1:]:
            self.blocks.append(nn.ModuleList([
                StyledConv(width[size // 2], width[size], self.w_dim, size, up=True),
                StyledConv(width[size], width[size], self.w_dim, size),
                StyledConv(width[size], spec.channels, self.w_dim, size, kernel=1, demodulate=False,
                           activate=False)]))
        self.layers = 2 + 3 * len(self.blocks)
        """How many w each image takes, one per styled layer (style mixing gives them different ones)."""
        self.style_mixing = options.style_mixing

    def mapping(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.mapper(z, c)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        w = self.mapping(z, c)
        if not self.training:
            return self.synthesis(w)
        with torch.no_grad():
            self.w_average.copy_(w.detach().float().mean(dim=0).lerp(self.w_average, W_AVERAGE_DECAY))
        return self.synthesis(self.mixed(w, z, c) if self.style_mixing else w)

    def mixed(self, w: torch.Tensor, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """(B, layers, w_dim): ``w`` for every layer, but for a ``style_mixing`` share of the images a second
        latent's w from a random layer on."""
        ws = w[:, None].repeat(1, self.layers, 1)
        second = self.mapping(torch.randn_like(z), c)
        cutoff = torch.randint(1, self.layers, (len(w), 1), device=w.device)
        cutoff = torch.where(torch.rand(len(w), 1, device=w.device) < self.style_mixing, cutoff, self.layers)
        later = torch.arange(self.layers, device=w.device)[None] >= cutoff
        return torch.where(later[..., None], second[:, None], ws)

    def synthesis(self, w: torch.Tensor) -> torch.Tensor:
        """Images from w: (B, w_dim), one w for every layer, or (B, layers, w_dim), a w per layer."""
        ws = w[:, None].expand(-1, self.layers, -1) if w.dim() == 2 else w
        x = self.first(self.constant[None].expand(len(ws), -1, -1, -1), ws[:, 0])
        image = self.first_rgb(x, ws[:, 1])
        for i, (conv_up, conv, to_rgb) in enumerate(self.blocks):
            x = conv(conv_up(x, ws[:, 2 + 3 * i]), ws[:, 3 + 3 * i])
            image = upsample(image) + to_rgb(x, ws[:, 4 + 3 * i])
        return image


class EqualConv(nn.Module):
    """A convolution with an equalised learning rate, optionally blurred and strided (``down``), leaky ReLU."""

    def __init__(self, inputs: int, outputs: int, kernel: int, down: bool = False, bias: bool = True,
                 activate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(outputs, inputs, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(outputs)) if bias else None
        self.scale, self.down, self.activate = 1 / math.sqrt(inputs * kernel * kernel), down, activate

    def forward(self, x):
        if self.down:
            x = blur(x)
        x = F.conv2d(x, self.weight * self.scale, self.bias, stride=2 if self.down else 1,
                     padding=self.weight.shape[-1] // 2 if not self.down else (self.weight.shape[-1] - 1) // 2)
        return F.leaky_relu(x, 0.2) * LEAKY_GAIN if self.activate else x


class CriticBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.conv = EqualConv(inputs, inputs, 3)
        self.down = EqualConv(inputs, outputs, 3, down=True)
        self.skip = EqualConv(inputs, outputs, 1, down=True, bias=False, activate=False)

    def forward(self, x):
        return (self.skip(x) + self.down(self.conv(x))) * math.sqrt(0.5)


def minibatch_std(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """``x`` with one more channel: the standard deviation of each feature across a group of samples, averaged
    over features and locations, for every sample of the group."""
    batch, channels, height, width = x.shape
    group = min(group, batch)
    while batch % group:
        group -= 1
    y = x.reshape(group, -1, channels, height, width).float()
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))
    y = y.to(x.dtype).reshape(-1, 1, 1, 1).repeat(group, 1, height, width)
    return torch.cat([x, y], dim=1)


class StyleGAN2Critic(Critic):
    def __init__(self, spec: ArchitectureSpec, options: StyleGAN2Options):
        super().__init__()
        top = options.max_channels or spec.width * 8
        sizes = [spec.image_size // 2 ** i for i in range(int(math.log2(spec.image_size)) - 1)]
        width = {size: channels_at(size, spec.width, top, spec.image_size) for size in sizes}
        self.from_rgb = EqualConv(spec.channels, width[spec.image_size], 1)
        self.blocks = nn.Sequential(*[CriticBlock(width[size], width[size // 2]) for size in sizes[:-1]])
        self.conv = EqualConv(width[4] + 1, width[4], 3)
        self.dense = EqualLinear(width[4] * 16, width[4], activate=True)
        self.score = EqualLinear(width[4], 1)
        self.projection = EqualLinear(spec.condition_dim, width[4]) if spec.condition_dim else None
        self.heads = nn.ModuleDict({name: nn.Linear(width[4], dim) for name, dim in spec.aux_outputs.items()})

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> CriticOutput:
        h = self.dense(self.conv(minibatch_std(self.blocks(self.from_rgb(x)))).flatten(1))
        score = self.score(h)[:, 0]
        if self.projection is not None and c is not None:
            score = score + (self.projection(c) * h).sum(dim=1) / math.sqrt(h.shape[1])
        return CriticOutput(score, {name: head(h) for name, head in self.heads.items()})


class StyleGAN2(Architecture):
    """StyleGAN2's mapped, modulated generator and its residual critic (Karras et al. 2020)."""

    image_sizes = SIZES
    bounded_output = False

    def __init__(self, options: StyleGAN2Options):
        self.options = options

    def build(self, spec: ArchitectureSpec) -> tuple[StyleGAN2Generator, StyleGAN2Critic]:
        return StyleGAN2Generator(spec, self.options), StyleGAN2Critic(spec, self.options)

    def critic_blocks(self, critic: StyleGAN2Critic) -> list[nn.Module]:
        return [critic.from_rgb, *critic.blocks]


class PathLengthOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weight: float = Field(2.0, ge=0, description="weight of the penalty (the paper's 2)")
    interval: int = Field(4, gt=0, description="apply it every k generator steps, scaled by k (lazy)")
    decay: float = Field(0.01, gt=0, le=1, description="how fast the running mean of path lengths follows them")
    batch_shrink: int = Field(2, gt=0, description="the penalty's batch is the training batch divided by this")


class PathLength(Auxiliary):
    """StyleGAN2's path-length regularisation: a step in W moves the image by the same amount wherever it is."""

    def __init__(self, options: PathLengthOptions):
        self.options = options
        self.mean = 0.0

    def outputs(self, conditions) -> dict[str, int]:
        return {}

    def critic_terms(self, batch: Batch) -> Terms:
        return {}

    def generator_terms(self, batch: Batch) -> Terms:
        o = self.options
        if batch.step % o.interval:
            return {}
        generator = batch.generator
        if not isinstance(generator, MappedGenerator):
            raise GanzooError("pl regularises a generator with a W space (stylegan2); this one has none")
        count = max(1, batch.fake.shape[0] // o.batch_shrink)
        z = torch.randn(count, generator.latent_dim, device=batch.fake.device)
        condition = batch.condition[:count] if batch.condition is not None else None
        ws = generator.mapping(z, condition)[:, None].repeat(1, generator.layers, 1)
        images = generator.synthesis(ws).float()
        noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
        (gradient,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
        lengths = gradient.float().square().sum(dim=2).mean(dim=1).sqrt()
        self.mean = self.mean + o.decay * (lengths.mean().item() - self.mean)
        return {"path_length": (lengths - self.mean).square().mean() * o.weight * o.interval}

    def state_dict(self) -> dict:
        return {"mean": self.mean}

    def load_state_dict(self, state: dict) -> None:
        mean = state.get("mean")
        if not isinstance(mean, float) or not math.isfinite(mean) or mean < 0:
            raise GanzooError(f"pl: the checkpoint's running mean of path lengths must be a finite number of at "
                              f"least 0, not {mean!r}")
        self.mean = mean


@hookimpl
def register_auxiliaries(register):
    register("pl", PathLength, options=PathLengthOptions,
             description="StyleGAN2's path-length regularisation of a generator with a W space (lazy)")


@hookimpl
def register_architectures(register):
    register("stylegan2", StyleGAN2, options=StyleGAN2Options,
             description="StyleGAN2 (Karras et al. 2020): mapping network, modulated convolutions, residual critic")


@hookimpl
def register_recipes(register):
    register("stylegan2+ns+ada", settings={"options.ns.lr_generator": 0.0025, "options.ns.lr_critic": 0.0025,
                                           "options.ns.betas": [0.0, 0.99], "options.ns.r1": 1.0,
                                           "options.ns.lazy": 16, "model.ema_kimg": 10, "model.ema_rampup": 0.05},
             cpu={"model.width": 16, "schedule.batch_size": 16},
             source="stylegan2-ada's 'paper256'-like config: Adam(0.0025, betas (0, 0.99)), R1 every 16 critic "
                    "steps, an average of 10 kimg ramped up; on a CPU the 64 px leaderboard's batch")
