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


def invoke(*args):
    """Run the real CLI in this process (no interpreter start-up): a click Result with exit_code, stdout and
    stderr."""
    from click.testing import CliRunner

    from ganzoo.cli import cli
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def assert_user_error(result, *fragments):
    """Exit code 2 and one ``Error: ...`` line, the last on stderr (progress bars may precede it), containing
    every fragment; no traceback."""
    detail = f"exit {result.exit_code}, stdout {result.stdout!r}, stderr {result.stderr!r}, {result.exception!r}"
    assert result.exit_code == 2 and "Traceback" not in result.stderr, detail
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], detail
    for fragment in fragments:
        assert fragment in errors[0], detail
    return errors[0]
