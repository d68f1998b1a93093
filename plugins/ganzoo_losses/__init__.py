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
they are computed every k-th critic update and scaled by k, and the critic's Adam runs at k / (k + 1) of its
learning rate with betas raised to k / (k + 1), so that its momentum spans the same images (StyleGAN2's lazy
regularisation); the count of updates is the loss's state, kept in checkpoints.

Schedules (R3GAN): with ``schedule_kimg`` set, the learning rates, beta2 and both gammas move from their values
to their ``*_final`` values along a half cosine over that many thousand generated images, then stay there
(R3GAN's ``cosine_decay_with_warmup`` without warm-up).

``hinge``'s ``margin`` [a, b] draws each score's margin uniformly from [a, b] (FastGAN: [0.8, 1]; 1 otherwise).
"""

from __future__ import annotations

import math

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
    schedule_kimg: float | None = Field(None, gt=0, description="move lr, beta2, r1 and r2 to their *_final values "
                                                                "along a half cosine over this many kimg (R3GAN)")
    lr_final: float | None = Field(None, gt=0, description="both learning rates at the schedule's end")
    beta2_final: float | None = Field(None, ge=0, lt=1, description="beta2 at the schedule's end")
    r1_final: float | None = Field(None, ge=0, description="r1's gamma at the schedule's end")
    r2_final: float | None = Field(None, ge=0, description="r2's gamma at the schedule's end")


class HingeOptions(PenalisedOptions):
    n_critic: int = Field(2, gt=0, description="critic updates per generator update (BigGAN: 2)")
    betas: tuple[float, float] = (0.0, 0.9)
    margin: tuple[float, float] = Field((1.0, 1.0), description="each score's margin, drawn uniformly from "
                                                                "[a, b] (FastGAN: [0.8, 1])")


class RpGANOptions(PenalisedOptions):
    r1: float = Field(0.1, ge=0, description="gamma of the zero-centred penalty on real images")
    r2: float = Field(0.1, ge=0, description="gamma of the zero-centred penalty on generated images")


def squared_gradient_norm(score: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """E ||d score / d images||^2 over the batch, kept differentiable (for the critic's update)."""
    (gradient,) = torch.autograd.grad(score.sum(), images, create_graph=True)
    return gradient.float().flatten(1).pow(2).sum(dim=1).mean()


def cosine(start: float, end: float | None, progress: float) -> float:
    """``start`` moved to ``end`` (None: stays) along a half cosine, ``progress`` in [0, 1] (clamped)."""
    if end is None:
        return start
    progress = min(max(progress, 0.0), 1.0)
    return start + (end - start) * 0.5 * (1 - math.cos(math.pi * progress))


class PenalisedLoss(AdversarialLoss):
    """A loss plus the R1/R2 penalties, their lazy schedule and the R3GAN schedules; subclasses give the
    adversarial terms."""

    def __init__(self, options: PenalisedOptions):
        self.options = options
        self.n_critic = options.n_critic
        self.critic_input_gradients = bool(options.r1 or options.r2 or options.r1_final or options.r2_final)
        self.critic_updates = 0
        self.r1, self.r2 = options.r1, options.r2
        self.optimisers_made: tuple[torch.optim.Optimizer, torch.optim.Optimizer] | None = None

    @property
    def lazy_share(self) -> float:
        """k / (k + 1) for penalties computed every k > 1 critic updates (StyleGAN2's rescaling), else 1."""
        k = self.options.lazy
        return k / (k + 1) if k > 1 and self.critic_input_gradients else 1.0

    def optimisers(self, generator, critic):
        o, share = self.options, self.lazy_share
        critic_betas = (o.betas[0] ** share, o.betas[1] ** share)
        self.optimisers_made = (adam(generator.parameters(), o.lr_generator, o.betas),
                                adam(critic.parameters(), o.lr_critic * share, critic_betas))
        return self.optimisers_made

    def follow_schedule(self, images: int) -> None:
        o = self.options
        if o.schedule_kimg is None or self.optimisers_made is None:
            return
        progress = images / (o.schedule_kimg * 1000)
        self.r1, self.r2 = cosine(o.r1, o.r1_final, progress), cosine(o.r2, o.r2_final, progress)
        beta2 = cosine(o.betas[1], o.beta2_final, progress)
        share = self.lazy_share
        for optimiser, lr, scale in ((self.optimisers_made[0], o.lr_generator, 1.0),
                                     (self.optimisers_made[1], o.lr_critic, share)):
            for group in optimiser.param_groups:
                group["lr"] = cosine(lr, o.lr_final, progress) * scale
                group["betas"] = (o.betas[0] ** scale, beta2 ** scale)

    def critic_terms(self, batch: Batch) -> Terms:
        terms = self.critic_adversarial(batch.real_out.patch_scores(), batch.fake_out.patch_scores(), batch)
        self.critic_updates += 1
        o = self.options
        if self.critic_input_gradients and self.critic_updates % o.lazy == 0:
            if self.r1:
                terms["r1"] = self.r1 / 2 * o.lazy * squared_gradient_norm(batch.real_out.score, batch.real)
            if self.r2:
                terms["r2"] = self.r2 / 2 * o.lazy * squared_gradient_norm(batch.fake_out.score, batch.fake)
        return terms

    def critic_adversarial(self, real: torch.Tensor, fake: torch.Tensor, batch: Batch) -> Terms:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"critic_updates": self.critic_updates}

    def load_state_dict(self, state: dict) -> None:
        self.critic_updates = int(state.get("critic_updates", 0))


class Hinge(PenalisedLoss):
    def critic_adversarial(self, real, fake, batch):
        low, high = self.options.margin
        if low == high == 1.0:
            margin_real = margin_fake = 1.0
        else:
            margin_real = low + (high - low) * batch.per_sample_rand(real.shape[1])
            margin_fake = low + (high - low) * batch.per_sample_rand(fake.shape[1])
        return {"hinge_real": F.relu(margin_real - real).mean(), "hinge_fake": F.relu(margin_fake + fake).mean()}

    def generator_terms(self, batch: Batch) -> Terms:
        return {"adversarial": -batch.fake_out.patch_scores().mean()}


class NonSaturating(PenalisedLoss):
    def critic_adversarial(self, real, fake, batch):
        return {"logistic_real": F.softplus(-real).mean(), "logistic_fake": F.softplus(fake).mean()}

    def generator_terms(self, batch: Batch) -> Terms:
        return {"adversarial": F.softplus(-batch.fake_out.patch_scores()).mean()}


class RelativisticPairing(PenalisedLoss):
    generator_needs_real = True

    def critic_adversarial(self, real, fake, batch):
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
