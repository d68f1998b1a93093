"""Data-parallel training on CPU through gloo: torchrun end to end, and equivalence with one process."""

import json
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

import ddp_worker
from conftest import STORE_FLAGS, TINY_FLAGS, run_ganzoo, tiny_config
from ganzoo import GanzooError
from ganzoo.runtime.context import Ranks
from ganzoo.runtime.checkpoint import load_checkpoint
from ganzoo.data.prepare import prepare
from ganzoo.data.store import load_store, shard_store
from ganzoo.registry.loading import load_plugins
from ganzoo.engine.training import run_training


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_trains_checkpoints_once_and_resumes(tmp_path):
    run = tmp_path / "run"
    first = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            "-m", "ganzoo", "train", "wgan", *TINY_FLAGS, "--steps", "2", "--set", "schedule.log_every=1",
                            "--out", str(run), "--quiet"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("step 2: finished") == 1  # rank 0 alone reports
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 2
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]  # one writer
    resumed = run_ganzoo("train", "--resume", run, "--steps", "4", "--nproc", "2", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == 4 and state["sampler_position"] == 4 * 2  # n_critic 2, global batches
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


@pytest.mark.parametrize("recipe", ["tinynet+wgan", "tinynet+wgan+logan"])
def test_two_ranks_with_batch_b_match_one_process_with_batch_2b(recipe, tmp_path):
    common = {"recipe": recipe, "data": {"image_size": 32}, "model": {"latent_dim": 8},
              "schedule": {"steps": 3, "checkpoint_every": 100, "sample_every": 100}, "system": {"channels_last": False},
              "options": {"wgan": {"n_critic": 2, "lr_critic": 1e-3, "lr_generator": 1e-3},
                          "synthcovers": {"count": 64}}}
    registry = load_plugins({"tinynet": ddp_worker})
    run_training(tiny_config(**common | {"schedule": {**common["schedule"], "batch_size": 8}}), tmp_path / "single", registry=registry, progress=False)
    run_training(tiny_config(**common | {"schedule": {**common["schedule"], "steps": 2, "batch_size": 8}}), tmp_path / "shorter", registry=registry,
          progress=False)
    ranks = tiny_config(**common | {"schedule": {**common["schedule"], "batch_size": 4}})
    mp.spawn(ddp_worker.run_rank, args=(2, free_port(), ranks.model_dump_json(), str(tmp_path / "ddp")), nprocs=2)

    one, two, shorter = (load_checkpoint(tmp_path / name / "checkpoint.pt") for name in ("single", "ddp", "shorter"))
    for network in ("generator", "critic"):
        for name, value in one[network].items():
            assert torch.allclose(value, two[network][name], atol=2e-6, rtol=1e-5), (network, name)
        step_size = max((value - shorter[network][name]).abs().max() for name, value in one[network].items())
        assert step_size > 1e-4  # one step moves the weights far beyond the tolerance
    assert one["sampler_position"] == two["sampler_position"] == 3 * 2


@pytest.fixture
def small_store(tmp_path):
    folder = tmp_path / "covers"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = ["file,valence"]
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"c{i:02d}.png")
        rows.append(f"c{i:02d}.png,{i / 40}")
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n")
    store, _ = prepare(folder, 32, out=tmp_path / "store", workers=1, progress=False)
    return store


def test_sharded_store_gives_each_rank_its_own_rows(small_store, tmp_path):
    sharded = shard_store(small_store, 4, tmp_path / "sharded")
    whole = load_store(small_store)
    by_file = dict(zip(whole.metadata["file"], whole.images))
    alone = load_store(sharded)
    assert sorted(alone.metadata["file"]) == sorted(by_file) and alone.population is None
    seen = []
    for rank in (0, 1):
        part = load_store(sharded, Ranks(rank, 2, rank))
        files = list(part.metadata["file"])
        assert len(files) == 20 and part.population["file"].shape == (40,)
        picked = np.array([3, 0, 19, 7])
        assert np.array_equal(part.images[picked], np.stack([by_file[files[i]] for i in picked]))
        seen += files
    assert sorted(seen) == sorted(by_file)  # disjoint and complete
    with pytest.raises(GanzooError, match="4 shards, fewer than the 8 ranks"):
        load_store(sharded, Ranks(0, 8, 0))


def test_torchrun_trains_conditionally_on_a_sharded_store(small_store, tmp_path):
    sharded = run_ganzoo("data", "shard", small_store, "--shards", "2", "--out", tmp_path / "sharded")
    assert sharded.returncode == 0, sharded.stderr
    inspected = run_ganzoo("data", "inspect", tmp_path / "sharded")
    assert inspected.returncode == 0 and "2 shards of 40 images in all" in inspected.stdout
    trained = run_ganzoo("train", "acgan+wgan", *STORE_FLAGS, "--set", f"data.name={tmp_path / 'sharded'}",
                         "--set", 'model.conditions=["audio-features"]',
                         "--set", 'options.audio-features.features=["valence"]', "--set", "schedule.batch_size=4",
                         "--steps", "2", "--out", tmp_path / "run", "--quiet", "--nproc", "2")
    assert trained.returncode == 0, trained.stderr
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 2
