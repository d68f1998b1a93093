"""StyleGAN2 (`stylegan2`): demodulation, the mapping network's learning rate, w's running average and
truncation in W, and a run of the paper's recipe through the command line."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_same_state, invoke, tiny_config
from ganzoo import ArchitectureSpec
from ganzoo.engine.sampling import load_sampler
from ganzoo.engine.training import run_training
from ganzoo.runtime.checkpoint import load_checkpoint
from ganzoo_stylegan2 import EqualLinear, StyleGAN2, StyleGAN2Options, StyledConv


@pytest.mark.parametrize("style_scale", [0.05, 1.0, 20.0])
def test_demodulation_gives_unit_variance_whatever_the_style(style_scale):
    torch.manual_seed(0)
    conv = StyledConv(64, 64, 16, 32, activate=False)
    with torch.no_grad():
        out = conv(torch.randn(8, 64, 32, 32), torch.randn(8, 16) * style_scale)
        undemodulated = StyledConv(64, 64, 16, 32, demodulate=False, activate=False)
        plain = undemodulated(torch.randn(8, 64, 32, 32), torch.randn(8, 16) * 20.0)
    assert out[:, :, 1:-1, 1:-1].var().item() == pytest.approx(1.0, abs=0.06)  # inside: no zero padding
    assert plain.var().item() > 10  # without demodulation large styles blow the variance up


def test_the_mapping_learning_rate_scales_the_effective_step():
    """One Adam step of the same size moves an lr-0.01 layer's effective weight 0.01x as far."""
    torch.manual_seed(0)
    slow, fast = EqualLinear(32, 32, lr=0.01), EqualLinear(32, 32, lr=1.0)
    with torch.no_grad():
        fast.weight.copy_(slow.weight * 0.01)
    x = torch.randn(16, 32)
    assert torch.allclose(slow(x), fast(x), atol=1e-5)  # the same function at the start
    moved = []
    for layer in (slow, fast):
        before = (layer.weight * layer.scale).detach().clone()
        optimiser = torch.optim.Adam(layer.parameters(), lr=1e-3)
        layer(x).square().mean().backward()
        optimiser.step()
        moved.append(((layer.weight * layer.scale).detach() - before).abs().mean().item())
    assert moved[0] / moved[1] == pytest.approx(0.01, rel=0.02)


def test_w_average_follows_training_batches_and_stays_in_eval():
    generator, _ = StyleGAN2(StyleGAN2Options(mapping_layers=2)).build(
        ArchitectureSpec(image_size=32, latent_dim=16, width=8))
    generator.train()
    z = torch.randn(32, 16)
    generator(z)
    expected = generator.mapping(z).mean(dim=0) * (1 - 0.995)
    assert torch.allclose(generator.w_average, expected, atol=1e-6)
    generator.eval()
    generator(torch.randn(32, 16))
    assert torch.allclose(generator.w_average, expected, atol=1e-6)


def test_style_mixing_gives_later_layers_a_second_latents_w():
    generator, _ = StyleGAN2(StyleGAN2Options(mapping_layers=2, style_mixing=1.0)).build(
        ArchitectureSpec(image_size=32, latent_dim=16, width=8))
    z = torch.randn(64, 16)
    w = generator.mapping(z)
    ws = generator.mixed(w, z, None)
    assert ws.shape == (64, generator.layers, 16) and torch.equal(ws[:, 0], w)
    first_other = (ws != w[:, None]).any(dim=2).float().argmax(dim=1)
    assert (first_other >= 1).all() and len(set(first_other.tolist())) > 3  # the cut-off varies per image
    for i, cut in enumerate(first_other.tolist()):
        assert (ws[i, cut:] == ws[i, cut]).all()  # one second w from the cut-off on
    none = StyleGAN2(StyleGAN2Options(mapping_layers=2, style_mixing=0.0)).build(
        ArchitectureSpec(image_size=32, latent_dim=16, width=8))[0]
    assert torch.equal(none.mixed(w, z, None), w[:, None].expand(-1, none.layers, -1))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stylegan2") / "run"
    config = tiny_config(recipe="stylegan2+ns+ada", schedule={"steps": 3}, model={"width": 8, "latent_dim": 16},
                         options={"stylegan2": {"mapping_layers": 2}})
    run_training(config, folder, progress=False)
    return folder


def test_truncation_zero_gives_the_w_averages_cover(run):
    sampler = load_sampler(run, torch.device("cpu"))
    assert sampler.mapped and sampler.generator.w_average.abs().sum() > 0
    sampler.truncation = 0.0
    images, _ = sampler.covers(4, seed=1)
    with torch.no_grad():
        average = sampler.generator.synthesis(sampler.generator.w_average[None])
    expected = ((average.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    assert all(torch.equal(image, expected[0]) for image in images)
    sampler.truncation = 1.0
    varied, _ = sampler.covers(4, seed=1)
    assert not torch.equal(varied[0], varied[1])


def test_a_stylegan2_run_resumes_exactly_and_generates(run, tmp_path):
    config = tiny_config(recipe="stylegan2+ns+ada", schedule={"steps": 3}, model={"width": 8, "latent_dim": 16},
                         options={"stylegan2": {"mapping_layers": 2}})
    half = config.model_copy(update={"schedule": config.schedule.model_copy(update={"steps": 2})})
    run_training(half, tmp_path / "split", progress=False)
    run_training(config, tmp_path / "split", resume=load_checkpoint(tmp_path / "split" / "checkpoint.pt"),
                 progress=False)
    a, b = load_checkpoint(run / "checkpoint.pt"), load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    for key in ("step", "generator", "critic", "ema", "optimiser_g", "optimiser_d"):
        assert_same_state(a[key], b[key], key)
    result = invoke("generate", run, "-n", "4", "--truncation", "0.5", "--out", tmp_path / "grid.png")
    assert result.exit_code == 0, result.output
    result = invoke("generate", run, "--interpolate", "2", "--frames", "2", "-n", "1", "--out-dir", tmp_path / "walk")
    assert result.exit_code == 0, result.output
    frames = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "walk").glob("frame_*.png"))]
    assert len(frames) == 4 and not np.array_equal(frames[0], frames[1])
    assert math.isfinite(float(np.asarray(Image.open(tmp_path / "grid.png")).mean()))
