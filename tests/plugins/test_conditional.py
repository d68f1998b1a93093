"""Conditional covers: the audio-features and genre conditions, the acgan objective, conditional batch norm,
requests and sweeps, and `ganzoo generate` on conditional and unconditional checkpoints."""

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ganzoo import ArchitectureSpec, CriticOutput
from ganzoo.runtime.checkpoint import load_checkpoint, save_checkpoint
from ganzoo.engine.conditioning import (column_summary, fit_conditions, parse_request, requested_rows, restore_conditions,
                               sweep_values)
from ganzoo.runtime.config import build_config
from ganzoo.data.prepare import prepare
from ganzoo.api.errors import GanzooError
from ganzoo.registry.loading import get_registry
from ganzoo.engine.sampling import load_sampler
from ganzoo.apps.studio import Studio
from ganzoo.engine.training import run_training
from ganzoo_acgan import ACGAN, ACGANOptions
from ganzoo_conditions import AudioFeatures, Genre
from ganzoo_metrics import condition_fidelity
from ganzoo_synthcovers import synthcovers
from ganzoo_wgan import gradient_penalty

from conftest import (STORE_FLAGS, TINY_FLAGS, assert_user_error, dcgan, invoke, make_batch, outputs_batch,
                      run_ganzoo)

LEARNING_STEPS = 200
GENRES = np.array(["rock", "", "jazz", "rock", "pop", "jazz"], dtype=object)


def built_conditions(names, options):
    """The named condition plugins, built from ``options``, not fitted."""
    return {name: get_registry().create("condition", name, options.get(name)) for name in names}


def conditions_labels(conditions):
    return {name: get_registry().get("condition", name).label for name in conditions}


def table():
    return {"energy": np.array([0.1, 0.2, 0.3, np.nan, 0.5, 0.9]),
            "tempo": np.array([60.0, 90.0, 120.0, 150.0, 180.0, 200.0]),
            "genre": GENRES}


def test_audio_features_standardise_with_training_statistics():
    condition = AudioFeatures(["tempo", "energy"])
    condition.fit(table())
    encoded = condition.encode(table())
    assert condition.dim == 2 and condition.columns == ("tempo", "energy")
    tempo = table()["tempo"]
    assert torch.allclose(encoded[:, 0], torch.tensor((tempo - tempo.mean()) / tempo.std(), dtype=torch.float32))
    energy = table()["energy"]
    expected = (0.9 - np.nanmean(energy)) / np.nanstd(energy)
    assert encoded[5, 1].item() == pytest.approx(expected, rel=1e-6)
    assert encoded[3, 1].item() == 0.0  # a missing value encodes as the training mean


def test_audio_features_reject_bad_names_columns_and_values():
    with pytest.raises(GanzooError, match="unknown feature 'dancability'.*danceability"):
        AudioFeatures(["dancability"])
    with pytest.raises(GanzooError, match="no 'valence' column.*energy, genre, tempo"):
        AudioFeatures(["valence"]).fit(table())
    condition = AudioFeatures(["tempo", "loudness"])
    assert condition.parse("loudness", "-7.5") == -7.5
    with pytest.raises(GanzooError, match="tempo must be a number from 0 to 300 BPM, not '400'"):
        condition.parse("tempo", "400")
    with pytest.raises(GanzooError, match="loudness must be a number from -60 to 5 dB"):
        condition.parse("loudness", "loud")


def test_genre_vocabulary_comes_from_the_data_and_missing_values_encode_as_zeros():
    condition = Genre("genre")
    condition.fit(table())
    assert condition.vocabulary == ["jazz", "pop", "rock"] and condition.kind == "categorical"
    rows = {"genre": np.array(["rock", "", "metal", "jazz", float("nan")], dtype=object)}
    assert condition.encode(rows).tolist() == [[0, 0, 1], [0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert condition.parse("genre", "pop") == "pop"
    with pytest.raises(GanzooError, match="unknown genre 'metal'; this checkpoint knows: jazz, pop, rock"):
        condition.parse("genre", "metal")


def test_acgan_terms_regression_and_cross_entropy_on_logits():
    conditions = built_conditions(["audio-features", "genre"], {"audio-features": {"features": ["energy", "tempo"]}})
    fit_conditions(conditions, conditions_labels(conditions), table())
    acgan = ACGAN(ACGANOptions(weights={"genre": 2.0}))
    assert acgan.outputs(conditions) == {"acgan_audio-features": 2, "acgan_genre": 3}
    condition = torch.cat([c.encode(table()) for c in conditions.values()], dim=1)
    features = torch.randn(6, 2)
    logits = torch.randn(6, 3)
    out = CriticOutput(score=torch.zeros(6), aux={"acgan_audio-features": features, "acgan_genre": logits})
    terms = acgan.critic_terms(outputs_batch("critic", out, condition))
    assert terms["acgan_audio-features"].item() == pytest.approx(F.mse_loss(features, condition[:, :2]).item())
    labelled = torch.tensor([0, 2, 3, 4, 5])  # row 1 has no genre and is left out
    labels = torch.tensor([2, 0, 2, 1, 0])
    assert terms["acgan_genre"].item() == pytest.approx(2.0 * F.cross_entropy(logits[labelled], labels).item())
    assert acgan.generator_terms(outputs_batch("generator", out, condition)).keys() == terms.keys()


def test_acgan_cross_entropy_reaches_zero_for_confident_logits():
    """The softmax-then-CrossEntropyLoss bug of PyTorch-GAN's acgan cannot fall below about 0.9 here."""
    conditions = {"genre": Genre("genre")}
    conditions["genre"].fit(table())
    acgan = ACGAN(ACGANOptions())
    acgan.outputs(conditions)
    one_hot = conditions["genre"].encode(table())
    logits = 10 * one_hot
    terms = acgan.critic_terms(outputs_batch("critic", CriticOutput(torch.zeros(6), {"acgan_genre": logits}), one_hot))
    assert terms["acgan_genre"].item() < 1e-3
    assert F.cross_entropy(logits.softmax(1)[one_hot.sum(1) > 0], one_hot.argmax(1)[one_hot.sum(1) > 0]) > 0.5


def test_acgan_needs_conditions_and_known_weight_names():
    with pytest.raises(GanzooError, match="acgan needs conditions"):
        ACGAN(ACGANOptions()).outputs({})
    with pytest.raises(GanzooError, match="weights names mood, not a condition"):
        ACGAN(ACGANOptions(weights={"mood": 1.0})).outputs({"genre": Genre("genre")})


def test_gradient_penalty_sees_the_adversarial_score_alone():
    spec = ArchitectureSpec(image_size=32, latent_dim=8, width=8, condition_dim=3, aux_outputs={"acgan_genre": 3},
                            critic_batchnorm=False)
    _, critic = dcgan(spec)
    real, fake = torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(4, 3, 32, 32) * 2 - 1
    condition = torch.eye(3)[[0, 1, 2, 0]]
    torch.manual_seed(0)
    before = gradient_penalty(make_batch("critic", critic, fake, real, condition))
    with torch.no_grad():
        critic.heads["acgan_genre"].weight.mul_(1000).add_(5)
    torch.manual_seed(0)
    after = gradient_penalty(make_batch("critic", critic, fake, real, condition))
    assert after.item() == pytest.approx(before.item(), rel=1e-6)


@pytest.mark.parametrize("condition_input", ["concat", "cbn"])
def test_generator_follows_its_condition(condition_input):
    spec = ArchitectureSpec(image_size=32, latent_dim=8, width=8, condition_dim=3, aux_outputs={"acgan_genre": 3},
                            critic_batchnorm=False)
    generator, critic = dcgan(spec, condition_input=condition_input)
    generator.eval()
    z = torch.randn(4, 8)
    a, b = torch.eye(3)[[0, 0, 0, 0]], torch.eye(3)[[2, 2, 2, 2]]
    assert generator(z, a).shape == (4, 3, 32, 32)
    assert (generator(z, a) - generator(z, b)).abs().max() > 1e-4
    assert critic(generator(z, a), a).aux["acgan_genre"].shape == (4, 3)
    first = generator.convs[0].in_channels
    assert first == (8 if condition_input == "cbn" else 11)


def test_requests_set_given_values_and_draw_the_rest_from_nearest_matching_rows():
    rng = np.random.default_rng(0)
    energy = rng.uniform(0, 1, 500)
    metadata = {"energy": energy, "valence": 1 - energy + rng.normal(0, 0.01, 500),
                "genre": np.where(energy > 0.5, "rock", "jazz").astype(object)}
    rows = requested_rows(metadata, {"energy": 0.2}, count=40, seed=0)
    assert (rows["energy"] == 0.2).all()
    assert np.abs(rows["valence"] - 0.8).max() < 0.1  # the data's own valence for such energy
    assert set(rows["genre"]) == {"jazz"}
    rows = requested_rows(metadata, {"genre": "rock", "energy": 0.2}, count=10, seed=0)
    assert set(rows["genre"]) == {"rock"} and (rows["valence"] < 0.5).all()
    assert requested_rows(metadata, {}, 5, seed=3)["energy"].tolist() == \
        requested_rows(metadata, {}, 5, seed=3)["energy"].tolist()


def test_parse_request_and_sweep_values():
    conditions = built_conditions(["audio-features", "genre"], {"audio-features": {"features": ["energy", "tempo"]}})
    fit_conditions(conditions, conditions_labels(conditions), table())
    assert parse_request(conditions, "energy=0.8, tempo=120", "jazz") == {"energy": 0.8, "tempo": 120.0,
                                                                         "genre": "jazz"}
    with pytest.raises(GanzooError, match="unknown feature 'valence'; .* energy, genre, tempo"):
        parse_request(conditions, "valence=0.3")
    with pytest.raises(GanzooError, match="expected name=value"):
        parse_request(conditions, "energy")
    with pytest.raises(GanzooError, match="unconditional"):
        parse_request({}, "energy=0.3")
    summary = column_summary(conditions, table())
    tempo = sweep_values(summary, conditions["audio-features"], "tempo", 5)
    assert tempo[0] == pytest.approx(np.percentile(table()["tempo"], 1))
    assert tempo[-1] == pytest.approx(np.percentile(table()["tempo"], 99)) and len(tempo) == 5
    assert summary["tempo"]["median"] == pytest.approx(np.median(table()["tempo"]))
    assert sweep_values(summary, conditions["genre"], "genre", 5) == ["jazz", "pop", "rock"]


def test_fitted_conditions_restore_from_their_state_alone():
    options = {"audio-features": {"features": ["energy", "tempo"]}}
    fitted = built_conditions(["audio-features", "genre"], options)
    fit_conditions(fitted, conditions_labels(fitted), table())
    states = {name: condition.state() for name, condition in fitted.items()}
    rows = table()
    restored = built_conditions(["audio-features", "genre"], options)
    restore_conditions(restored, conditions_labels(restored), states, rows, "the table")
    for name in fitted:
        assert torch.equal(fitted[name].encode(rows), restored[name].encode(rows))
    assert restored["genre"].dim == fitted["genre"].dim == 3


@pytest.fixture(scope="module")
def labelled_store(tmp_path_factory):
    """A prepared store of 48 small covers whose colour follows energy, with genres (some blank)."""
    root = tmp_path_factory.mktemp("labelled")
    folder = root / "covers"
    folder.mkdir()
    rng = np.random.default_rng(0)
    genres = ["rock", "jazz", "pop", ""]
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "energy", "valence", "playlist_name"])
        for i in range(48):
            energy = rng.uniform()
            Image.new("RGB", (40, 40), (int(255 * energy), 40, 90)).save(folder / f"c{i}.png")
            writer.writerow([f"c{i}.png", f"{energy:.3f}", f"{rng.uniform():.3f}", genres[i % 4]])
    store, _ = prepare(folder, 32, metadata_csv=root / "labels.csv", out=root / "store", workers=1,
                       progress=False, max_hash_distance=None)  # flat colours: near duplicates by design
    return store


@pytest.fixture(scope="module")
def conditional_run(labelled_store, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "acgan"
    result = run_ganzoo("train", "acgan+wgan+logan", *STORE_FLAGS, "--set", f"data.name={labelled_store}",
                        "--set", 'model.conditions=["audio-features", "genre"]',
                        "--set", 'options.audio-features.features=["energy", "valence"]',
                        "--set", "options.genre.column=playlist_name", "--set", "options.acgan.weights.genre=0.5",
                        "--set", "schedule.log_every=1", "--steps", "2", "--out", run, "--quiet")
    assert result.returncode == 0, result.stderr
    return run


def test_conditional_training_logs_each_acgan_term(conditional_run):
    last = json.loads((conditional_run / "metrics.jsonl").read_text().splitlines()[-1])
    for phase in ("critic", "generator"):
        assert math.isfinite(last[f"{phase}/acgan_audio-features"]) and math.isfinite(last[f"{phase}/acgan_genre"])


def test_generate_follows_requests_and_sweeps(conditional_run, tmp_path):
    out = tmp_path / "gen"
    result = run_ganzoo("generate", conditional_run, "-n", "6", "--features", "energy=0.25", "--genre", "jazz",
                        "--out", tmp_path / "grid.png", "--out-dir", out)
    assert result.returncode == 0, result.stderr
    with open(out / "conditions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {(r["energy"], r["playlist_name"]) for r in rows} == {("0.25", "jazz")}
    assert len(list(out.glob("*.png"))) == 6

    result = run_ganzoo("generate", conditional_run, "--sweep", "energy", "--sweep-steps", "5", "-n", "3",
                        "--out", tmp_path / "sweep.png", "--out-dir", tmp_path / "sweep")
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "sweep.png").size == (2 + 5 * 34, 2 + 3 * 34)  # 32 px tiles, 2 px padding
    with open(tmp_path / "sweep" / "conditions.csv") as f:
        energies = [float(r["energy"]) for r in csv.DictReader(f)]
    assert energies[:5] == energies[5:10] and energies == sorted(energies[:5]) * 3 and energies[0] < energies[4]

    result = run_ganzoo("generate", conditional_run, "--sweep", "playlist_name", "-n", "1", "--out",
                        tmp_path / "genres.png")
    assert result.returncode == 0 and Image.open(tmp_path / "genres.png").size == (2 + 3 * 34, 36)


@pytest.mark.parametrize("flags, message", [
    (["--features", "dancability=0.3"], "unknown feature 'dancability'; this checkpoint is conditioned on: "
                                        "energy, playlist_name, valence"),
    (["--genre", "metal"], "unknown playlist_name 'metal'; this checkpoint knows: jazz, pop, rock"),
    (["--features", "energy=2"], "energy must be a number from 0 to 1, not '2'"),
])
def test_generate_rejects_bad_requests_in_one_line(conditional_run, tmp_path, flags, message):
    result = run_ganzoo("generate", conditional_run, *flags, "--out", tmp_path / "x.png")
    assert result.returncode == 2 and result.stderr.strip() == f"Error: {message}"
    assert not (tmp_path / "x.png").exists()


def test_unconditional_checkpoints_refuse_condition_flags(tmp_path):
    run = tmp_path / "plain"
    assert run_ganzoo("train", "wgan", *TINY_FLAGS, "--steps", "1", "--out", run, "--quiet").returncode == 0
    for flags in (["--features", "energy=0.3"], ["--genre", "rock"], ["--sweep", "valence"]):
        result = run_ganzoo("generate", run, *flags, "--out", tmp_path / "x.png")
        assert result.returncode == 2 and "this checkpoint is unconditional" in result.stderr
    assert run_ganzoo("generate", run, "-n", "4", "--out", tmp_path / "ok.png").returncode == 0


def test_acgan_covers_learn_to_follow_valence(tmp_path):
    """A short real training run: covers asked for a higher valence measure a higher valence (synthcovers' hue)."""
    config = build_config({
        "recipe": "acgan+wgan", "data": {"image_size": 16},
        "model": {"width": 16, "latent_dim": 32, "conditions": ["audio-features"]},
        "schedule": {"batch_size": 32, "steps": LEARNING_STEPS, "log_every": 50, "sample_every": 10 ** 6,
                     "checkpoint_every": 10 ** 6},
        "options": {"audio-features": {"features": ["valence", "energy", "loudness"]},
                    "synthcovers": {"count": 1024}}})
    run_training(config, tmp_path / "run", progress=False)
    sampler = load_sampler(tmp_path / "run", torch.device("cpu"))
    cond = condition_fidelity(sampler, 256, 0, synthcovers(1024, 16))
    assert cond["valence"]["spearman"] > 0.5, cond  # chance: about 0 +- 0.06 for 256 covers


def train_on_labels(store, run):
    """One acgan+wgan step on the labelled store, conditioned on energy, valence and the playlist."""
    trained = run_ganzoo("train", "acgan+wgan", *STORE_FLAGS, "--set", f"data.name={store}",
                         "--set", 'model.conditions=["audio-features", "genre"]',
                         "--set", 'options.audio-features.features=["energy", "valence"]',
                         "--set", "options.genre.column=playlist_name", "--steps", "1", "--out", run, "--quiet")
    assert trained.returncode == 0, trained.stderr
    return run


def test_conditional_checkpoint_samples_without_its_training_data(labelled_store, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(labelled_store, store)
    run = train_on_labels(store, tmp_path / "run")
    with_data = Studio(load_sampler(run / "checkpoint.pt", torch.device("cpu"))).info()["controls"]
    wanted = ["--features", "energy=0.4,valence=0.7", "--genre", "jazz", "-n", "4", "--seed", "2"]
    before = run_ganzoo("generate", run, *wanted, "--out", tmp_path / "before.png")
    shutil.rmtree(store)

    sampler = load_sampler(run / "checkpoint.pt", torch.device("cpu"))
    assert len(sampler.table["energy"]) == 48 and Studio(sampler).info()["controls"] == with_data
    after = run_ganzoo("generate", run, *wanted, "--out", tmp_path / "after.png")
    assert before.returncode == after.returncode == 0, after.stderr
    before_image, after_image = (np.asarray(Image.open(tmp_path / name)) for name in ("before.png", "after.png"))
    assert np.array_equal(before_image, after_image)
    swept = run_ganzoo("generate", run, "--sweep", "valence", "--features", "energy=0.4", "--genre", "rock",
                       "--out", tmp_path / "sweep.png")
    assert swept.returncode == 0, swept.stderr
    partial = run_ganzoo("generate", run, "--features", "energy=0.4", "--out", tmp_path / "partial.png")
    assert partial.returncode == 0, partial.stderr  # valence and genre from the rows the checkpoint keeps


def test_a_checkpoint_without_kept_rows_needs_every_feature(labelled_store, tmp_path):
    run = train_on_labels(labelled_store, tmp_path / "run")
    state = load_checkpoint(run)
    del state["conditions"]["rows"]
    older = tmp_path / "older.pt"
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version", "digest")}, older)
    partial = invoke("generate", older, "--features", "energy=0.4", "--out", tmp_path / "partial.png")
    assert_user_error(partial, "missing: valence, playlist_name")
    complete = run_ganzoo("generate", older, "--features", "energy=0.4,valence=0.5", "--genre", "jazz",
                          "--out", tmp_path / "complete.png")
    assert complete.returncode == 0, complete.stderr
