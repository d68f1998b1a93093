"""The optional outputs a run writes when their libraries are installed (CI installs both): TensorBoard events
with the scalars, the sample grid and the evaluation curve, and the metric-against-steps plot."""

import pytest
from PIL import Image

import tiny_extractor
from ganzoo.registry import loading as plugins_module
from ganzoo.registry.loading import load_plugins
from ganzoo.engine.training import run_training

from conftest import run_ganzoo, tiny_config

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


@pytest.fixture
def registry(monkeypatch):
    registry = load_plugins({"tiny": tiny_extractor})
    monkeypatch.setattr(plugins_module, "_registry", registry)
    return registry


def test_tensorboard_gets_scalars_the_sample_grid_and_the_evaluation_curve(registry, tmp_path):
    run = tmp_path / "run"
    run_training(tiny_config(schedule={"steps": 4}, evaluation={"every": 2, "images": 32, "extractor": "tiny"}), run, registry=registry,
          progress=False)
    events = event_accumulator.EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"critic/wasserstein", "critic/gradient_penalty", "generator/adversarial", "critic_images_per_s",
            "eval/fid"} <= set(scalars)
    assert [e.step for e in events.Scalars("critic/wasserstein")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("eval/fid")] == [2, 4]
    images = events.Images("samples")
    assert [image.step for image in images] == [2, 4, 4]  # every sample_every steps, and at the end
    grid = images[-1]
    assert (grid.width, grid.height) == (4 * 32 + 5 * 2, 4 * 32 + 5 * 2)  # 16 covers in a 4 x 4 grid


def test_compare_plots_the_metric_against_steps(registry, tmp_path):
    for name, seed in (("a", 0), ("b", 1)):
        run_training(tiny_config(schedule={"steps": 4}, system={"seed": seed}, evaluation={"every": 2, "images": 32, "extractor": "tiny"}), tmp_path / name,
              registry=registry, progress=False)
    plot = tmp_path / "fid.png"
    result = run_ganzoo("bench", "compare", tmp_path / "a", tmp_path / "b", "--plot", plot)
    assert result.returncode == 0, result.stderr
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size == (840, 480)
    assert "| 1 |" in result.stdout and "| 2 |" in result.stdout
