"""The command line through real subprocesses: train, generate, interrupt and resume."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from ganzoo.runtime.checkpoint import load_checkpoint
from ganzoo.registry.loading import get_registry

from conftest import TINY_FLAGS, run_ganzoo


def test_train_then_generate(tmp_path):
    run = tmp_path / "run"
    result = run_ganzoo("train", "wgan", *TINY_FLAGS, "--steps", "3", "--out", run)
    assert result.returncode == 0, result.stderr
    assert "step 3: finished" in result.stdout
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 3
    grid = tmp_path / "grid.png"
    singles = tmp_path / "singles"
    result = run_ganzoo("generate", run / "checkpoint.pt", "-n", "9", "--out", grid, "--out-dir", singles)
    assert result.returncode == 0, result.stderr
    assert Image.open(grid).size == (2 + 3 * 34, 2 + 3 * 34)
    files = sorted(singles.iterdir())
    assert len(files) == 9 and Image.open(files[0]).size == (32, 32)
    again = tmp_path / "again.png"
    run_ganzoo("generate", run, "-n", "9", "--out", again)
    assert np.array_equal(np.asarray(Image.open(grid)), np.asarray(Image.open(again)))


def test_refuses_to_overwrite_a_run(tmp_path):
    run = tmp_path / "run"
    assert run_ganzoo("train", "wgan", *TINY_FLAGS, "--steps", "1", "--out", run).returncode == 0
    result = run_ganzoo("train", "wgan", *TINY_FLAGS, "--steps", "1", "--out", run)
    assert result.returncode == 2 and "--resume" in result.stderr


def test_ctrl_c_checkpoints_and_resume_finishes(tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "ganzoo", "train", "wgan", *TINY_FLAGS, "--steps", "100000",
                                "--set", "schedule.log_every=1", "--out", str(run), "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted; continue with --resume" in stdout and "Traceback" not in stderr
    stopped_at = load_checkpoint(run / "checkpoint.pt")["step"]
    assert stopped_at >= 1
    logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1] == stopped_at  # nothing done after the last logged step was lost

    result = run_ganzoo("train", "--resume", run, "--steps", str(stopped_at + 2), "--quiet")
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(run / "checkpoint.pt")["step"] == stopped_at + 2


def test_resume_rejects_config_changes(tmp_path):
    run = tmp_path / "run"
    assert run_ganzoo("train", "wgan", *TINY_FLAGS, "--steps", "1", "--out", run).returncode == 0
    result = run_ganzoo("train", "--resume", run, "--set", "schedule.batch_size=4")
    assert result.returncode == 2 and "own config" in result.stderr
    default = run_ganzoo("train", "--set", "data.image_size=32", "--set", "options.synthcovers.count=64",
                         "--set", "model.width=8", "--set", "schedule.batch_size=16", "--steps", "1", "--out",
                         tmp_path / "default", "--quiet")
    assert default.returncode == 0, default.stderr  # no recipe: the default one
    assert json.loads((tmp_path / "default" / "config.json").read_text())["recipe"] == \
        get_registry().default_recipe(32) == "dcgan+ns+diffaug"


def test_recipe_argument_overrides_the_config_file(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('recipe = "wgan"\n[schedule]\nbatch_size = 16\n[data]\nimage_size = 32\n'
                      '[options.synthcovers]\ncount = 64\n[model]\nwidth = 8\nlatent_dim = 16\n')
    result = run_ganzoo("train", "wgan+logan", "--config", config, "--steps", "1", "--out", tmp_path / "run",
                        "--quiet")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "config.json").read_text())["recipe"] == "dcgan+wgan+logan"  # as it ran
    result = run_ganzoo("train", "--config", config, "--steps", "1", "--out", tmp_path / "from_file", "--quiet")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "from_file" / "config.json").read_text())["recipe"] == "dcgan+wgan"
