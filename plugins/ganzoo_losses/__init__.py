"""Adversarial losses for the zoo: ``hinge``, ``ns`` (non-saturating logistic) and ``rpgan`` (relativistic
pairing), each with optional zero-centred gradient penalties on real (R1) and fake (R2) images.

With D the critic's score and f = softplus:

- ``hinge`` (Lim & Ye 2017; SNGAN, BigGAN): critic E[relu(1 - D(x))] + E[relu(1 + D(G(z)))], generator
  -E[D(G(z))].
- ``ns`` (Goodfellow et al. 2014, the non-saturating form; StyleGAN2): critic E[f(-D(x))] + E[f(D(G(z)))],
  generator E[f(-D(G(z)))].
- ``rpgan`` (Jolicoeur-Martineau 2019; R3GAN, Huang et al. 2025): pairs each real image with a fake one,
  critic E[f(-(D(x) - D(G(z))))], generator E[f(-(D(G(z)) - D(x)))]; the generator's terms need the critic's
  scores of a real batch, which the engine supplies (``generator_needs_real``).

For a critic that scores patches or scales apart (``CriticOutput.patches``: FastGAN's, the projected critic),
D is each patch's score and every expectation runs over images and patches, as Projected GAN's hinge loss does;
the penalties below differentiate the mean score.

Penalties (Mescheder et al. 2018; R3GAN): R1 = gamma_1 / 2 E ||grad_x D(x)||^2 on the real images of the critic
update, R2 = gamma_2 / 2 E ||grad_x D(G(z))||^2 on its fakes, differentiated through the same forward pass the
loss uses (the engine makes the critic's inputs require gradients), augmentations included. With ``lazy`` k > 1
they are computed every k-th critic update and scaled by k (StyleGAN2's lazy regularisation); the count of
updates is the loss's state, kept in checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from ganzoo import AdversarialLoss, Batch, Terms, adam, hookimpl


class PenalisedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_critic: int = Field(1, gt=0, description="critic updates per generator update")
    lr_generator: float = Field(2e-4, gt=0)
    lr_critic: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.0, 0.99)
    r1: float = Field(0.0, ge=0, description="gamma of the zero-centred penalty on real images")
    r2: float = Field(0.0, ge=0, description="gamma of the zero-centred penalty on generated images")
    lazy: int = Field(1, gt=0, description="compute the penalties every k critic updates, scaled by k")


class HingeOptions(PenalisedOptions):
    n_critic: int = Field(2, gt=0, description="critic updates per generator update (BigGAN: 2)")
    betas: tuple[float, float] = (0.0, 0.9)


class RpGANOptions(PenalisedOptions):
    r1: float = Field(0.1, ge=0, description="gamma of the zero-centred penalty on real images")
    r2: float = Field(0.1, ge=0, description="gamma of the zero-centred penalty on generated images")


def squared_gradient_norm(score: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """E ||d score / d images||^2 over the batch, kept differentiable (for the critic's update)."""
    (gradient,) = torch.autograd.grad(score.sum(), images, create_graph=True)
    return gradient.float().flatten(1).pow(2).sum(dim=1).mean()


class PenalisedLoss(AdversarialLoss):
    """A loss plus the R1/R2 penalties and their lazy schedule; subclasses give the adversarial terms."""

    def __init__(self, options: PenalisedOptions):
        self.options = options
        self.n_critic = options.n_critic
        self.critic_input_gradients = bool(options.r1 or options.r2)
        self.critic_updates = 0

    def optimisers(self, generator, critic):
        o = self.options
        return (adam(generator.parameters(), o.lr_generator, o.betas), adam(critic.parameters(), o.lr_critic, o.betas))

    def critic_terms(self, batch: Batch) -> Terms:
        terms = self.critic_adversarial(batch.real_out.patch_scores(), batch.fake_out.patch_scores())
        self.critic_updates += 1
        o = self.options
        if self.critic_input_gradients and self.critic_updates % o.lazy == 0:
            if o.r1:
                terms["r1"] = o.r1 / 2 * o.lazy * squared_gradient_norm(batch.real_out.score, batch.real)
            if o.r2:
                terms["r2"] = o.r2 / 2 * o.lazy * squared_gradient_norm(batch.fake_out.score, batch.fake)
        return terms

    def critic_adversarial(self, real: torch.Tensor, fake: torch.Tensor) -> Terms:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"critic_updates": self.critic_updates}

    def load_state_dict(self, state: dict) -> None:
        self.critic_updates = int(state.get("critic_updates", 0))


class Hinge(PenalisedLoss):
    def critic_adversarial(self, real, fake):
        return {"hinge_real": F.relu(1 - real).mean(), "hinge_fake": F.relu(1 + fake).mean()}

    def generator_terms(self, batch: Batch) -> Terms:
        return {"adversarial": -batch.fake_out.patch_scores().mean()}


class NonSaturating(PenalisedLoss):
    def critic_adversarial(self, real, fake):
        return {"logistic_real": F.softplus(-real).mean(), "logistic_fake": F.softplus(fake).mean()}

    def generator_terms(self, batch: Batch) -> Terms:
        return {"adversarial": F.softplus(-batch.fake_out.patch_scores()).mean()}


class RelativisticPairing(PenalisedLoss):
    generator_needs_real = True

    def critic_adversarial(self, real, fake):
        return {"relativistic": F.softplus(-(real - fake)).mean()}

    def generator_terms(self, batch: Batch) -> Terms:
        fake, real = batch.fake_out.patch_scores(), batch.real_out.patch_scores()
        return {"relativistic": F.softplus(-(fake - real)).mean()}


@hookimpl
def register_losses(register):
    register("hinge", Hinge, options=HingeOptions, default=range(64, 1025), description="hinge loss (SNGAN, BigGAN), optional R1/R2")
    register("ns", NonSaturating, options=PenalisedOptions, default=range(8, 64),
             description="non-saturating logistic loss (StyleGAN2), optional R1/R2")
    register("rpgan", RelativisticPairing, options=RpGANOptions,
             description="relativistic pairing loss with R1 and R2 (R3GAN, Huang et al. 2025)")
