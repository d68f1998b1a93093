import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from ganzoo.runtime.config import build_config

REPO = Path(__file__).resolve().parents[1]
TINY = {"recipe": "wgan", "data": {"image_size": 32}, "model": {"width": 8, "latent_dim": 16},
        "schedule": {"batch_size": 16, "steps": 4, "log_every": 1, "sample_every": 2, "checkpoint_every": 2},
        "options": {"wgan": {"n_critic": 2}, "synthcovers": {"count": 128}}}
STORE_FLAGS = ["--set", "data.image_size=32", "--set", "model.width=8", "--set", "model.latent_dim=16",
               "--set", "schedule.batch_size=16", "--set", "options.wgan.n_critic=2"]
"""Tiny model and batch settings for training on a store or folder."""
TINY_FLAGS = [*STORE_FLAGS, "--set", "options.synthcovers.count=128"]
"""The same on 128 synthcovers."""


def tiny_config(**changes):
    """The tiny test config with ``changes`` (grouped: ``schedule={"steps": 2}``), merged group by group;
    ``options`` are merged per component (a changed component's options replace its tiny ones); a run on another
    dataset drops synthcovers' options, and a recipe without wgan drops wgan's."""
    options = {**TINY["options"], **changes.pop("options", {})}
    if changes.get("data", {}).get("name") not in (None, "synthcovers"):
        options.pop("synthcovers", None)
    if "wgan" not in changes.get("recipe", "wgan").split("+"):
        options.pop("wgan", None)
    merged = {key: {**TINY[key], **value} if isinstance(value, dict) and isinstance(TINY.get(key), dict) else value
              for key, value in changes.items()}
    return build_config({**TINY, **merged, "options": options})


def run_ganzoo(*args, env=None, cwd=None, timeout=300):
    """Run the real CLI: in a subprocess when the test needs its own environment, working folder or processes
    (``env``, ``cwd``, ``--nproc``), otherwise in this process, which spares an interpreter start-up per call.
    Returns what ``subprocess.run`` would: ``returncode``, ``stdout``, ``stderr`` (with the traceback of an
    unexpected exception, as the real process would print it)."""
    args = [str(a) for a in args]
    if env is not None or cwd is not None or "--nproc" in args:
        full_env = {**os.environ, **(env or {})}
        return subprocess.run([sys.executable, "-m", "ganzoo", *args], capture_output=True, text=True,
                              env=full_env, cwd=cwd, timeout=timeout)
    result = invoke(*args)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, stderr)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANZOO_CACHE", str(tmp_path / "cache"))


def invoke(*args):
    """Run the real CLI in this process (no interpreter start-up): a click Result with exit_code, stdout and
    stderr."""
    from click.testing import CliRunner

    from ganzoo.apps.cli import cli
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


def cover_folder(path, count=3):
    """A new folder of ``count`` distinct 40 px PNG covers."""
    from PIL import Image

    path.mkdir()
    for i in range(count):
        Image.new("RGB", (40, 40), (60 * i, 20, 200 - 40 * i)).save(path / f"cover{i}.png")
    return path


def make_batch(phase, critic, fake, real=None, condition=None, step=0):
    """The record the engine hands a loss or auxiliary for one update, with the critic's outputs on ``fake``
    (and ``real``, when given) computed by ``critic``."""
    from ganzoo.runtime.context import RunContext
    from ganzoo.api.interfaces import Batch

    real_out = critic(real, condition) if real is not None else None
    return Batch(phase, fake, critic(fake, condition), condition, critic, RunContext(), step, 0, real, real_out)


def dcgan(spec, **options):
    """dcgan's (generator, critic) for ``spec``, built through its plugin with ``options``."""
    from ganzoo_dcgan import DCGAN, DCGANOptions

    return DCGAN(DCGANOptions(**options)).build(spec)


def outputs_batch(phase, out, condition=None):
    """A record carrying given critic outputs: as ``real_out`` in the critic phase (what auxiliaries learn
    from), as ``fake_out`` in the generator phase."""
    import torch

    from ganzoo.runtime.context import RunContext
    from ganzoo.api.interfaces import Batch

    images = torch.zeros(len(out.score), 3, 4, 4)
    if phase == "critic":
        return Batch(phase, images, out, condition, None, RunContext(), 0, 0, images, out)
    return Batch(phase, images, out, condition, None, RunContext(), 0)


def interruptible() -> None:
    """``preexec_fn`` for a child a test stops with SIGINT: a shell starts background jobs with SIGINT ignored,
    children inherit that, and Python then never raises KeyboardInterrupt; the child gets the default back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def assert_same_state(a, b, path="state"):
    """Tensors equal exactly, and everything else equal, all the way down a checkpoint's nested state."""
    import torch

    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same_state(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
