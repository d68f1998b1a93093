"""Models trained on their own audio: `data prepare COVERS --audio SONGS` pairs covers with songs by name and
keeps each song's descriptors, the `audio-descriptors` condition trains on them and `generate --audio` makes a
cover from a new song's; synthcovers' paired clips (`data synthcovers --audio`) carry the features they say."""

import csv

import numpy as np
import pytest
import soundfile
from PIL import Image

from conftest import assert_user_error, invoke, tiny_config
from ganzoo import AUDIO_DESCRIPTORS
from ganzoo.audio import pairing, song_features
from ganzoo.data.store import load_store
from ganzoo.engine.training import run_training
from test_audio import RATE, clicks


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    """Five covers and five songs: three pairs, a cover without a song, a song without a cover and a broken
    song (its cover kept)."""
    root = tmp_path_factory.mktemp("paired")
    covers, songs = root / "covers", root / "songs"
    covers.mkdir()
    songs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("fast", "slow", "mid", "lonely", "broken"):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(covers / f"{name}.png")
    soundfile.write(songs / "fast.wav", clicks(150, 4), RATE)
    soundfile.write(songs / "slow.flac", clicks(80, 4), RATE)
    soundfile.write(songs / "mid.ogg", clicks(110, 4), RATE)
    (songs / "broken.wav").write_bytes(b"RIFF" + bytes(40))
    soundfile.write(songs / "orphan.wav", clicks(100, 3), RATE)
    result = invoke("data", "prepare", covers, "--audio", songs, "--size", "16", "--out", root / "store",
                    "--keep-duplicates", "--quiet")
    assert result.exit_code == 0, result.output
    return root, result.stdout


def test_prepare_pairs_songs_by_name_and_reports_every_unmatched_file(paired):
    root, output = paired
    assert "songs " in output and "4 of the covers paired with a song, 3 measured" in output
    assert "1 cover without a song (kept, descriptors blank): lonely.png" in output
    assert "1 song without a cover (not used): orphan.wav" in output
    assert [line for line in output.splitlines() if "song not measured" in line and "broken.wav" in line]
    data = load_store(root / "store")
    rows = {name.removesuffix(".png"): i for i, name in enumerate(data.metadata["file"])}
    assert len(rows) == 5 and all(name in data.metadata for name in AUDIO_DESCRIPTORS)
    tempo = data.metadata["audio_tempo"]
    assert tempo[rows["fast"]] == pytest.approx(150, rel=0.02) and tempo[rows["slow"]] == pytest.approx(80, rel=0.02)
    assert np.isnan(tempo[rows["lonely"]]) and np.isnan(tempo[rows["broken"]])
    expected = song_features(root / "songs" / "mid.ogg", descriptors=True).values
    assert [data.metadata[name][rows["mid"]] for name in AUDIO_DESCRIPTORS] == pytest.approx(
        [expected[name] for name in AUDIO_DESCRIPTORS], rel=1e-6, abs=1e-9)


def test_preparing_again_measures_no_song(paired, monkeypatch):
    root, _ = paired
    monkeypatch.setattr(pairing, "song_features", lambda *args, **kwargs: pytest.fail("measured again"))
    result = invoke("data", "prepare", root / "covers", "--audio", root / "songs", "--size", "16", "--out",
                    root / "store", "--keep-duplicates", "--quiet")
    assert result.exit_code == 0 and "(cached)" in result.stdout


def test_songs_of_one_name_a_store_or_no_songs_are_one_line(paired, tmp_path):
    root, _ = paired
    twins = tmp_path / "twins"
    twins.mkdir()
    for suffix in (".wav", ".flac"):
        soundfile.write(twins / f"fast{suffix}", clicks(120, 3), RATE)
    assert_user_error(invoke("data", "prepare", root / "covers", "--audio", twins, "--out", tmp_path / "s"),
                      "fast.flac and fast.wav are songs of one name")
    assert_user_error(invoke("data", "prepare", root / "store", "--audio", root / "songs", "--where", "x > 1",
                             "--out", tmp_path / "t"), "already a store")
    (tmp_path / "empty").mkdir()
    assert_user_error(invoke("data", "prepare", root / "covers", "--audio", tmp_path / "empty", "--out",
                             tmp_path / "u"), "holds no audio files")


def test_a_model_on_audio_descriptors_makes_covers_that_depend_on_the_song(paired, tmp_path):
    root, _ = paired
    config = tiny_config(recipe="acgan+wgan", data={"name": str(root / "store"), "image_size": 16},
                         options={"wgan": {"n_critic": 1}}, model={"conditions": ["audio-descriptors"]},
                         schedule={"steps": 2, "batch_size": 4})
    run_training(config, tmp_path / "run", progress=False)
    songs = tmp_path / "new"
    songs.mkdir()
    soundfile.write(songs / "quick.wav", clicks(170, 4), RATE)
    soundfile.write(songs / "calm.wav", clicks(70, 4, level=0.05), RATE)
    result = invoke("generate", tmp_path / "run", "--audio", songs, "--out-dir", tmp_path / "covers")
    assert result.exit_code == 0, result.output
    assert "measured 38 audio descriptors" in result.stdout
    quick, calm = (np.asarray(Image.open(tmp_path / "covers" / f"{name}.png")) for name in ("quick", "calm"))
    assert quick.shape == (16, 16, 3) and not np.array_equal(quick, calm)  # one seed: the song made the difference


def test_audio_descriptors_on_data_without_songs_is_one_line(tmp_path):
    result = invoke("train", "acgan+wgan", "--set", "data.image_size=16", "--set", "model.width=8",
                    "--set", "options.synthcovers.count=32", "--set", "model.conditions=[audio-descriptors]",
                    "--steps", "1", "--out", tmp_path / "run", "--quiet")
    assert_user_error(result, "no audio descriptors", "data prepare COVERS --audio SONGS")


def test_synthcovers_clips_carry_the_tempo_their_danceability_says(tmp_path):
    from ganzoo_synthcovers.clips import beat_tempo

    result = invoke("data", "synthcovers", tmp_path / "set", "--count", "3", "--size", "16", "--audio")
    assert result.exit_code == 0, result.output
    with open(tmp_path / "set" / "covers" / "metadata.csv", newline="") as table:
        rows = list(csv.DictReader(table))
    assert [row["file"] for row in rows] == ["00000.png", "00001.png", "00002.png"]
    for row in rows:
        song = song_features(tmp_path / "set" / "songs" / row["file"].replace(".png", ".wav"))
        assert song.values["tempo"] == pytest.approx(beat_tempo(float(row["danceability"])), rel=0.02)
        assert song.values["loudness"] == pytest.approx(float(row["loudness"]), abs=3.0)
    assert_user_error(invoke("data", "synthcovers", tmp_path / "set", "--count", "1"), "exists")
    assert not (tmp_path / "set.partial").exists()
