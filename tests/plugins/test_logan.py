"""LOGAN: the GD and NGD steps against hand-computed values, damping, the stop-gradient, and training."""

import math

import pytest
import torch
from torch import nn

from ganzoo import Critic, CriticOutput, Generator
from ganzoo.runtime.checkpoint import load_checkpoint
from ganzoo.api.errors import GanzooError
from ganzoo.engine.training import run_training
from ganzoo.registry.loading import get_registry
from ganzoo_logan import LOGANOptions, LOGAN

from conftest import TINY_FLAGS, run_ganzoo, tiny_config


class LinearGenerator(Generator):
    """G(z) = A z, as a 1 x 1 x k "image"."""

    def __init__(self, matrix):
        super().__init__()
        self.latent_dim = matrix.shape[1]
        self.matrix = nn.Parameter(matrix)

    def forward(self, z, c=None):
        return (z @ self.matrix.T)[:, None, None, :]


class LinearCritic(Critic):
    """D(x) = <w, x>: so D(G(z)) = w^T A z and its gradient in z is A^T w, for every z."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x, c=None):
        return CriticOutput(score=(x.flatten(1) * self.w).sum(1))


def pair(scale=1.0):
    matrix = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]])
    w = torch.tensor([3.0, -1.0]) * scale
    return LinearGenerator(matrix), LinearCritic(w), matrix.T @ w  # gradient = A^T w = scale * [3, 5, 1]


def test_gd_step_is_alpha_times_gradient():
    generator, critic, gradient = pair()
    z = torch.randn(4, 3)
    out = LOGAN(LOGANOptions(rule="gd", alpha=0.1)).optimise(z, None, generator, critic)
    assert torch.allclose(out, z + 0.1 * gradient, atol=1e-6)


def test_ngd_step_matches_hand_computation():
    generator, critic, gradient = pair()
    z = torch.randn(4, 3)
    out = LOGAN(LOGANOptions(rule="ngd", alpha=0.9, beta=5.0)).optimise(z, None, generator, critic)
    # ||g||^2 = 9 + 25 + 1 = 35, so dz = 0.9 * g / (5 + 35)
    assert torch.allclose(out, z + 0.9 * gradient / 40.0, atol=1e-6)
    # the divisor is the real gradient's norm: a ones-vector norm (3 here) would give 0.9 * g / 8
    assert not torch.allclose(out, z + 0.9 * gradient / (5.0 + 3.0), atol=1e-3)


def test_ngd_step_stays_bounded_as_the_gradient_grows():
    options = LOGANOptions(rule="ngd", alpha=0.9, beta=5.0)
    bound = 0.9 / (2 * math.sqrt(5.0))
    sizes = []
    for scale in (0.01, 1.0, 100.0, 1e4):
        generator, critic, gradient = pair(scale)
        z = torch.zeros(2, 3)
        step = LOGAN(options).optimise(z, None, generator, critic) - z
        sizes.append(step.norm(dim=1)[0].item())
        expected = 0.9 * gradient.norm().item() / (5.0 + gradient.norm().item() ** 2)
        assert sizes[-1] == pytest.approx(expected, rel=1e-4)
        assert sizes[-1] <= bound + 1e-6
    assert sizes[-1] < sizes[1]  # past the damping scale, larger gradients take smaller steps


def test_latent_step_gives_no_gradient_to_g_or_d():
    generator, critic, _ = pair()
    z = torch.randn(4, 3)
    out = LOGAN(LOGANOptions()).optimise(z, None, generator, critic)
    assert generator.matrix.grad is None and critic.w.grad is None
    assert not out.requires_grad
    # and using the optimised latent in a loss differentiates G and D at z', not through the step
    loss = critic(generator(out)).score.sum()
    loss.backward()
    assert torch.allclose(critic.w.grad, (out @ generator.matrix.T).sum(0).detach())


def test_several_steps_and_clipping():
    generator, critic, gradient = pair()
    z = torch.zeros(1, 3)
    two = LOGAN(LOGANOptions(rule="gd", alpha=0.1, steps=2)).optimise(z, None, generator, critic)
    assert torch.allclose(two, 0.2 * gradient[None], atol=1e-6)
    clipped = LOGAN(LOGANOptions(rule="gd", alpha=1.0, clip=1.0)).optimise(z, None, generator, critic)
    assert clipped.abs().max() == 1.0


def test_options_are_validated():
    with pytest.raises(GanzooError, match="options.logan.rule"):
        get_registry().create("latent_optimiser", "logan", {"rule": "adam"})
    with pytest.raises(GanzooError, match="options.logan.beta"):
        get_registry().create("latent_optimiser", "logan", {"beta": 0})
    assert get_registry().create("latent_optimiser", "logan", {"applies_to": ["generator"]}).applies_to == {"generator"}


def test_wgan_logan_resumes_exactly(tmp_path):
    straight = run_training(tiny_config(recipe="wgan+logan", schedule={"steps": 4}), tmp_path / "straight", progress=False)
    run_training(tiny_config(recipe="wgan+logan", schedule={"steps": 2}), tmp_path / "split", progress=False)
    half = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    run_training(tiny_config(recipe="wgan+logan", schedule={"steps": 4}), tmp_path / "split", resume=half, progress=False)
    a, b = load_checkpoint(straight["checkpoint"]), load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    for key in a["generator"]:
        assert torch.equal(a["generator"][key], b["generator"][key]), key
    # the latent step changed training: without it the weights differ
    run_training(tiny_config(recipe="wgan", schedule={"steps": 4}), tmp_path / "plain", progress=False)
    plain = load_checkpoint(tmp_path / "plain" / "checkpoint.pt")
    assert not torch.equal(plain["generator"]["convs.0.weight"], a["generator"]["convs.0.weight"])


def test_cli_trains_wgan_logan(tmp_path):
    result = run_ganzoo("train", "wgan+logan", *TINY_FLAGS, "--set", "options.logan.rule=gd", "--steps", "2",
                        "--out", tmp_path / "run", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "step 2: finished" in result.stdout
    listing = run_ganzoo("plugins").stdout
    assert "latent optimiser: logan" in listing
