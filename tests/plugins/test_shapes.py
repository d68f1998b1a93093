"""The vector generator `shapes`: its rasteriser against a standard SVG renderer (cairosvg), sizes up to 4096 px,
tiles, gradients, and a run through the command line: training, exact resume, covers drawn at the size asked
for and written as SVG."""

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_same_state, assert_user_error, invoke, tiny_config
from ganzoo import ArchitectureSpec
from ganzoo.engine.training import run_training
from ganzoo.runtime.checkpoint import load_checkpoint
from ganzoo_shapes import ShapesGenerator, ShapesOptions
from ganzoo_shapes import rasteriser
from ganzoo_shapes.rasteriser import Shapes, render, svg_of

SVG_PSNR = 45.0
"""Our render against cairosvg's at 512 px: 49.9 to 50.8 dB measured on four random covers."""


def generator(seed=0, **options) -> ShapesGenerator:
    torch.manual_seed(seed)
    return ShapesGenerator(ArchitectureSpec(image_size=64, latent_dim=16, width=8), ShapesOptions(**options)).eval()


def as_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images.permute(0, 2, 3, 1).numpy() + 1) / 2 * 255).round().clip(0, 255)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255 ** 2 / max(((a - b) ** 2).mean(), 1e-12))


def test_the_render_matches_a_standard_svg_renderer_at_512_px():
    import cairosvg

    g = generator()
    z = torch.randn(3, 16)
    with torch.no_grad():
        ours, documents = as_uint8(g.draw(z, None, 512)), g.svg(z, None, 512)
    for image, document in zip(ours, documents):
        theirs = np.asarray(Image.open(io.BytesIO(cairosvg.svg2png(bytestring=document.encode()))).convert("RGB"))
        assert psnr(image, theirs.astype(float)) > SVG_PSNR


def one_disc(radius: float, opacity: float = 1.0) -> Shapes:
    """A white disc on black, centred."""
    background = torch.zeros(1, 4, 3)
    return Shapes(background, torch.zeros(1), torch.full((1, 2), 0.5), torch.ones(1), torch.zeros(1), ("ellipse",),
                  torch.tensor([[[0.5, 0.5, radius, radius, 1.0, 0.0]]]), torch.zeros(1, 1), torch.ones(1, 1, 3),
                  torch.full((1, 1), opacity), torch.zeros(1, 1))


@pytest.mark.parametrize("size", [32, 47, 64, 300, 1000])
def test_a_disc_covers_its_area_at_every_size(size):
    image = render(one_disc(0.3), size)
    assert image.shape == (1, 3, size, size)
    assert image[0, 0].sum().item() / size ** 2 == pytest.approx(math.pi * 0.3 ** 2, rel=0.01)
    assert render(one_disc(0.3, 0.5), size)[0, 0].max().item() == pytest.approx(0.5)


def test_tiles_change_nothing(monkeypatch):
    g = generator()
    z = torch.randn(2, 16)
    with torch.no_grad():
        whole = g.draw(z, None, 96)
        monkeypatch.setattr(rasteriser, "TILE", 20)
        tiled = g.draw(z, None, 96)
    assert torch.allclose(whole, tiled, atol=1e-6)


def test_4096_px_is_the_64_px_cover_in_detail():
    """The largest size draws the same cover: averaged down to 64 px it is the 64 px render."""
    g = generator(ellipses=3, rectangles=2, triangles=2, strokes=2)
    z = torch.randn(1, 16)
    with torch.no_grad():
        big, small = g.draw(z, None, 4096), g.draw(z, None, 64)
    assert big.shape == (1, 3, 4096, 4096) and big.abs().max() <= 1
    down = torch.nn.functional.avg_pool2d(big, 64)
    assert (down - small).abs().mean() < 0.02


def test_gradients_reach_every_kind_of_parameter():
    g = generator()
    g.train()
    images = g(torch.randn(4, 16))
    images.square().mean().backward()
    grad = g.head.weight.grad.abs().sum(dim=1)
    background, shapes = grad[:18], grad[18:].reshape(len(g.kind), 12)
    assert (background[:12] > 0).all() and background[12:18].sum() > 0
    assert (shapes[:, 7:11] > 0).all()  # colour and opacity of every shape
    assert (shapes[:, :6].sum(dim=1) > 0).all()  # every shape's geometry, through its edges


def test_svg_draws_the_shapes_from_the_lowest_depth_up():
    shapes = one_disc(0.2)
    two = Shapes(shapes.background, shapes.angle, shapes.centre, shapes.radius, shapes.mix, ("ellipse", "rectangle"),
                 torch.tensor([[[0.5, 0.5, 0.2, 0.2, 1.0, 0.0], [0.5, 0.5, 0.1, 0.1, 1.0, 0.0]]]),
                 torch.zeros(1, 2), torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]), torch.ones(1, 2),
                 torch.tensor([[5.0, -1.0]]))
    document = svg_of(two, 0, 100)
    assert document.index("<rect transform") < document.index("<ellipse")
    assert render(two, 100)[0, :, 50, 50].tolist() == [1.0, 0.0, 0.0]  # the disc, higher, covers the square


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes") / "run"
    config = tiny_config(recipe="shapes+hinge", schedule={"steps": 2}, model={"width": 8, "latent_dim": 16})
    run_training(config, folder, progress=False)
    return folder


def test_a_shapes_run_resumes_exactly(run, tmp_path):
    config = tiny_config(recipe="shapes+hinge", model={"width": 8, "latent_dim": 16})
    straight = run_training(config.model_copy(update={"schedule": config.schedule.model_copy(update={"steps": 4})}),
                            tmp_path / "straight", progress=False)
    half = config.model_copy(update={"schedule": config.schedule.model_copy(update={"steps": 2})})
    run_training(half, tmp_path / "split", progress=False)
    run_training(config.model_copy(update={"schedule": config.schedule.model_copy(update={"steps": 4})}),
                 tmp_path / "split", resume=load_checkpoint(tmp_path / "split" / "checkpoint.pt"), progress=False)
    a, b = load_checkpoint(straight["checkpoint"]), load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    for key in ("step", "generator", "critic", "ema", "optimiser_g", "optimiser_d"):
        assert_same_state(a[key], b[key], key)


def test_generate_draws_at_the_size_asked_for_and_writes_svg(run, tmp_path):
    import cairosvg

    assert invoke("generate", run, "-n", "1", "--out", tmp_path / "model.png").exit_code == 0
    result = invoke("generate", run, "--size", "256", "--out", tmp_path / "drawn.png")
    assert result.exit_code == 0, result.output
    result = invoke("generate", run, "-n", "2", "--format", "svg", "--size", "256", "--out-dir", tmp_path / "svg")
    assert result.exit_code == 0, result.output
    model = np.asarray(Image.open(tmp_path / "model.png").convert("RGB")).astype(float)
    drawn = np.asarray(Image.open(tmp_path / "drawn.png")).astype(float)
    assert drawn.shape == (256, 256, 3)
    down = drawn.reshape(32, 8, 32, 8, 3).mean(axis=(1, 3))
    assert np.abs(down - model).mean() < 6  # the same cover, drawn, not enlarged
    theirs = np.asarray(Image.open(io.BytesIO(cairosvg.svg2png(
        bytestring=(tmp_path / "svg" / "00000.svg").read_bytes()))).convert("RGB")).astype(float)
    assert theirs.shape == (256, 256, 3) and psnr(drawn, theirs) > SVG_PSNR - 5
    assert sorted(p.name for p in (tmp_path / "svg").iterdir()) == ["00000.svg", "00001.svg"]


def test_a_pixel_model_refuses_svg_in_one_line(tmp_path):
    run_training(tiny_config(schedule={"steps": 1}), tmp_path / "run", progress=False)
    assert_user_error(invoke("generate", tmp_path / "run", "--out", tmp_path / "c.svg"), "paints pixels")
    assert not (tmp_path / "c.svg").exists()
