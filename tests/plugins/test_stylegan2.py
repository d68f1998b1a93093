"""StyleGAN2 (`stylegan2`): demodulation, the mapping network's learning rate, w's running average and
truncation in W, style mixing, path length, and runs of the paper's recipe through the command line: resume,
generate, fine-tuning with frozen critic blocks, the studio."""

import io
import json
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
    expected = ((average.clamp(-1, 1) + 1) * 127.5)[0]
    assert all(torch.equal(image, images[0]) for image in images)  # one cover, whatever the latent
    assert (images[0].float() - expected).abs().max() <= 1  # the average w's (a batch of one rounds apart)
    sampler.truncation = 1.0
    varied, _ = sampler.covers(4, seed=1)
    assert not torch.equal(varied[0], varied[1])


def test_projection_in_w_recovers_a_cover_the_generator_made(run, tmp_path):
    """Measured on this run, 100 steps, covers of seeds 11-13: pixel distance from 0.23-0.38 at the start to
    0.11-0.21 in z, 0.030-0.100 in W and 0.014-0.020 in W+."""
    from ganzoo.apps.projection import project

    sampler = load_sampler(run, torch.device("cpu"))
    target = sampler.covers(1, seed=11)[0][0]
    found = {space: project(sampler, None, target, 100, seed=0, space=space, progress=False)
             for space in ("z", "w", "w+")}
    assert len({projection.start["pixel"] for projection in found.values()}) == 1  # one start: the best candidate
    assert found["w+"].end["pixel"] < 0.03 and found["w"].end["pixel"] < 0.06
    assert found["w+"].end["pixel"] < found["w"].end["pixel"] < found["z"].end["pixel"] < found["z"].start["pixel"]
    assert found["w+"].latent.shape == (1, sampler.generator.layers, sampler.generator.w_average.shape[0])
    Image.fromarray(target.permute(1, 2, 0).numpy()).save(tmp_path / "made.png")
    for space, shape in ((None, (16,)), ("w+", (sampler.generator.layers, 16))):
        result = invoke("project", run, tmp_path / "made.png", "--steps", "5", "--variations", "2",
                        "--out-dir", tmp_path / str(space), *(["--space", space] if space else []))
        assert result.exit_code == 0, result.output
        record = json.loads((tmp_path / str(space) / "projection.json").read_text())
        assert record["space"] == (space or "w") and np.array(record["latent"]).shape == shape
    run_training(tiny_config(schedule={"steps": 1}), tmp_path / "dcgan", progress=False)
    result = invoke("project", tmp_path / "dcgan", tmp_path / "made.png", "--space", "w", "--steps", "1")
    assert result.exit_code == 2 and "needs a W space" in result.stderr


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
    result = invoke("generate", run, "--interpolate", "2", "--frames", "2", "-n", "1", "--out", tmp_path / "walk.gif",
                    "--out-dir", tmp_path / "walk")
    assert result.exit_code == 0, result.output
    frames = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "walk").glob("frame_*.png"))]
    assert len(frames) == 4 and not np.array_equal(frames[0], frames[1])
    assert math.isfinite(float(np.asarray(Image.open(tmp_path / "grid.png")).mean()))


def test_mix_writes_a_style_mixing_grid_and_a_model_without_w_refuses(run, tmp_path):
    sampler = load_sampler(run, torch.device("cpu"))
    grid = sampler.style_mix(3, seed=2)
    assert grid.shape == (16, 3, 32, 32) and grid[0].sum() == 0  # 4 x 4, the corner blank
    columns, rows = sampler.covers(6, seed=2)[0][:3], grid[[4, 8, 12]]
    assert torch.equal(grid[1:4], columns) and not torch.equal(rows[0], rows[1])
    assert not torch.equal(grid[5], grid[6])  # the same row's w, other columns' coarse styles
    result = invoke("generate", run, "--mix", "3", "--out", tmp_path / "mix.png")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "mix.png").size[0] > 4 * 32
    run_training(tiny_config(schedule={"steps": 1}), tmp_path / "dcgan", progress=False)
    result = invoke("generate", tmp_path / "dcgan", "--mix", "2", "--out", tmp_path / "no.png")
    assert result.exit_code == 2 and "no W space" in result.stderr


def test_the_path_length_penalty_is_its_definition_on_a_linear_generator():
    """A generator whose images are a fixed linear map A of w: J^T y = A^T y, computed here by hand."""
    from ganzoo import Batch, MappedGenerator
    from ganzoo_stylegan2 import PathLength, PathLengthOptions

    class Linear(MappedGenerator):
        latent_dim, layers = 4, 2

        def __init__(self):
            super().__init__()
            self.A = torch.nn.Parameter(torch.randn(3 * 2 * 2, 4))
            self.identity = torch.nn.Parameter(torch.eye(4))
            self.register_buffer("w_average", torch.zeros(4))

        def mapping(self, z, c=None):
            return z @ self.identity

        def synthesis(self, w):
            return (w.sum(dim=1) @ self.A.T).reshape(-1, 3, 2, 2)

    generator = Linear()
    penalty = PathLength(PathLengthOptions(weight=1.0, interval=1, decay=1.0, batch_shrink=1))
    fake = torch.zeros(8, 3, 2, 2)
    batch = Batch("generator", fake, None, None, None, None, step=0, generator=generator)
    torch.manual_seed(5)
    terms = penalty.generator_terms(batch)
    torch.manual_seed(5)
    torch.randn(8, 4)  # the latents the penalty drew (their values do not matter: the map is linear)
    y = torch.randn(8, 3, 2, 2) / 2
    per_layer = y.flatten(1) @ generator.A  # J^T y for each layer's w: the sum over layers makes each one's A
    lengths = per_layer.square().sum(dim=1).sqrt()  # the mean over the 2 layers of equal squared norms
    assert penalty.mean == pytest.approx(lengths.mean().item(), rel=1e-5)  # decay 1: the mean is this batch's
    assert terms["path_length"].item() == pytest.approx((lengths - lengths.mean()).square().mean().item(), rel=1e-4)
    later = Batch("generator", fake, None, None, None, None, step=1, generator=generator)
    assert penalty.generator_terms(later) != {}  # interval 1: every step
    assert PathLength(PathLengthOptions(interval=4)).generator_terms(later) == {}  # lazy: every 4th step only


def test_stylegan2_with_path_length_trains_and_resumes_its_running_mean(tmp_path):
    common = dict(recipe="stylegan2+ns+ada+pl", model={"width": 8, "latent_dim": 16},
                  options={"stylegan2": {"mapping_layers": 2}, "pl": {"interval": 1}})
    straight = run_training(tiny_config(**common, schedule={"steps": 3}), tmp_path / "straight", progress=False)
    run_training(tiny_config(**common, schedule={"steps": 2}), tmp_path / "split", progress=False)
    run_training(tiny_config(**common, schedule={"steps": 3}), tmp_path / "split",
                 resume=load_checkpoint(tmp_path / "split" / "checkpoint.pt"), progress=False)
    a, b = load_checkpoint(straight["checkpoint"]), load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert a["components"]["pl"]["mean"] > 0
    assert_same_state(a["components"], b["components"], "components")
    assert_same_state(a["generator"], b["generator"], "generator")


@pytest.mark.parametrize("recipe", ["stylegan2+projected+hinge", "stylegan2+hinge+diffaug"])
def test_stylegan2_composes_with_other_critics_losses_and_augmentations(recipe, tmp_path):
    config = tiny_config(recipe=recipe, schedule={"steps": 1}, model={"width": 8, "latent_dim": 16},
                         options={"stylegan2": {"mapping_layers": 2}})
    assert run_training(config, tmp_path / "run", progress=False)["step"] == 1


def test_fine_tuning_a_stylegan2_run_on_another_folder_freezes_the_first_critic_blocks(run, tmp_path):
    folder = tmp_path / "covers"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    result = invoke("train", "stylegan2+ns+ada", folder, "--set", "data.image_size=32", "--set",
                    "schedule.batch_size=8", "--set", "options.stylegan2.mapping_layers=2", "--set",
                    "model.freeze_critic_blocks=2", "--init-from", run, "--steps", "2", "--out", tmp_path / "tuned",
                    "--quiet")
    assert result.exit_code == 0, result.output
    before, after = load_checkpoint(run / "checkpoint.pt")["critic"], load_checkpoint(tmp_path / "tuned")["critic"]
    frozen = [k for k in before if k.startswith(("from_rgb.", "blocks.0."))]
    trained = [k for k in before if k.startswith(("blocks.1.", "dense."))]
    assert frozen and trained
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in trained)


def test_the_studio_serves_a_stylegan2_checkpoint(run):
    from ganzoo.apps.studio import Studio, create_app

    client = create_app(Studio(load_sampler(run, torch.device("cpu")))).test_client()
    info = client.get("/api/info").get_json()
    assert info["vector"] is False and info["image_size"] == 32
    grid = client.get("/api/covers?seed=4").get_json()["covers"]
    assert len(grid) == 9 and grid[0] != grid[1] and grid == client.get("/api/covers?seed=4").get_json()["covers"]
    finished = client.get("/api/cover.jpg?seed=4&index=1&size=96")
    assert finished.status_code == 200 and Image.open(io.BytesIO(finished.data)).size == (96, 96)
