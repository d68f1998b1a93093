"""Hardening, round three: every file a stranger hands ganzoo goes through one reader (JSON and JSON lines with
size and depth limits, validated; .npz with declared shapes checked before loading; images through the decoder's
limits), limits of memory are the process's, and plugins keep their promises about images, terms and scores.
Each case: exit code 2, one line naming the file or plugin and the reason, nothing written."""

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import tiny_extractor
from ganzoo import Architecture, Critic, CriticOutput, Generator, Metric, hookimpl, read_bytes
from ganzoo.api.errors import GanzooError
from ganzoo.engine.training import run_training
from ganzoo.registry import loading as plugins
from ganzoo.registry.loading import get_registry, load_plugins
from ganzoo.runtime import memory

from conftest import REPO, assert_user_error, invoke, tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stranger") / "run"
    run_training(tiny_config(schedule={"steps": 2}), folder, progress=False)
    return folder


def scored_run(folder, metrics_lines=None, config="{\"recipe\": \"wgan\"}", protocol="{}"):
    """A run folder as `bench compare` reads it: config.json, eval_protocol.json and metrics.jsonl."""
    folder.mkdir()
    (folder / "config.json").write_text(config)
    (folder / "eval_protocol.json").write_text(protocol)
    lines = metrics_lines if metrics_lines is not None else ['{"step": 10, "eval/fid": 50.5}']
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return folder


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("kind, content, message", [
    ("bench", '{"protocol": [], "scores": {"fid": 1.0}}', "protocol: input should be a valid dictionary"),
    ("bench", '{"protocol": "x", "scores": {"fid": 1.0}}', "protocol: input should be a valid dictionary"),
    ("bench", '[]', "is not usable: it holds a list, not a JSON object"),
    ("bench", DEEP, "is nested too deeply"),
    ("bench", '{"protocol": {}, "scores": {"fid": NaN}}', "NaN is not a JSON number"),
    ("bench", '{"protocol": {}, "scores": {"fid": "x"}}', "fid is 'x', not a finite number"),
    ("metrics", ["5"], "line 1, is not usable: it holds a number, not a JSON object"),
    ("metrics", ['{"eval/fid": 3.0}'], "line 1, is not usable: step: field required"),
    ("metrics", ['{"step": 1, "eval/fid": "x"}'], "line 1: eval/fid is 'x', not a finite number"),
    ("metrics", ['{"step": 1, "eval/fid": ' + "[" * 5000 + "]" * 5000 + "}"], "is nested too deeply"),
    ("config", "[]", "config.json is not usable: it holds a list, not a JSON object"),
    ("protocol", "[]", "eval_protocol.json is not usable: it holds a list, not a JSON object"),
])
def test_bench_compare_reads_strangers_files_through_one_door(tmp_path, kind, content, message):
    if kind == "bench":
        source = tmp_path / "bench.json"
        source.write_text(content)
    else:
        source = scored_run(tmp_path / "run", **{"metrics": {"metrics_lines": content}, "config": {"config": content},
                                                "protocol": {"protocol": content}}[kind])
    error = assert_user_error(invoke("bench", "compare", source, "--metric", "fid"), str(source))
    assert message.lower() in error.lower(), error


def test_bench_compare_refuses_devices_folders_and_links(tmp_path):
    assert_user_error(invoke("bench", "compare", "/dev/zero"), "/dev/zero", "not a regular file")
    folder = scored_run(tmp_path / "folder")
    (folder / "metrics.jsonl").unlink()
    (folder / "metrics.jsonl").mkdir()
    assert_user_error(invoke("bench", "compare", folder), "metrics.jsonl", "not a regular file")
    linked = scored_run(tmp_path / "linked")
    (linked / "metrics.jsonl").unlink()
    (linked / "metrics.jsonl").symlink_to(tmp_path / "folder" / "config.json")
    assert_user_error(invoke("bench", "compare", linked), "metrics.jsonl", "symbolic link")
    good = scored_run(tmp_path / "good")
    ranked = invoke("bench", "compare", good, "--metric", "fid")
    assert ranked.exit_code == 0 and "| 1 |" in ranked.stdout and "50.50" in ranked.stdout


def npz_declaring(path, shape, dtype="<f8", about="{}"):
    """An .npz whose features.npy header declares ``shape`` but holds a few bytes: a decompression bomb's
    declaration without its payload."""
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, header)
    npy.write(bytes(64))
    about_npy = io.BytesIO()
    np.lib.format.write_array(about_npy, np.array(about))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("features.npy", npy.getvalue())
        archive.writestr("about.npy", about_npy.getvalue())
    return path


@pytest.fixture
def tiny_registry(monkeypatch):
    monkeypatch.setattr(plugins, "_registry", load_plugins({"tiny": tiny_extractor}))


def test_reference_statistics_are_checked_before_loading_and_before_generating(run, tmp_path, tiny_registry):
    bomb = npz_declaring(tmp_path / "bomb.npz", (250_000, 2048))
    error = assert_user_error(invoke("bench", run, "--ref", bomb, "--extractor", "tiny", "-n", "8"), str(bomb))
    assert "declares 512,000,000 values of float64 (3.8 GiB)" in error
    deep = tmp_path / "deep.npz"
    np.savez(deep, features=np.zeros((4, 27)), about=np.array("[" * 100_000 + "]" * 100_000))
    assert_user_error(invoke("bench", run, "--ref", deep, "--extractor", "tiny", "-n", "8"), "nested too deeply")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, features=np.array([{"a": 1}], dtype=object), about=np.array("{}"))
    assert_user_error(invoke("bench", run, "--ref", pickled, "--extractor", "tiny", "-n", "8"), "is object")
    narrow = tmp_path / "narrow.npz"
    about = {"format": "ganzoo-reference-statistics", "image_size": 32, "extractor": tiny_extractor.TinyExtractor().protocol}
    np.savez(narrow, features=np.random.default_rng(0).normal(size=(8, 3)), about=np.array(json.dumps(about)))
    out = tmp_path / "bench.json"
    assert_user_error(invoke("bench", run, "--ref", narrow, "--extractor", "tiny", "-n", "8", "--out", out),
                      "hold features of width 3; the extractor makes 27")
    assert not out.exists()


def test_a_time_lapse_of_a_bomb_or_of_more_than_memory_is_one_line(run, tmp_path, monkeypatch):
    folder = tmp_path / "run"
    (folder / "samples").mkdir(parents=True)
    for step in (1, 2):
        Image.new("RGB", (32, 32), (step * 40, 0, 0)).save(folder / "samples" / f"step_{step:07d}.png")
    Image.new("1", (20000, 20000)).save(folder / "samples" / "step_0000003.png")
    assert (folder / "samples" / "step_0000003.png").stat().st_size < 100_000
    assert_user_error(invoke("timelapse", folder), "step_0000003.png", "too large")
    assert not (folder / "timelapse.gif").exists()
    (folder / "samples" / "step_0000003.png").unlink()
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000)
    assert_user_error(invoke("timelapse", folder, "--side", "4096"), "the time-lapse (2 frames) needs about",
                      "lower --side or --max-frames")


def test_paths_inside_a_checkpoint_are_never_followed_and_weights_files_are_bounded(tmp_path):
    registry = get_registry()
    assert registry.without_local_paths({"projected": {"weights": "/dev/zero", "mixing": False},
                                         "inception": {"weights": "/etc/passwd", "resize": "bicubic"}}) == \
        {"projected": {"mixing": False}, "inception": {"resize": "bicubic"}}
    with pytest.raises(GanzooError, match="refusing to open /dev/zero: it is not a regular file"):
        read_bytes("/dev/zero", "weights file", 1 << 20)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(GanzooError, match="not a regular file"):  # refused without blocking on the FIFO
        read_bytes(fifo, "weights file", 1 << 20)
    big = tmp_path / "big.pth"
    big.write_bytes(bytes(2048))
    with pytest.raises(GanzooError, match="larger than any weights file"):
        read_bytes(big, "weights file", 1024)


def test_the_memory_estimate_reads_the_process_limits():
    code = ("import resource, torch; from ganzoo.runtime.memory import available_bytes, address_space_left\n"
            "used = address_space_left()\n"
            "resource.setrlimit(resource.RLIMIT_AS, (6 << 30, resource.RLIM_INFINITY))\n"
            "print(used is None, available_bytes(torch.device('cpu')) < 6 << 30)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["True", "True"], result.stderr


def test_running_out_of_memory_anywhere_is_one_line(run, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "address_space_left", lambda: 10_000)
    assert_user_error(invoke("generate", run, "-n", "64", "--out", tmp_path / "grid.png"),
                      "needs about", "more than the 9.8 KiB free on cpu")  # what ulimit -v leaves, not the machine
    monkeypatch.undo()

    def starved(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 4194304 bytes. Error code 12 (Cannot allocate memory)")

    from ganzoo.engine.sampling import Sampler
    monkeypatch.setattr(Sampler, "covers", starved)
    assert_user_error(invoke("generate", run, "-n", "4", "--out", tmp_path / "grid.png"), "ran out of memory",
                      "can't allocate memory")
    assert not (tmp_path / "grid.png").exists()


def test_links_inside_a_run_are_refused_before_any_work(run, tmp_path):
    received = tmp_path / "received"
    received.mkdir()
    (received / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "step_0000004.pt").write_bytes((run / "checkpoint.pt").read_bytes())
    (received / "snapshots").symlink_to(outside)
    assert_user_error(invoke("generate", f"{received}@4", "-n", "4", "--out", tmp_path / "a.png"), "snapshots",
                      "symbolic link")
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "frame_00001.png").symlink_to(tmp_path / "elsewhere.png")
    assert_user_error(invoke("generate", run, "--interpolate", "2", "--frames", "2", "-n", "4", "--out-dir", frames),
                      "frame_00001.png", "symbolic link")
    assert not (frames / "frame_00000.png").exists()  # refused before the first frame


def test_smaller_cases(run, tmp_path):
    assert_user_error(invoke("generate", run, "--truncation", "nan", "--out", tmp_path / "g.png"), "not nan")
    assert_user_error(invoke("bench", run, "--set", "options.nope.x=1"), "uses no component 'nope'")
    assert_user_error(invoke("bench", run, "--set", "options.kid.nope=1"), "options.kid.nope")
    assert_user_error(invoke("bench", run, "--set", "options.fid.nope=1"), "metric 'fid' (plugin 'metrics') takes no "
                                                                          "options")
    odd = tmp_path / "odd"
    (odd / "snapshots").mkdir(parents=True)
    (odd / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes())
    (odd / "snapshots" / "step_4.pt").write_bytes((run / "checkpoint.pt").read_bytes())
    assert_user_error(invoke("generate", f"{odd}@4", "--out", tmp_path / "g.png"),
                      "has no snapshot of step 4; its snapshots: none")
    assert_user_error(invoke("data", "preview", "synthcovers", "--size", "4096"),
                      "no installed plugin provides a default loss at 4096 px")
    assert_user_error(invoke("project", run, "/dev/zero", "--out-dir", tmp_path / "p"), "/dev/zero",
                      "not a regular file")


# --- plugin promises, third round -----------------------------------------------------------------------------

class LoudGenerator(Generator):
    def __init__(self, spec):
        super().__init__()
        self.latent_dim, self.size = spec.latent_dim, spec.image_size
        self.net = nn.Linear(spec.latent_dim, 3 * spec.image_size ** 2)

    def forward(self, z, c=None):
        return 3 * torch.tanh(self.net(z)).view(-1, 3, self.size, self.size)


class FlatCritic(Critic):
    def __init__(self, spec):
        super().__init__()
        self.net = nn.Linear(3 * spec.image_size ** 2, 1)

    def forward(self, x, c=None):
        return CriticOutput(self.net(x.flatten(1)).squeeze(1))


class Loud(Architecture):
    image_sizes = (32,)

    def build(self, spec):
        return LoudGenerator(spec), FlatCritic(spec)


class Careless:
    """A third party's mistakes: images in [-3, 3], a NaN loss term, metrics returning a string and NaN."""

    @hookimpl
    def register_architectures(self, register):
        register("loud", lambda options: Loud())

    @hookimpl
    def register_losses(self, register):
        from ganzoo_wgan import WGANGP, WGANGPOptions

        class NaNLoss(WGANGP):
            def critic_terms(self, batch):
                return super().critic_terms(batch) | {"broken": torch.tensor(float("nan"))}

        register("nanloss", lambda options: NaNLoss(WGANGPOptions(n_critic=1)))

    @hookimpl
    def register_metrics(self, register):
        class Says(Metric):
            needs_features = needs_reference = False

            def __init__(self, value):
                self.value = value

            def compute(self, inputs):
                return {"said": self.value}

        register("wordy", lambda options: Says("fine"))
        register("nanny", lambda options: Says(float("nan")))


@pytest.fixture
def careless(monkeypatch):
    monkeypatch.setattr(plugins, "_registry", load_plugins({"careless": Careless()}))


def test_images_past_the_promised_range_are_refused_naming_the_architecture(careless, tmp_path):
    result = invoke("train", "loud+wgan", "--set", "data.image_size=32", "--set", "options.synthcovers.count=16",
                    "--set", "schedule.batch_size=4", "--steps", "1", "--out", tmp_path / "run", "--quiet")
    error = assert_user_error(result, "architecture 'loud' (plugin 'careless') broke its promise: its generator's "
                                      "images range over [-")
    assert "not [-1, 1] (tolerance 0.05)" in error


def test_a_nan_term_names_its_component_and_only_files_that_exist(careless, tmp_path):
    result = invoke("train", "nanloss", "--set", "data.image_size=32", "--set", "options.synthcovers.count=16",
                    "--set", "schedule.batch_size=4", "--set", "model.width=8", "--steps", "3",
                    "--out", tmp_path / "run", "--quiet")
    error = assert_user_error(result, "training diverged at step 1: the term critic/broken of loss 'nanloss' "
                                      "(plugin 'careless') is nan")
    assert f"{tmp_path / 'run' / 'checkpoint.pt'} keeps the last finite state" in error
    assert (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("metric, shown", [("wordy", "'fine'"), ("nanny", "nan")])
def test_a_metric_that_returns_no_finite_number_is_named(careless, run, tmp_path, metric, shown):
    out = tmp_path / "bench.json"
    assert_user_error(invoke("bench", run, "--metric", metric, "-n", "4", "--out", out),
                      f"metric '{metric}' (plugin 'careless') broke its promise: its score said is {shown}, not a "
                      "finite number")
    assert not out.exists()


def test_plugin_tests_run_ganzoos_checks_through_check_recipe(careless):
    from ganzoo import check_recipe

    with pytest.raises(GanzooError, match="architecture 'loud' .* broke its promise"):
        check_recipe("loud+wgan", {"data.image_size": 32})
    assert check_recipe("wgan")["step"] == 3


def test_the_docs_promise_what_changed_since_v1():
    text = (REPO / "docs" / "plugins.md").read_text()
    assert "## 9. What changed since v1" in text and "check_recipe" in text and "local_path" in text
