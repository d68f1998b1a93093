"""LOGAN latent optimisation (Wu et al. 2019, arXiv 1912.00953, Algorithm 1) as a ganzoo latent optimiser.

Before z is used, it takes ``steps`` ascent steps on the critic's score of its image, f(z) = D(G(z, c), c),
with g = df/dz computed per sample:

- ``gd``:  dz = alpha * g                                   (the paper's Eq. 2)
- ``ngd``: dz = alpha * g / (beta + ||g||^2)                (Eq. 3: natural gradient with the damped empirical
  Fisher g g^T + beta I, inverted in closed form; ||dz|| <= alpha / (2 sqrt(beta)) however large g grows)

and z' = z + dz feeds the critic and generator updates named in ``applies_to`` (both in Algorithm 1).
Defaults are the paper's NGD setting: alpha 0.9, beta 5, one step.

Deviations, and why:

- Stop-gradient: g is taken with ``torch.autograd.grad`` with respect to z only and dz is treated as a constant,
  so the G and D updates do not differentiate through the latent step (the paper's full method keeps those
  second-order terms, and a ||dz||^2 regulariser that only acts through them). This keeps the cost at one
  extra forward and backward pass per batch; the second-order variant is not implemented.
- Clipping: the paper clips z' to [-1, 1] because it samples z ~ U(-1, 1). ganzoo samples z ~ N(0, I), for
  which that clip would move most latents off the prior, so ``clip`` is off by default; set it to bound z'.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from ganzoo import Critic, Generator, LatentOptimiser, hookimpl


class LOGANOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule: Literal["ngd", "gd"] = "ngd"
    alpha: float = Field(0.9, gt=0, description="step size")
    beta: float = Field(5.0, gt=0, description="NGD damping (Tikhonov term of the empirical Fisher)")
    steps: int = Field(1, ge=1, description="latent ascent steps per batch")
    applies_to: list[Literal["critic", "generator"]] = Field(["critic", "generator"], min_length=1)
    clip: float | None = Field(None, gt=0, description="clip z' to [-clip, clip]; off by default (see module)")


class LOGAN(LatentOptimiser):
    def __init__(self, options: LOGANOptions):
        self.options = options
        self.applies_to = frozenset(options.applies_to)

    def step(self, z: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """One update of z from the per-sample gradient of the critic score (B, latent_dim)."""
        o = self.options
        if o.rule == "gd":
            delta = o.alpha * gradient
        else:
            squared_norm = gradient.pow(2).sum(dim=1, keepdim=True)
            delta = o.alpha * gradient / (o.beta + squared_norm)
        z = z + delta
        return z.clamp(-o.clip, o.clip) if o.clip else z

    def optimise(self, z: torch.Tensor, condition: torch.Tensor | None, generator: Generator, critic: Critic,
                 ) -> torch.Tensor:
        for _ in range(self.options.steps):
            z = z.detach().requires_grad_(True)
            with torch.enable_grad():
                score = critic(generator(z, condition), condition).score
                (gradient,) = torch.autograd.grad(score.sum(), z)
            z = self.step(z.detach(), gradient)
        return z.detach()


@hookimpl
def register_latent_optimisers(register):
    register("logan", LOGAN, options=LOGANOptions, description="LOGAN latent optimisation (Wu et al. 2019), "
                                                               "GD or natural-gradient steps on z")
