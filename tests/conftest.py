import os
import subprocess
import sys
from pathlib import Path

import pytest

from ganzoo.config import build_config

REPO = Path(__file__).resolve().parents[1]
TINY = {"data": {"image_size": 32, "count": 128}, "model": {"width": 8, "latent_dim": 16}, "batch_size": 16,
        "steps": 4, "log_every": 1, "sample_every": 2, "checkpoint_every": 2,
        "options": {"wgan": {"n_critic": 2}}}
TINY_FLAGS = ["--set", "data.image_size=32", "--set", "data.count=128", "--set", "model.width=8",
              "--set", "model.latent_dim=16", "--set", "batch_size=16", "--set", "options.wgan.n_critic=2"]


def tiny_config(**changes):
    merged = {**TINY, **changes}
    return build_config(merged)


def run_ganzoo(*args, env=None, cwd=None, timeout=300):
    """Run the real CLI in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "ganzoo", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANZOO_CACHE", str(tmp_path / "cache"))
