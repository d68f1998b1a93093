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


def test_r3gan_blocks_start_as_identity_and_resample_as_r3gan_does():
    """R3GAN's resampling: [1, 3, 3, 1] kernels, bilinear with half-pixel centres, the same at every border."""
    spec = ArchitectureSpec(image_size=16, latent_dim=8, width=8)
    generator, critic = R3GAN(R3GANOptions()).build(spec)
    block = generator.stages[0][0]
    x = torch.randn(2, block.widen.in_channels, 4, 4)
    assert torch.equal(block(x), x)  # the narrowing layer starts at zero
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 2, 8, 8)
    up = Upsample(2, 2)(ramp)
    assert up.shape == (1, 2, 16, 16)
    # output pixel j sits at input position j / 2 - 1 / 4: a ramp stays a ramp, with no shift
    assert torch.allclose(up[0, 0, 8, 1:15], torch.arange(1, 15) / 2 - 0.25)
    down = Downsample(2, 2)(ramp)
    assert torch.allclose(down[0, 0, 2, 1:3], torch.tensor([2.5, 4.5]))  # each output centred between two inputs
    for resample in (Upsample(2, 2), Downsample(2, 2)):
        out = resample(torch.full((1, 2, 8, 8), 3.0))
        inner = out[..., 1:-1, 1:-1]
        assert torch.allclose(inner, torch.full_like(inner, 3.0))
        for turn in range(1, 4):  # a constant's borders darken alike on every side
            assert torch.allclose(torch.rot90(out, turn, dims=(2, 3)), out)


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


@pytest.mark.parametrize("ratio, side", [(0.5, 32), (0.2, 13)])
def test_cutout_cuts_the_reference_square(ratio, side):
    """DiffAugment's rand_cutout: int(64 x ratio + 0.5) px on a side where it lies inside the image."""
    torch.manual_seed(0)
    out = DiffAugment(DiffAugOptions(policy=["cutout"], cutout=ratio)).augment(torch.ones(256, 3, 64, 64))
    holes = (out[:, 0] == 0).sum(dim=(1, 2))
    assert holes.max().item() == side * side and (holes > 0).all()


def test_ada_with_p_zero_is_the_identity_and_its_operations_do_what_they_say():
    torch.manual_seed(0)
    images = torch.rand(6, 3, 16, 16) * 2 - 1
    assert torch.allclose(ADA(ADAOptions()).augment(images), images, atol=1e-5)
    only = {name: 0.0 for name in ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness",
                                   "contrast", "lumaflip", "hue", "saturation")}
    turned = ADA(ADAOptions(initial_p=1.0, **{**only, "rotate90": 1.0})).augment(images)
    for image, out in zip(images, turned):  # quarter turns are exact: no resampling blur
        assert any(torch.allclose(out, torch.rot90(image, k, dims=(1, 2)), atol=1e-5) for k in range(4))
    grey = torch.zeros(4, 3, 16, 16)  # contrast scales about mid-grey (0 in [-1, 1]), which stays put
    assert torch.equal(ADA(ADAOptions(initial_p=1.0, **{**only, "contrast": 1.0})).augment(grey), grey)
    spun = ADA(ADAOptions(initial_p=1.0, **{**only, "hue": 1.0})).augment(images)  # hue turns about the grey axis
    assert torch.allclose(spun.mean(dim=1), images.mean(dim=1), atol=1e-5)
    assert not torch.allclose(spun, images, atol=1e-2)
    moved = ADA(ADAOptions(initial_p=1.0, **{**only, "rotate": 1.0, "scale": 1.0, "xfrac": 1.0})).augment(images)
    assert not torch.allclose(moved, images, atol=1e-2) and moved.abs().max() <= images.abs().max() + 1e-5


def test_schedules_follow_half_cosines_over_their_kimg():
    """R3GAN's schedules: lr, beta2 and gamma of the loss, p of the augmentation, the average's half-life."""
    from ganzoo.engine.model import HalfLife

    loss = RelativisticPairing(RpGANOptions(r1=2.0, r2=2.0, r1_final=0.2, r2_final=0.2, lr_final=5e-5,
                                            betas=(0.0, 0.9), beta2_final=0.99, schedule_kimg=10))
    optimisers = loss.optimisers(nn.Linear(2, 2), nn.Linear(2, 2))
    for images, lr, beta2, gamma in ((0, 2e-4, 0.9, 2.0), (5000, 1.25e-4, 0.945, 1.1), (10000, 5e-5, 0.99, 0.2),
                                     (20000, 5e-5, 0.99, 0.2)):
        loss.follow_schedule(images)
        for optimiser in optimisers:
            assert optimiser.param_groups[0]["lr"] == pytest.approx(lr)
            assert optimiser.param_groups[0]["betas"] == pytest.approx((0.0, beta2))
        assert (loss.r1, loss.r2) == pytest.approx((gamma, gamma))
    ada = ADA(ADAOptions(schedule_kimg=4, final_p=0.3))
    ada.follow_schedule(1000)
    assert ada.statistics()["p"] == pytest.approx(0.3 * 0.5 * (1 - math.cos(math.pi / 4)))
    half_life = HalfLife(images=4000, rampup=None, ramp_images=8000, batch=10)
    assert half_life.decay(0) == 0  # the first update copies
    assert half_life.decay(400) == pytest.approx(0.5 ** (10 / 2000))  # half the ramp: half the half-life
    assert half_life.decay(2000) == pytest.approx(0.5 ** (10 / 4000))
    assert HalfLife(images=4000, rampup=0.05, ramp_images=None, batch=10).decay(2000) == pytest.approx(0.5 ** 0.01)


def test_lazy_penalties_rescale_the_critics_adam_as_stylegan2_does():
    loss = NonSaturating(PenalisedOptions(r1=1.0, lazy=4, lr_critic=1e-3, betas=(0.5, 0.99)))
    generator_adam, critic_adam = loss.optimisers(nn.Linear(2, 2), nn.Linear(2, 2))
    assert critic_adam.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.8)
    assert critic_adam.param_groups[0]["betas"] == pytest.approx((0.5 ** 0.8, 0.99 ** 0.8))
    assert generator_adam.param_groups[0]["betas"] == pytest.approx((0.5, 0.99))
    _, eager = NonSaturating(PenalisedOptions(r1=1.0, lr_critic=1e-3)).optimisers(nn.Linear(2, 2), nn.Linear(2, 2))
    assert eager.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_hinge_margin_is_drawn_per_score():
    critic = LinearCritic(torch.zeros(1, 1, 1, 1), b=0.9)  # every score 0.9
    real, fake = torch.zeros(64, 1, 1, 1), torch.zeros(64, 1, 1, 1)
    fixed = Hinge(HingeOptions()).critic_terms(critic_batch(Hinge(HingeOptions()), critic, real, fake))
    assert fixed["hinge_real"].item() == pytest.approx(0.1)
    loss = Hinge(HingeOptions(margin=(0.8, 1.0)))
    drawn = loss.critic_terms(critic_batch(loss, critic, real, fake))
    assert 0.0 < drawn["hinge_real"].item() < 0.1  # relu(m - 0.9) with m in [0.8, 1]: half the scores add nothing
    assert 1.6 < drawn["hinge_fake"].item() < 1.9


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
    assert a["components"]["ada"]["updates"] == 4  # its counters (and p) resumed where they stood
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
