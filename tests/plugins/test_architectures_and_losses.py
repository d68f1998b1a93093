"""The zoo: hinge, non-saturating and relativistic losses with R1/R2 against hand-computed values, the resnet and
r3gan architectures, DiffAugment and ADA, and the recipes the leaderboard trains, through the CLI."""

import json
import math

import pytest
import torch
from torch import nn

from ganzoo import ArchitectureSpec, Critic, CriticOutput
from ganzoo.runtime.checkpoint import load_checkpoint
from ganzoo.registry.loading import get_registry
from ganzoo.engine.training import run_training
from ganzoo_augment import ADA, ADAOptions, DiffAugment, DiffAugOptions, shift
from ganzoo_losses import HingeOptions, Hinge, NonSaturating, PenalisedOptions, RelativisticPairing, RpGANOptions
from ganzoo_r3gan import Downsample, R3GAN, R3GANOptions, Upsample
from ganzoo_resnet import ResNet, ResNetOptions

from conftest import make_batch, run_ganzoo, tiny_config


class LinearCritic(Critic):
    """D(x) = <w, x> + b: its gradient is w everywhere, so ||grad||^2 = ||w||^2."""

    def __init__(self, w, b=0.0):
        super().__init__()
        self.w = nn.Parameter(w)
        self.b = b

    def forward(self, x, c=None):
        return CriticOutput(score=(x * self.w).flatten(1).sum(1) + self.b)


def critic_batch(loss, critic, real, fake):
    """A critic-phase record whose inputs require gradients when the loss asks for it, as the engine does."""
    if loss.critic_input_gradients:
        real, fake = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
    return make_batch("critic", critic, fake, real)


# --- losses -------------------------------------------------------------------------------------------------------

def scores_critic():
    """Real images score 2 and 0.5, fakes -1 and 1.5 (w = 1 on a single pixel)."""
    critic = LinearCritic(torch.ones(1, 1, 1, 1))
    return critic, torch.tensor([2.0, 0.5]).view(2, 1, 1, 1), torch.tensor([-1.0, 1.5]).view(2, 1, 1, 1)


def test_hinge_terms():
    critic, real, fake = scores_critic()
    loss = Hinge(HingeOptions())
    terms = loss.critic_terms(critic_batch(loss, critic, real, fake))
    assert terms["hinge_real"].item() == pytest.approx((0 + 0.5) / 2)      # relu(1 - 2), relu(1 - 0.5)
    assert terms["hinge_fake"].item() == pytest.approx((0 + 2.5) / 2)      # relu(1 - 1), relu(1 + 1.5)
    assert loss.generator_terms(make_batch("generator", critic, fake))["adversarial"].item() == pytest.approx(-0.25)
    assert (loss.n_critic, loss.options.betas) == (2, (0.0, 0.9)) and not loss.critic_input_gradients


def softplus(x):
    return math.log1p(math.exp(x))


def test_non_saturating_terms():
    critic, real, fake = scores_critic()
    loss = NonSaturating(PenalisedOptions())
    terms = loss.critic_terms(critic_batch(loss, critic, real, fake))
    assert terms["logistic_real"].item() == pytest.approx((softplus(-2) + softplus(-0.5)) / 2)
    assert terms["logistic_fake"].item() == pytest.approx((softplus(-1) + softplus(1.5)) / 2)
    generator = loss.generator_terms(make_batch("generator", critic, fake))["adversarial"]
    assert generator.item() == pytest.approx((softplus(1) + softplus(-1.5)) / 2)


def test_relativistic_pairing_reads_the_real_scores_in_both_phases():
    critic, real, fake = scores_critic()
    loss = RelativisticPairing(RpGANOptions(r1=0, r2=0))
    terms = loss.critic_terms(critic_batch(loss, critic, real, fake))
    assert terms["relativistic"].item() == pytest.approx((softplus(-(2 + 1)) + softplus(-(0.5 - 1.5))) / 2)
    generator = loss.generator_terms(make_batch("generator", critic, fake, real))["relativistic"]
    assert generator.item() == pytest.approx((softplus(-(-1 - 2)) + softplus(-(1.5 - 0.5))) / 2)
    assert loss.generator_needs_real and not loss.critic_input_gradients


def test_r1_and_r2_are_half_gamma_times_the_squared_gradient_norm():
    w = torch.full((1, 3, 2, 2), 0.5)  # ||w||^2 = 12 * 0.25 = 3
    critic = LinearCritic(w)
    real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    loss = RelativisticPairing(RpGANOptions(r1=0.2, r2=0.4))
    terms = loss.critic_terms(critic_batch(loss, critic, real, fake))
    assert terms["r1"].item() == pytest.approx(0.2 / 2 * 3.0)
    assert terms["r2"].item() == pytest.approx(0.4 / 2 * 3.0)
    (terms["r1"] + terms["r2"]).backward()  # the penalties reach the critic: d/dw (gamma/2 ||w||^2) = gamma w
    assert torch.allclose(critic.w.grad, (0.2 + 0.4) * w)


def test_lazy_penalties_come_every_k_updates_scaled_by_k_and_resume():
    critic = LinearCritic(torch.full((1, 1, 2, 2), 1.0))  # ||w||^2 = 4
    real, fake = torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2)
    loss = NonSaturating(PenalisedOptions(r1=1.0, lazy=3))
    seen = [("r1" in loss.critic_terms(critic_batch(loss, critic, real, fake))) for _ in range(6)]
    assert seen == [False, False, True, False, False, True]
    again = NonSaturating(PenalisedOptions(r1=1.0, lazy=3))
    again.load_state_dict({"critic_updates": 5})
    terms = again.critic_terms(critic_batch(again, critic, real, fake))
    assert terms["r1"].item() == pytest.approx(1.0 / 2 * 3 * 4.0)
    assert loss.state_dict() == {"critic_updates": 6}


# --- architectures ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("architecture", [ResNet(ResNetOptions()), R3GAN(R3GANOptions())])
@pytest.mark.parametrize("size", [16, 32, 64])
def test_architectures_build_every_size_with_conditions_and_heads(architecture, size):
    spec = ArchitectureSpec(image_size=size, latent_dim=8, width=8, condition_dim=3, aux_outputs={"head": 2},
                            critic_batchnorm=False)
    generator, critic = architecture.build(spec)
    z, c = torch.randn(4, 8), torch.randn(4, 3)
    images = generator(z, c)
    assert images.shape == (4, 3, size, size)
    out = critic(images, c)
    assert out.score.shape == (4,) and out.aux["head"].shape == (4, 2)
    assert len(architecture.critic_blocks(critic)) >= 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in critic.modules())


def test_resnet_critic_is_spectrally_normalised():
    spec = ArchitectureSpec(image_size=32, latent_dim=8, width=8, critic_batchnorm=False)
    _, critic = ResNet(ResNetOptions()).build(spec)
    for _ in range(30):  # power iterations happen in train-mode forward passes
        critic(torch.randn(2, 3, 32, 32))
    layer = critic.blocks[1].conv1
    sigma = torch.linalg.matrix_norm(layer.weight.flatten(1), ord=2).item()
    assert sigma == pytest.approx(1.0, rel=0.05)


def test_r3gan_blocks_start_as_identity_and_resample_linearly():
    spec = ArchitectureSpec(image_size=16, latent_dim=8, width=8)
    generator, critic = R3GAN(R3GANOptions()).build(spec)
    block = generator.stages[0][0]
    x = torch.randn(2, block.widen.in_channels, 4, 4)
    assert torch.equal(block(x), x)  # the narrowing layer starts at zero
    ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 2, 4, 4)
    up = Upsample(2, 2)(ramp)
    assert up.shape == (1, 2, 8, 8)
    assert torch.allclose(up[0, 0, 3, 1:7], torch.tensor([0.5, 1.0, 1.5, 2.0, 2.5, 3.0]))  # linear between pixels
    flat = torch.full((1, 2, 8, 8), 3.0)
    assert torch.allclose(Downsample(2, 2)(flat)[..., 1:, 1:], torch.full((1, 2, 3, 3), 3.0))


# --- augmentations ------------------------------------------------------------------------------------------------

def test_shift_moves_pixels_and_pads():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    moved = shift(x, torch.tensor([1]), torch.tensor([0]), reflect=False)
    assert torch.equal(moved[0, 0, :, 1:], x[0, 0, :, :3]) and torch.equal(moved[0, 0, :, 0], torch.zeros(4))
    reflected = shift(x, torch.tensor([0]), torch.tensor([-1]), reflect=True)
    assert torch.equal(reflected[0, 0, :3], x[0, 0, 1:]) and torch.equal(reflected[0, 0, 3], x[0, 0, 2])


@pytest.mark.parametrize("augmentation", [DiffAugment(DiffAugOptions()), ADA(ADAOptions(initial_p=1.0))])
def test_augmentations_keep_shape_change_images_and_pass_gradients(augmentation):
    torch.manual_seed(0)
    images = (torch.rand(8, 3, 16, 16) * 2 - 1).requires_grad_(True)
    out = augmentation.augment(images)
    assert out.shape == images.shape and not torch.allclose(out, images)
    out.square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_ada_probability_follows_the_overfitting_signal_and_resumes():
    ada = ADA(ADAOptions(interval=2, speed_kimg=0.008))  # 8 real images move p by 1
    critic = LinearCritic(torch.ones(1, 1, 1, 1))
    confident = make_batch("critic", critic, torch.zeros(4, 1, 1, 1), torch.ones(4, 1, 1, 1))  # sign(D(real)) = 1
    for _ in range(2):
        ada.observe(confident)
    assert ada.statistics() == {"p": pytest.approx(1.0), "signal": pytest.approx(1.0)}  # 8 images: +1, clamped
    unsure = make_batch("critic", critic, torch.zeros(4, 1, 1, 1), -torch.ones(4, 1, 1, 1))
    ada.observe(unsure)
    state = ada.state_dict()
    resumed = ADA(ADAOptions(interval=2, speed_kimg=0.008))
    resumed.load_state_dict(state)
    for one in (ada, resumed):
        one.observe(unsure)
        assert one.statistics()["p"] == pytest.approx(0.0)  # signal -1: p falls back by 1
    assert state["updates"] == 3 and state["signal_count"] == 4


# --- recipes through the CLI --------------------------------------------------------------------------------------

ZOO_FLAGS = ["--set", "data.image_size=16", "--set", "options.synthcovers.count=64", "--set", "model.width=8",
             "--set", "model.latent_dim=16", "--set", "schedule.batch_size=8", "--set", "schedule.log_every=1", "--quiet"]


@pytest.mark.parametrize("recipe, extra", [
    ("r3gan+rpgan+ada", []),
    ("resnet+hinge+diffaug+logan", []),
    ("acgan+resnet+hinge+diffaug", ["--set", 'model.conditions=["audio-features"]']),
    ("r3gan+ns+diffaug", ["--set", "options.ns.r1=1", "--set", "options.ns.lazy=2",
                          "--set", 'model.conditions=["audio-features"]']),
])
def test_zoo_recipes_train_through_the_cli(recipe, extra, tmp_path):
    result = run_ganzoo("train", recipe, *ZOO_FLAGS, *extra, "--steps", "2", "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]
    assert all(math.isfinite(v) for row in rows for v in row.values())


def test_ada_state_and_lazy_counters_resume_exactly(tmp_path):
    common = dict(recipe="r3gan+ns+ada", data={"image_size": 16}, model={"width": 8, "latent_dim": 16},
                  options={"ns": {"r1": 1.0, "lazy": 2},
                                         "ada": {"interval": 1, "speed_kimg": 0.05},
                                         "synthcovers": {"count": 64}})
    run_training(tiny_config(**common, schedule={"steps": 4}), tmp_path / "straight", progress=False)
    run_training(tiny_config(**common, schedule={"steps": 2}), tmp_path / "split", progress=False)
    run_training(tiny_config(**common, schedule={"steps": 4}), tmp_path / "split", resume=load_checkpoint(tmp_path / "split"),
          progress=False)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    assert a["components"] == b["components"] and a["components"]["ns"] == {"critic_updates": 4}
    assert a["components"]["ada"]["p"] > 0
    for key in a["generator"]:
        assert torch.equal(a["generator"][key], b["generator"][key]), key


def test_zoo_components_are_registered_with_their_options():
    registry = get_registry()
    assert {"resnet", "r3gan"} <= set(registry.names("architecture"))
    assert {"hinge", "ns", "rpgan", "wgan"} <= set(registry.names("loss"))
    assert {"diffaug", "ada"} <= set(registry.names("augmentation"))
    assert registry.create("loss", "rpgan").options.r1 == 0.1
    with pytest.raises(Exception, match="options.diffaug.policy: unknown 'mirror'"):
        registry.create("augmentation", "diffaug", {"policy": ["mirror"]})
