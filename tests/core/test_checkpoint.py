import os

import pytest
import torch

from ganzoo.runtime.checkpoint import load_checkpoint, save_checkpoint
from ganzoo.api.errors import GanzooError

from conftest import TINY_FLAGS, run_ganzoo


class RunsCodeOnLoad:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoint_does_not_run_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "ganzoo-checkpoint", "version": 1, "payload": RunsCodeOnLoad(marker)}, path)
    with pytest.raises(GanzooError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists()
    # the plain pickle route would have run it: the test's payload is real
    with open(path, "rb") as f:
        pickle_bytes = f.read()
    assert b"system" in pickle_bytes


def test_crafted_checkpoint_through_cli(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "ganzoo-checkpoint", "version": 1, "payload": RunsCodeOnLoad(marker)}, path)
    result = run_ganzoo("generate", path, "--out", tmp_path / "grid.png")
    assert result.returncode == 2
    assert "refusing to load" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


def test_truncated_and_foreign_files(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint({"step": 1, "weights": torch.ones(1000)}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(GanzooError, match="not a readable checkpoint"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": torch.ones(2)}, foreign)
    with pytest.raises(GanzooError, match="not a ganzoo checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(GanzooError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    assert load_checkpoint(good)["step"] == 1


def test_save_is_atomic_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"step": 1}, path)

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_weights_that_do_not_fit_the_architecture_are_one_line_errors(tmp_path):
    run = tmp_path / "run"
    assert run_ganzoo("train", "wgan", *TINY_FLAGS, "--steps", "1", "--out", run, "--quiet").returncode == 0
    state = load_checkpoint(run)
    state["ema"] = {k.replace("convs", "old_layers"): v for k, v in state["ema"].items()}
    state["critic"] = {k: v for k, v in state["critic"].items() if not k.startswith("score")}
    save_checkpoint(state, run / "checkpoint.pt")
    result = run_ganzoo("generate", run, "--out", tmp_path / "x.png")
    assert result.returncode == 2 and "generator weights do not fit" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = run_ganzoo("train", "--resume", run, "--steps", "2", "--quiet")
    assert result.returncode == 2 and "critic weights do not fit" in result.stderr
