"""WGAN-GP (Gulrajani et al. 2017, arXiv 1704.00028) as a ganzoo loss plugin.

Critic: E[D(fake)] - E[D(real)] + lambda * E[(||grad_x D(x_hat)||_2 - 1)^2] with x_hat on random lines between
real and fake samples. Generator: -E[D(fake)]. Defaults follow the paper: lambda 10, n_critic 5,
Adam(lr 1e-4, betas (0, 0.9)).

With augmentations in the recipe, D is the critic behind them (``batch.critic``), as everywhere in the loss: the
penalty holds the function the losses see, D(T(x)), to a unit gradient norm with respect to the un-augmented
x_hat. This is intended: it is how stylegan2-ada and R3GAN differentiate R1 through their augmentation, and it
constrains the critic where the generator's gradient comes from. Pixels an augmentation zeroes (DiffAugment's
cutout) have a zero gradient, so the norm is that of the pixels the critic saw.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from ganzoo import AdversarialLoss, Batch, Terms, adam, hookimpl


class WGANGPOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gp_weight: float = Field(10.0, ge=0, description="lambda, the gradient penalty's weight")
    n_critic: int = Field(5, gt=0, description="critic updates per generator update")
    lr_generator: float = Field(1e-4, gt=0)
    lr_critic: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.0, 0.9)


def gradient_penalty(batch: Batch) -> torch.Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = eps * real + (1 - eps) * fake, eps ~ U[0, 1] per sample."""
    real, fake = batch.real, batch.fake
    eps = batch.per_sample_rand(*([1] * (real.dim() - 1)))
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    score = batch.critic(x_hat, batch.condition).score
    (gradient,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    norm = gradient.flatten(1).float().pow(2).sum(dim=1).add(1e-12).sqrt()
    return (norm - 1).pow(2).mean()


class WGANGP(AdversarialLoss):
    allows_critic_batchnorm = False

    def __init__(self, options: WGANGPOptions):
        self.options = options
        self.n_critic = options.n_critic

    def optimisers(self, generator, critic):
        o = self.options
        return (adam(generator.parameters(), o.lr_generator, o.betas), adam(critic.parameters(), o.lr_critic, o.betas))

    def critic_terms(self, batch: Batch) -> Terms:
        terms = {"wasserstein": batch.fake_out.score.mean() - batch.real_out.score.mean()}
        if self.options.gp_weight:
            terms["gradient_penalty"] = self.options.gp_weight * gradient_penalty(batch)
        return terms

    def generator_terms(self, batch: Batch) -> Terms:
        return {"adversarial": -batch.fake_out.score.mean()}


@hookimpl
def register_losses(register):
    register("wgan", WGANGP, options=WGANGPOptions, description="WGAN-GP (Gulrajani et al. 2017)")
