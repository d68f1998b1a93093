"""Fine-tuning (--init-from, frozen critic blocks), choosing data by metadata (--where), covers for a track
(--track) and larger covers (--upscale), through the CLI."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ganzoo.runtime.checkpoint import load_checkpoint
from ganzoo.data.prepare import prepare
from ganzoo.data.store import load_store
from ganzoo.registry.loading import get_registry
from ganzoo.engine.sampling import load_sampler
from ganzoo.engine.training import run_training

from conftest import STORE_FLAGS, TINY_FLAGS, assert_user_error, invoke, run_ganzoo, tiny_config

TRACK = "4uLU6hMCjMI75M1A2tKUQC"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A conditional run on synthcovers to start from."""
    folder = tmp_path_factory.mktemp("source") / "run"
    run_training(tiny_config(options={"audio-features": {"features": ["valence", "energy"]}}, schedule={"steps": 2}, model={"conditions": ["audio-features"]}), folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def covers(tmp_path_factory):
    """A store of 40 small covers with valence, energy, popularity, year and genre columns."""
    root = tmp_path_factory.mktemp("covers")
    folder = root / "folder"
    folder.mkdir()
    rng = np.random.default_rng(2)
    rows = []
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
        rows.append({"file": f"{i:02d}.png", "valence": f"{rng.random():.3f}", "energy": f"{rng.random():.3f}",
                     "popularity": str(int(rng.integers(0, 100))), "year": str(1960 + 2 * i),
                     "genre": ["rock", "jazz", "folk pop"][i % 3]})
    with open(folder / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    store, _ = prepare(folder, 32, out=root / "store", workers=1, progress=False, max_hash_distance=None)
    return folder, store, rows


FINE = ["--set", "model.conditions=[audio-features]", "--set", "options.audio-features.features=[valence, energy]"]


def test_init_from_starts_from_the_given_weights_with_fresh_optimisers(source, covers, tmp_path):
    _, store, _ = covers
    run = tmp_path / "fine"
    result = invoke("train", "wgan", *STORE_FLAGS, *FINE, "--set", f"data.name={store}", "--set", "schedule.batch_size=8",
                    "--set", "options.wgan.lr_generator=1e-30", "--init-from", source, "--steps", "1", "--out", run,
                    "--quiet")
    assert result.exit_code == 0, result.output
    before, after = load_checkpoint(source), load_checkpoint(run)
    weights = [key for key in before["generator"] if "running_" not in key and "num_batches" not in key]
    for key in weights:  # a step of lr 1e-30 leaves every weight as it was loaded (batch statistics move)
        assert torch.equal(before["generator"][key], after["generator"][key]), key
    assert not all(torch.equal(v, after["critic"][k]) for k, v in before["critic"].items())
    assert after["step"] == 1 and after["ema"]["n_averaged"] == before["ema"]["n_averaged"] + 1
    assert after["conditions"]["states"] == before["conditions"]["states"]  # the source's normalisation, kept


@pytest.mark.parametrize("settings, message", [
    ([*FINE, "--set", "model.width=16"], "its model.width is 8, this run's is 16"),
    ([*FINE, "--set", "data.image_size=16"], "its data.image_size is 32, this run's is 16"),
    (["--set", "model.conditions=[]"], "its model.conditions is ['audio-features'], this run's is []"),
    ([*FINE, "--set", "options.audio-features.features=[valence]"],
     "its options.audio-features is {'features': ['valence', 'energy']}, this run's is {'features': ['valence']}"),
])
def test_init_from_refuses_a_different_network(source, tmp_path, settings, message):
    flags = [*TINY_FLAGS, *settings]
    line = assert_user_error(invoke("train", "wgan", *flags, "--init-from", source, "--out", tmp_path / "run"),
                             message)
    assert line.startswith(f"Error: --init-from {source}")
    other = invoke("train", "resnet+wgan", *TINY_FLAGS, *FINE, "--init-from", source, "--out", tmp_path / "r2")
    assert_user_error(other, "its architecture is 'dcgan', this run's is 'resnet'")
    assert_user_error(invoke("train", "--resume", source, "--init-from", source), "give one of them")


def test_init_from_takes_the_sources_conditions_with_their_options(source, tmp_path):
    result = invoke("train", "wgan", *TINY_FLAGS, "--init-from", source, "--steps", "1", "--out", tmp_path / "run",
                    "--quiet")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["conditions"] == ["audio-features"]
    assert config["options"]["audio-features"]["features"] == ["valence", "energy"]


def test_init_from_needs_the_conditions_columns(source, covers, tmp_path):
    folder, _, rows = covers
    plain = tmp_path / "plain"
    plain.mkdir()
    for row in rows[:20]:
        (plain / row["file"]).write_bytes((folder / row["file"]).read_bytes())
    assert_user_error(invoke("train", "wgan", *STORE_FLAGS, *FINE, "--set", f"data.name={plain}", "--set",
                             "schedule.batch_size=8", "--init-from", source, "--out", tmp_path / "run"),
                      "the training data has no valence, energy column")


def test_frozen_critic_blocks_do_not_change(source, tmp_path):
    run = tmp_path / "frozen"
    result = invoke("train", "wgan", *TINY_FLAGS, *FINE, "--set", "model.freeze_critic_blocks=2", "--init-from", source,
                    "--steps", "2", "--out", run, "--quiet")
    assert result.exit_code == 0, result.output
    before, after = load_checkpoint(source)["critic"], load_checkpoint(run)["critic"]
    # dcgan's critic blocks are its convolutions with their activations: features.0-1 and features.2-4
    frozen = [k for k in before if k.startswith(("features.0.", "features.2."))]
    trained = ["features.5.weight", "score.weight"]  # (the score's bias gets no gradient from a Wasserstein loss)
    assert frozen and trained
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert all(not torch.equal(before[k], after[k]) for k in trained)
    assert_user_error(invoke("train", "wgan", *TINY_FLAGS, *FINE, "--set", "model.freeze_critic_blocks=9",
                             "--init-from", source, "--out", tmp_path / "r"), "dcgan' (plugin 'dcgan') lists 3")


def test_where_keeps_exactly_the_matching_rows(covers, tmp_path):
    folder, store, rows = covers
    result = run_ganzoo("data", "prepare", folder, "--size", "32", "--where", "popularity >= 60", "--where",
                        "year < 2000", "--keep-duplicates", "--out", tmp_path / "chosen", "--quiet")
    assert result.returncode == 0, result.stderr
    expected = [r["file"] for r in rows if int(r["popularity"]) >= 60 and int(r["year"]) < 2000]
    assert list(load_store(tmp_path / "chosen").metadata["file"]) == expected
    assert f"where popularity >= 60 and year < 2000: {len(expected)} of 40 rows" in result.stdout
    from_store = run_ganzoo("data", "prepare", store, "--where", "genre == 'folk pop'", "--out", tmp_path / "folk")
    assert from_store.returncode == 0, from_store.stderr
    folk = [r["file"] for r in rows if r["genre"] == "folk pop"]
    assert list(load_store(tmp_path / "folk").metadata["file"]) == folk
    report = json.loads((tmp_path / "folk" / "manifest.json").read_text())["report"]["where"]
    assert report == {"expressions": ["genre == 'folk pop'"], "rows": 40, "matching": len(folk)}


@pytest.mark.parametrize("expression, message", [
    ("tempo > 100", "no column 'tempo'"),
    ("popularity >> 3", "is not a number or a word"),
    ("popularity", "is not COLUMN OP VALUE"),
    ("genre < rock", "text compares with == or != only"),
    ("genre >= 3", "column 'genre' holds text, not numbers"),
    ("__import__('os').system('touch PWNED') == 1", "is not COLUMN OP VALUE"),
])
def test_bad_where_expressions_are_one_line_and_run_nothing(covers, tmp_path, monkeypatch, expression, message):
    folder, store, _ = covers
    monkeypatch.chdir(tmp_path)
    for source in (folder, store):
        assert_user_error(invoke("data", "prepare", source, "--size", "32", "--where", expression, "--out",
                                 tmp_path / "out"), message)
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def tracks(source, tmp_path_factory):
    path = tmp_path_factory.mktemp("tracks") / "tracks.csv"
    path.write_text(f"track_uri,track_name,valence,energy,tempo\nspotify:track:{TRACK},Song,0.9,0.2,96.5\n")
    return path


@pytest.mark.parametrize("reference", [TRACK, f"spotify:track:{TRACK}", f"https://open.spotify.com/track/{TRACK}?si=x"])
def test_a_track_gives_the_covers_of_its_features(source, tracks, tmp_path, reference):
    by_track = invoke("generate", source, "-n", "4", "--track", reference, "--tracks", tracks, "--out",
                      tmp_path / "track.png", "--out-dir", tmp_path / "track")
    assert by_track.exit_code == 0, by_track.output
    by_features = invoke("generate", source, "-n", "4", "--features", "valence=0.9,energy=0.2", "--out",
                         tmp_path / "features.png")
    assert by_features.exit_code == 0, by_features.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "track.png")),
                          np.asarray(Image.open(tmp_path / "features.png")))
    with open(tmp_path / "track" / "conditions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["track"] for r in rows} == {TRACK}
    assert {(r["valence"], r["energy"]) for r in rows} == {("0.9", "0.2")}


def test_track_errors_are_one_line(source, tracks, tmp_path):
    assert_user_error(invoke("generate", source, "--track", "0" * 22, "--tracks", tracks, "--out",
                             tmp_path / "x.png"), "track 0000000000000000000000 is not in the features file")
    assert_user_error(invoke("generate", source, "--track", TRACK, "--out", tmp_path / "x.png"),
                      "no features file was given")
    assert_user_error(invoke("generate", source, "--tracks", tracks, "--out", tmp_path / "x.png"), "give --track too")


def test_upscale_resamples_with_the_named_filter(source, tmp_path):
    plain = invoke("generate", source, "-n", "1", "--out", tmp_path / "one.png", "--out-dir", tmp_path / "one")
    assert plain.exit_code == 0, plain.output
    large = invoke("generate", source, "-n", "1", "--upscale", "4", "--upscale-filter", "bicubic", "--out",
                   tmp_path / "big.png", "--out-dir", tmp_path / "big")
    assert large.exit_code == 0 and "of 128 px" in large.stdout
    cover = Image.open(tmp_path / "one" / "00000.png")
    expected = cover.resize((128, 128), Image.Resampling.BICUBIC)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "big" / "00000.png")), np.asarray(expected))
    assert Image.open(tmp_path / "big.png").size == (128, 128)  # a grid of one cover is the cover, upscaled


def test_sampling_a_fine_tuned_checkpoint_uses_the_kept_conditions(source, covers, tmp_path):
    _, store, _ = covers
    run = tmp_path / "fine"
    assert invoke("train", "wgan", *STORE_FLAGS, *FINE, "--set", f"data.name={store}", "--set", "schedule.batch_size=8",
                  "--init-from", source, "--steps", "1", "--out", run, "--quiet").exit_code == 0
    sampler = load_sampler(run, torch.device("cpu"), get_registry())
    assert sampler.conditions["audio-features"].state() == load_sampler(source, torch.device("cpu")) \
        .conditions["audio-features"].state()
