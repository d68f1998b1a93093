"""``shapes``: a vector generator. z (and conditions) become a background (a linear gradient under a radial one)
and a fixed set of shapes (ellipses, rectangles, triangles and curved strokes, each with a colour, an opacity and
a depth), drawn by a differentiable rasteriser written in torch (``rasteriser``): covers at any size from the same
parameters, and as SVG. Its critic is a plain strided convolutional one; any critic of the zoo (``projected``)
can replace it.

After CoverGAN (Efimova et al. 2022: covers as vector graphics drawn by diffvg) and diffvg (Li et al., SIGGRAPH
Asia 2020), written here in torch alone: a shape's coverage of a pixel is a ramp one pixel wide across its signed
distance's zero, so gradients reach every shape's colour and opacity everywhere and its geometry at its edges.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganzoo import Architecture, ArchitectureSpec, Critic, CriticOutput, VectorGenerator, hookimpl
from ganzoo_shapes.rasteriser import Shapes, render, svg_of

BACKGROUND_VALUES = 4 * 3 + 2 + 2 + 1 + 1
"""Four colours, the linear gradient's direction (two numbers), the radial one's centre, radius and opacity."""
SHAPE_VALUES = 6 + 1 + 3 + 1 + 1
"""Geometry, stroke width, colour, opacity, depth."""
PLACE_LOW, PLACE_SPAN = -0.1, 1.2
"""Where centres, corners and control points may lie: a little past every edge of the unit square."""
MIN_HALF_SIDE, HALF_SIDE_SPAN = 0.02, 0.5
MIN_STROKE, STROKE_SPAN = 0.005, 0.06
MIN_RADIUS, RADIUS_SPAN = 0.2, 1.0
START_SPREAD = 1.5
"""Spread of the output layer's initial biases: shapes start at their own places, sizes and colours, not all at
the centre in mid grey (every sigmoid at 0.5)."""


class ShapesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ellipses: int = Field(8, ge=0, le=64, description="ellipses per cover")
    rectangles: int = Field(6, ge=0, le=64, description="rectangles per cover")
    triangles: int = Field(4, ge=0, le=64, description="triangles per cover")
    strokes: int = Field(6, ge=0, le=64, description="curved strokes per cover")
    depth: int = Field(3, ge=1, le=8, description="hidden layers of the generator's network (each 4x model.width "
                                                  "wide)")


class ShapesGenerator(VectorGenerator):
    """An MLP from (z, c) to the parameters of a background and ``K`` shapes, then the rasteriser."""

    def __init__(self, spec: ArchitectureSpec, options: ShapesOptions):
        super().__init__()
        self.latent_dim, self.size = spec.latent_dim, spec.image_size
        self.kind = (("ellipse",) * options.ellipses + ("rectangle",) * options.rectangles
                     + ("triangle",) * options.triangles + ("stroke",) * options.strokes)
        hidden = 4 * spec.width
        layers, width = [], spec.latent_dim + spec.condition_dim
        for _ in range(options.depth):
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(hidden, BACKGROUND_VALUES + len(self.kind) * SHAPE_VALUES)
        nn.init.normal_(self.head.bias, 0.0, START_SPREAD)  # each shape starts somewhere of its own

    def shapes(self, z: torch.Tensor, c: torch.Tensor | None = None) -> Shapes:
        """The covers' shapes for latents ``z`` and conditions ``c``."""
        values = self.head(self.body(z if c is None else torch.cat([z, c], dim=1)).float())
        background, rest = values[:, :BACKGROUND_VALUES], values[:, BACKGROUND_VALUES:]
        each = rest.reshape(len(z), len(self.kind), SHAPE_VALUES)
        raw = each[..., :6]
        kinds = torch.tensor([[kind in ("ellipse", "rectangle")] for kind in self.kind], device=z.device)
        direction = nn.functional.normalize(raw[..., 4:6], dim=-1, eps=1e-6)
        boxed = torch.cat([PLACE_LOW + PLACE_SPAN * torch.sigmoid(raw[..., 0:2]),
                           MIN_HALF_SIDE + HALF_SIDE_SPAN * torch.sigmoid(raw[..., 2:4]), direction], dim=-1)
        geometry = torch.where(kinds, boxed, PLACE_LOW + PLACE_SPAN * torch.sigmoid(raw))
        return Shapes(background=torch.sigmoid(background[:, :12]).reshape(-1, 4, 3),
                      angle=torch.atan2(background[:, 13], background[:, 12]),
                      centre=torch.sigmoid(background[:, 14:16]),
                      radius=MIN_RADIUS + RADIUS_SPAN * torch.sigmoid(background[:, 16]),
                      mix=torch.sigmoid(background[:, 17]), kind=self.kind, geometry=geometry,
                      width=MIN_STROKE + STROKE_SPAN * torch.sigmoid(each[..., 6]),
                      colour=torch.sigmoid(each[..., 7:10]), opacity=torch.sigmoid(each[..., 10]),
                      depth=each[..., 11])

    def draw(self, z: torch.Tensor, c: torch.Tensor | None, size: int) -> torch.Tensor:
        return render(self.shapes(z, c), size) * 2 - 1

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.draw(z, c, self.size)

    def svg(self, z: torch.Tensor, c: torch.Tensor | None, size: int) -> list[str]:
        shapes = self.shapes(z, c)
        return [svg_of(shapes, index, size) for index in range(len(shapes))]


class ShapesCritic(Critic):
    """Strided 4x4 convolutions (spectrally normalised, leaky ReLU), doubling the channels from ``width`` up to
    8x, until the map is under 8 px; then its sum over locations scores the image. Conditions by projection,
    extra outputs as linear heads on the pooled features."""

    def __init__(self, spec: ArchitectureSpec):
        super().__init__()
        layers, channels, side = [], spec.channels, spec.image_size
        width = spec.width
        while side >= 8:
            layers += [spectral_norm(nn.Conv2d(channels, width, 4, 2, 1)), nn.LeakyReLU(0.2)]
            channels, width, side = width, min(width * 2, spec.width * 8), side // 2
        self.main = nn.Sequential(*layers)
        self.score = spectral_norm(nn.Linear(channels, 1))
        self.projection = spectral_norm(nn.Linear(spec.condition_dim, channels, bias=False)) \
            if spec.condition_dim else None
        self.heads = nn.ModuleDict({name: nn.Linear(channels, dim) for name, dim in spec.aux_outputs.items()})

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> CriticOutput:
        pooled = self.main(x).sum(dim=(2, 3))
        score = self.score(pooled)[:, 0]
        if self.projection is not None and c is not None:
            score = score + (self.projection(c) * pooled).sum(dim=1)
        return CriticOutput(score, {name: head(pooled) for name, head in self.heads.items()})


class ShapesArchitecture(Architecture):
    """Covers as shapes, drawn at any size (and as SVG) by a differentiable rasteriser."""

    image_sizes = range(32, 4097)

    def __init__(self, options: ShapesOptions):
        self.options = options

    def build(self, spec: ArchitectureSpec) -> tuple[ShapesGenerator, ShapesCritic]:
        return ShapesGenerator(spec, self.options), ShapesCritic(spec)

    def critic_blocks(self, critic: ShapesCritic) -> list[nn.Module]:
        return [critic.main[i:i + 2] for i in range(0, len(critic.main), 2)]


@hookimpl
def register_architectures(register):
    register("shapes", ShapesArchitecture, options=ShapesOptions,
             description="a vector generator: a gradient background and shapes, drawn at any size and as SVG")


@hookimpl
def register_recipes(register):
    register("shapes+projected+hinge+diffaug", settings={"options.hinge.n_critic": 1,
                                                         "options.hinge.betas": [0.0, 0.99],
                                                         "options.hinge.lr_generator": 2e-4,
                                                         "options.hinge.lr_critic": 2e-4,
                                                         "model.ema_kimg": 20, "model.ema_rampup": 0.05},
             cpu={"model.width": 32, "schedule.batch_size": 16},
             source="Projected GAN's settings (one critic step, Adam(2e-4, betas (0, 0.99)), an average of 20 "
                    "kimg ramped up over the first 5 %) for a vector generator; on a CPU the 64 px leaderboard's batch")
