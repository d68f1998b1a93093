"""On the machine the user has: sizes chosen per device, the pace measured and what the budget buys said after
the first steps, a budget that bounds the run, a step-0 checkpoint, an honest end message, and the messages
for paths that do not exist or read two ways."""


import numpy as np
import pytest
from PIL import Image

from ganzoo import hookimpl
from ganzoo.api.errors import GanzooError
from ganzoo.engine import training
from ganzoo.engine.defaults import fill_in
from ganzoo.evaluation.scoring import pace_line
from ganzoo.registry import loading as plugins
from ganzoo.registry.loading import get_registry, load_plugins
from ganzoo.runtime.checkpoint import load_checkpoint
from ganzoo.runtime.config import build_config

from conftest import STORE_FLAGS, TINY_FLAGS, assert_user_error, invoke, tiny_config


@pytest.fixture(scope="module")
def big_covers(tmp_path_factory):
    """Four 160 px covers, a duplicate of the first and a stray CSV file."""
    folder = tmp_path_factory.mktemp("big") / "covers"
    folder.mkdir()
    pixels = np.random.default_rng(1).integers(0, 256, (4, 160, 160, 3), dtype=np.uint8)
    for i, cover in enumerate(pixels):
        Image.fromarray(cover).save(folder / f"cover{i}.png")
    Image.fromarray(pixels[0]).save(folder / "again.png")
    (folder / "labels.csv").write_text("file,title\ncover0.png,a\n")
    return folder


@pytest.mark.parametrize("device, size, width", [("cpu", 64, 16), ("cuda", 128, 64)])
def test_a_cpu_trains_at_the_size_and_settings_it_can_move(big_covers, device, size, width):
    settings, notes = fill_in({"data": {"name": str(big_covers)}, "system": {"device": device}}, get_registry())
    config = build_config(settings)
    assert config.data.image_size == size and config.model.width == width
    assert config.recipe == "fastgan+projected+hinge+diffaug"
    if device == "cpu":
        assert "image size 64 px (the data's images are 160 px; at most 64 px on a CPU" in notes[0]
        assert config.options["projected"] == {"paper_layout": False, "mixing": False}
    else:
        assert config.options["projected"] == {"paper_layout": True}


def test_the_banner_says_what_preparing_the_folder_dropped(big_covers, tmp_path):
    result = invoke("train", "wgan", big_covers, *STORE_FLAGS, "--set", "schedule.batch_size=4", "--steps", "1",
                    "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "prepared:  kept 4 of 6 files; dropped: 1 exact duplicate, 1 not an image" in result.stderr, result.stderr


def test_paths_that_do_not_exist_and_arguments_that_read_two_ways(tmp_path, monkeypatch):
    assert_user_error(invoke("train", "./my-covrs", "--steps", "1"), "no such folder: ./my-covrs")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wgan").mkdir()
    assert_user_error(invoke("train", "wgan", "--steps", "1"), "'wgan' reads both as a recipe (dcgan+wgan) and as a "
                      "folder here: give --data wgan for the data, or --set recipe=wgan for the recipe")


class Clock:
    """Stands in for ``time``: wall-clock and CPU seconds that move only when told."""

    def __init__(self):
        self.now = 0.0
        self.cpu = None
        """CPU seconds when set apart from wall-clock ones."""

    def perf_counter(self):
        return self.now

    def process_time(self):
        return self.now if self.cpu is None else self.cpu


def test_a_budget_starts_no_step_it_has_no_room_for(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(training, "time", clock)
    budget = training.Budget(tiny_config(schedule={"steps": None, "minutes": 1.0}))
    for seconds in (9.0, 10.0, 10.0, 10.0, 10.0):  # the first step warms up; then 10 s a step
        assert not budget.spent()
        clock.now += seconds
        budget.step_done()
    assert budget.pace() == (10.0, 10.0)
    assert budget.estimate(5) == {"seconds_per_step": 10.0, "cpu_seconds_per_step": 10.0, "step": 5,
                                  "final_step": 6}  # 11 s left: room for one more
    assert not budget.spent()
    clock.now += 10.0
    budget.step_done()
    assert budget.spent()  # 1 s left, less than a step: the run ends inside its minute


def test_a_configuration_whose_steps_outlast_the_budget_is_refused(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(training, "time", clock)
    budget = training.Budget(tiny_config(schedule={"steps": None, "minutes": 0.5}))
    for _ in range(training.CALIBRATION_STEPS):
        clock.now += 40.0
        budget.step_done()
    assert budget.calibrated()
    with pytest.raises(GanzooError, match="one training step takes 40 s here, more than the whole budget of 0.5 "
                                          "minutes"):
        budget.check_one_step_fits()


def test_a_run_stopped_in_its_first_step_can_be_resumed(tmp_path, monkeypatch):
    def interrupted(self, step):
        raise KeyboardInterrupt

    monkeypatch.setattr(training.Trainer, "critic_phase", interrupted)
    result = invoke("train", "wgan", *TINY_FLAGS, "--steps", "2", "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 130 and "the last checkpoint is kept" in result.stderr
    assert load_checkpoint(tmp_path / "run")["step"] == 0
    monkeypatch.undo()
    resumed = invoke("train", "--resume", tmp_path / "run", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(tmp_path / "run")["step"] == 2


class Measured:
    @hookimpl
    def register_recipes(self, register):
        register("wgan", leaves_noise={32: 40}, source="a measurement")


def test_the_pace_and_the_end_say_where_the_budget_takes_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(plugins, "_registry", load_plugins({"measured": Measured()}))
    result = invoke("train", "wgan", *TINY_FLAGS, "--steps", "6", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "pace:" in result.stderr and "s a step (CPU" in result.stderr and "the budget ends at about step 6" \
        in result.stderr
    assert "outlook:   not enough: wgan's grids left the noise phase after about 40 steps at 32 px in " \
           "measured's measurement" in result.stderr
    assert "step 6: finished" in result.stdout and "this run is 34 steps short of it" in result.stdout


def test_bench_says_its_pace_and_suggests_smaller_counts_on_a_cpu():
    import torch

    line = pace_line("features generated", 0.05, 4936, torch.device("cpu"))
    assert line.startswith("features generated: 0.050 s an image after the first batch, about 04:06 more")
    assert "-n 1000 --real 1000" in line
    assert "-n 1000" not in pace_line("features generated", 0.05, 936, torch.device("cpu"))


class Cores:
    """A budget whose steps got ``received`` cores, and torch's thread count as a number."""

    def __init__(self, received, threads=2):
        self.received, self.threads = received, threads

    def cores_received(self):
        return self.received


def test_a_run_drops_to_the_cores_it_gets_on_a_busy_machine(monkeypatch):
    cores = Cores(received=1.1)
    monkeypatch.setattr(training.torch, "get_num_threads", lambda: cores.threads)
    monkeypatch.setattr(training.torch, "set_num_threads", lambda n: setattr(cores, "threads", n))
    share = training.ThreadShare(training.torch.device("cpu"), cores)
    said = [share.after_step(step) for step in range(1, 2 * training.ThreadShare.WINDOW + 1)]
    assert cores.threads == 1 and share.lowered == (training.ThreadShare.WINDOW, 2, 1)
    assert [line for line in said if line] == [f"step {training.ThreadShare.WINDOW}: the machine is busy (this run "
                                               "got 1.1 of its 2 threads' cores); training on with 1 thread"]


@pytest.mark.parametrize("received, device", [(1.9, "cpu"), (0.4, "cuda")])
def test_a_run_that_gets_its_cores_or_uses_a_gpu_keeps_its_threads(monkeypatch, received, device):
    cores = Cores(received)
    monkeypatch.setattr(training.torch, "get_num_threads", lambda: cores.threads)
    monkeypatch.setattr(training.torch, "set_num_threads", lambda n: setattr(cores, "threads", n))
    share = training.ThreadShare(training.torch.device(device), cores)
    assert not any(share.after_step(step) for step in range(1, 101)) and cores.threads == 2


def test_cores_received_is_cpu_time_over_wall_time(monkeypatch):
    clock = Clock()
    clock.cpu = 0.0
    monkeypatch.setattr(training, "time", clock)
    budget = training.Budget(tiny_config(schedule={"steps": None, "minutes": 1.0}))
    for cpu_share in (2.0, 1.0, 1.0, 1.0):  # the first step warms up and is left out
        clock.now += 1.0
        clock.cpu += cpu_share
        budget.step_done()
    assert budget.cores_received() == pytest.approx(1.0)


def test_the_estimate_is_made_again_after_the_threads_drop(tmp_path, monkeypatch):
    monkeypatch.setattr(training.ThreadShare, "after_step",
                        lambda self, step: "fewer threads" if step == 4 else None)
    estimates = []
    training.run_training(tiny_config(schedule={"steps": 10}), tmp_path / "run", progress=False,
                          calibrated=estimates.append)
    assert [estimate["step"] for estimate in estimates] == [training.CALIBRATION_STEPS,
                                                              4 + training.CALIBRATION_STEPS]
