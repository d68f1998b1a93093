"""Bounded fuzzing (a few seconds, fixed seeds) of the three readers of untrusted bytes: the checkpoint loader,
the config loader and the image cleaner. Every outcome is a success or a one-line GanzooError (BadImage for
the cleaner); a damaged checkpoint never loads as something other than what was saved."""

import io
import random

import numpy as np
import pytest
from PIL import Image

from ganzoo.runtime.checkpoint import contents_digest, load_checkpoint
from ganzoo.runtime.config import build_config, read_config_file
from ganzoo.data.prepare import BadImage, clean_image
from ganzoo.api.errors import GanzooError
from ganzoo.engine.training import run_training

from conftest import tiny_config


def mutate(data: bytes, rng: random.Random) -> bytes:
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 50)):
        choice = rng.random()
        position = rng.randrange(len(damaged))
        if choice < 0.7:
            damaged[position] = rng.randrange(256)
        elif choice < 0.85:
            del damaged[position:position + rng.randint(1, 16)]
        else:
            damaged[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        if not damaged:
            break
    return bytes(damaged)


def one_line(error: Exception) -> None:
    text = str(error)
    assert text and "\n" not in text and len(text) < 1000, text


def test_checkpoint_loader_on_random_and_mutated_bytes(tmp_path):
    run_training(tiny_config(schedule={"steps": 1}), tmp_path / "run", progress=False)
    original = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    expected = load_checkpoint(tmp_path / "run")["digest"]
    rng = random.Random(13)
    path = tmp_path / "fuzzed.pt"
    outcomes = {"loaded": 0, "refused": 0}
    for trial in range(1000):
        if trial % 4 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 2048)))
        elif trial % 4 == 1:
            data = original[:rng.randrange(len(original))]
        else:
            data = mutate(original, rng)
        path.write_bytes(data)
        try:
            state = load_checkpoint(path)
        except GanzooError as error:
            one_line(error)
            outcomes["refused"] += 1
        else:
            assert contents_digest(state) == expected  # whatever loads is exactly what was saved
            outcomes["loaded"] += 1
    assert outcomes["refused"] >= 900, outcomes


def test_config_loader_on_random_and_mutated_text(tmp_path):
    rng = random.Random(7)
    yaml_text = (b"recipe: wgan\nbatch_size: 16\ndata:\n  image_size: 32\n  count: 64\nmodel:\n  width: 8\n"
                 b"options:\n  wgan: {n_critic: 2, betas: [0.0, 0.9]}\nconditions: []\n")
    toml_text = b'recipe = "wgan"\nbatch_size = 16\n[data]\nimage_size = 32\n[options.wgan]\nn_critic = 2\n'
    for trial in range(2000):
        suffix = ".toml" if trial % 2 else ".yaml"
        base = toml_text if trial % 2 else yaml_text
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 200))) if trial % 5 == 0 else mutate(base, rng)
        path = tmp_path / f"config{suffix}"
        path.write_bytes(data)
        try:
            build_config(read_config_file(path))
        except GanzooError as error:
            one_line(error)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"])
def test_image_cleaner_on_mutated_files(tmp_path, image_format):
    rng = random.Random(image_format)
    pixels = np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, image_format)
    original = buffer.getvalue()
    path = tmp_path / f"cover.{image_format.lower()}"
    for _ in range(300):
        path.write_bytes(mutate(original, rng))
        try:
            array, _ = clean_image(str(path), 32)
        except BadImage as error:
            one_line(error)
        else:
            assert array.shape == (32, 32, 3) and array.dtype == np.uint8


def test_readers_of_bench_results_references_and_run_folders_on_mutated_bytes(tmp_path):
    """What `bench compare` and `bench --ref` read from strangers: a bench result, an .npz of reference features,
    and a run folder's config, protocol and metrics log. Mutated, each reads or is one line."""
    import json

    from ganzoo.evaluation.runs import read_bench_scores, read_run_scores
    from ganzoo.evaluation.scoring import STATISTICS_FORMAT, load_reference_statistics

    bench = json.dumps({"protocol": {"source_step": 3, "recipe": "wgan", "image_size": 32},
                        "scores": {"fid": 12.5, "kid_mean": 0.01}}).encode()
    buffer = io.BytesIO()
    np.savez(buffer, features=np.random.default_rng(0).normal(size=(6, 5)),
             about=np.array(json.dumps({"format": STATISTICS_FORMAT, "image_size": 32, "seed": 0})))
    npz = buffer.getvalue()
    run = tmp_path / "run"
    run.mkdir()
    originals = {"config.json": b'{"recipe": "wgan", "data": {"image_size": 32}}', "eval_protocol.json": b'{"a": 1}',
                 "metrics.jsonl": b'{"step": 1, "eval/fid": 20.0}\n{"step": 2, "eval/fid": 15.0}\n'}
    rng = random.Random(31)
    outcomes = {"read": 0, "refused": 0}
    for trial in range(900):
        try:
            if trial % 3 == 0:
                (tmp_path / "bench.json").write_bytes(mutate(bench, rng))
                read_bench_scores(tmp_path / "bench.json", "fid", "eval/fid")
            elif trial % 3 == 1:
                (tmp_path / "stats.npz").write_bytes(mutate(npz, rng))
                load_reference_statistics(tmp_path / "stats.npz")
            else:
                for name, data in originals.items():
                    (run / name).write_bytes(mutate(data, rng) if rng.random() < 0.5 else data)
                read_run_scores(run, "fid", "eval/fid")
        except GanzooError as error:
            one_line(error)
            outcomes["refused"] += 1
        else:
            outcomes["read"] += 1
    assert outcomes["read"] > 0 and outcomes["refused"] > 300, outcomes
