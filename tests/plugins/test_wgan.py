import math

import pytest
import torch
from torch import nn

from ganzoo import Critic, CriticOutput
from ganzoo_wgan import WGANGPOptions, WGANGP, gradient_penalty

from conftest import make_batch


class LinearCritic(Critic):
    """D(x) = <w, x>: its gradient is w everywhere."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x, c=None):
        return CriticOutput(score=(x * self.w).flatten(1).sum(1))


class HalfSquaredNormCritic(Critic):
    """D(x) = ||x||^2 / 2: its gradient at x is x itself."""

    def forward(self, x, c=None):
        return CriticOutput(score=0.5 * x.flatten(1).pow(2).sum(1))


def test_penalty_of_linear_critic_is_norm_of_w_minus_one_squared():
    torch.manual_seed(0)
    w = torch.full((1, 3, 4, 4), 0.5)  # ||w|| = sqrt(48 * 0.25) = sqrt(12)
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    penalty = gradient_penalty(make_batch("critic", LinearCritic(w), fake, real))
    assert penalty.item() == pytest.approx((math.sqrt(12) - 1) ** 2, rel=1e-5)


def test_penalty_of_quadratic_critic_uses_each_sample_norm():
    real = torch.zeros(2, 1, 2, 2)
    real[0] = 0.25  # ||x|| = 0.5
    real[1] = 1.5   # ||x|| = 3
    penalty = gradient_penalty(make_batch("critic", HalfSquaredNormCritic(), real.clone(), real))
    expected = ((0.5 - 1) ** 2 + (3 - 1) ** 2) / 2
    assert penalty.item() == pytest.approx(expected, rel=1e-5)


def test_penalty_gradient_reaches_critic_parameters():
    critic = LinearCritic(torch.full((1, 1, 2, 2), 2.0))
    penalty = gradient_penalty(make_batch("critic", critic, torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)))
    penalty.backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||, with ||w|| = 4
    assert torch.allclose(critic.w.grad, torch.full((1, 1, 2, 2), 2 * 3 * 2.0 / 4))


def test_critic_and_generator_terms_follow_wgan_gp():
    loss = WGANGP(WGANGPOptions(gp_weight=10.0))
    critic = LinearCritic(torch.full((1, 1, 1, 1), 1.0))  # ||w|| = 1: zero penalty
    real, fake = torch.full((4, 1, 1, 1), 2.0), torch.full((4, 1, 1, 1), -1.0)
    terms = loss.critic_terms(make_batch("critic", critic, fake, real))
    assert terms["wasserstein"].item() == pytest.approx(-3.0)
    assert terms["gradient_penalty"].item() == pytest.approx(0.0, abs=1e-8)
    assert loss.generator_terms(make_batch("generator", critic, fake))["adversarial"].item() == pytest.approx(1.0)


def test_defaults_are_the_papers():
    loss = WGANGP(WGANGPOptions())
    assert (loss.options.gp_weight, loss.n_critic) == (10.0, 5)
    optimiser_g, optimiser_d = loss.optimisers(nn.Linear(2, 2), nn.Linear(2, 2))
    for optimiser in (optimiser_g, optimiser_d):
        assert optimiser.defaults["lr"] == 1e-4 and optimiser.defaults["betas"] == (0.0, 0.9)
    assert loss.allows_critic_batchnorm is False


def test_penalty_under_bf16_autocast_keeps_the_norm_in_fp32():
    torch.manual_seed(0)
    linear = nn.Linear(48, 1)

    class LinearLayerCritic(Critic):
        def __init__(self):
            super().__init__()
            self.linear = linear

        def forward(self, x, c=None):
            return CriticOutput(score=self.linear(x.flatten(1)).squeeze(1))

    critic, real, fake = LinearLayerCritic(), torch.randn(8, 3, 4, 4), torch.randn(8, 3, 4, 4)
    torch.manual_seed(1)
    exact = gradient_penalty(make_batch("critic", critic, fake, real))
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert critic(real).score.dtype == torch.bfloat16  # the forward really runs in bf16
        mixed = gradient_penalty(make_batch("critic", critic, fake, real))
    assert mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(exact.item(), rel=2e-2)
    expected = (linear.weight.norm().item() - 1) ** 2  # a linear critic's gradient is its weight everywhere
    assert exact.item() == pytest.approx(expected, rel=1e-5)
