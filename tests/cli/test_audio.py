"""Songs in: features measured from audio files (tempo, loudness, key and mode, duration), bad files as one
line each, and `generate --audio` making one cover per song from a conditional model."""

import numpy as np
import pytest
import soundfile
from PIL import Image

from ganzoo.audio import features as audio
from ganzoo.audio import song_features
from ganzoo.engine.training import run_training

from conftest import assert_user_error, invoke, tiny_config

RATE = 44100


def clicks(bpm: float, seconds: float = 12, rate: int = RATE, level: float = 0.5) -> np.ndarray:
    """A click track: a 10 ms 1 kHz blip on every beat."""
    y = np.zeros(int(seconds * rate), np.float32)
    blip = level * np.sin(2 * np.pi * 1000 * np.arange(int(0.01 * rate)) / rate) * np.linspace(1, 0, int(0.01 * rate))
    for beat in np.arange(0, seconds, 60 / bpm):
        start = int(round(beat * rate))
        y[start:start + len(blip)] += blip[:len(y) - start]
    return y


def triad(root_hz: float, minor: bool, seconds: float = 6) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    steps = (0, 3, 7) if minor else (0, 4, 7)
    return (0.2 * sum(np.sin(2 * np.pi * root_hz * 2 ** (s / 12) * t) for s in steps)).astype(np.float32)


@pytest.mark.parametrize("bpm", [60, 97, 120, 150, 180])
def test_tempo_is_within_2_percent_on_click_tracks(tmp_path, bpm):
    soundfile.write(tmp_path / "click.wav", clicks(bpm), RATE)
    assert song_features(tmp_path / "click.wav").values["tempo"] == pytest.approx(bpm, rel=0.02)


def test_loudness_follows_bs1770_and_a_level_shift(tmp_path):
    import pyloudnorm

    music = clicks(120) + 0.3 * triad(220, False, 12)
    soundfile.write(tmp_path / "a.flac", music, RATE)
    soundfile.write(tmp_path / "b.flac", music * 10 ** (-6 / 20), RATE)
    reference = pyloudnorm.Meter(RATE).integrated_loudness(music.astype(np.float64))
    a, b = (song_features(tmp_path / name).values["loudness"] for name in ("a.flac", "b.flac"))
    assert a == pytest.approx(reference, abs=1.0) and a - b == pytest.approx(6.0, abs=0.2)


@pytest.mark.parametrize("channels", [1, 2])
def test_the_streamed_loudness_meter_gives_pyloudnorms_integrated_loudness(channels):
    import pyloudnorm

    rng = np.random.default_rng(channels)
    song = (0.2 * rng.standard_normal((audio.LOUDNESS_RATE * 30, channels))).astype(np.float32)
    song[:audio.LOUDNESS_RATE * 8] *= 0.01  # a quiet start the relative gate drops
    song[audio.LOUDNESS_RATE * 12:audio.LOUDNESS_RATE * 15] = 0  # silence the absolute gate drops
    meter, start = audio.LoudnessMeter(channels), 0
    for size in [1, 4799, 123_457, 48_000, 10**9]:  # blocks that cut the 100 ms steps anywhere
        meter.add(song[start:start + size])
        start += size
    reference = pyloudnorm.Meter(audio.LOUDNESS_RATE).integrated_loudness(song[:, 0] if channels == 1 else song)
    assert meter.loudness() == pytest.approx(reference, abs=0.01)
    assert audio.LoudnessMeter(channels).loudness() == -np.inf


@pytest.mark.parametrize("rate", [48000, 96000, 22050])
def test_a_file_at_any_rate_is_measured_and_one_at_the_meters_rate_exactly(tmp_path, rate):
    import pyloudnorm

    t = np.arange(rate * 6) / rate
    song = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.1 * np.sin(2 * np.pi * 330 * t)], 1).astype(np.float32)
    soundfile.write(tmp_path / "song.wav", song, rate, subtype="FLOAT")
    loudness = song_features(tmp_path / "song.wav").values["loudness"]
    reference = pyloudnorm.Meter(rate).integrated_loudness(song.astype(np.float64))
    assert loudness == pytest.approx(reference, abs=0.01 if rate == audio.LOUDNESS_RATE else 0.1)


def test_songs_are_measured_in_a_worker_in_order_and_its_end_is_one_line(tmp_path):
    import multiprocessing
    import os
    import signal

    from ganzoo.audio.worker import SongMeasurer

    soundfile.write(tmp_path / "a.wav", clicks(120, 6), RATE)
    (tmp_path / "b.wav").write_bytes(b"not audio")
    soundfile.write(tmp_path / "c.wav", triad(220, True), RATE)
    with SongMeasurer([tmp_path / name for name in ("a.wav", "b.wav", "c.wav")]) as measurer:
        first, second, third = measurer.measured(descriptors=True)
    assert first.values["tempo"] == pytest.approx(120, rel=0.02) and set(audio.AUDIO_DESCRIPTORS) <= set(first.values)
    assert isinstance(second, audio.GanzooError) and "b.wav: not audio" in str(second)
    assert third.values == song_features(tmp_path / "c.wav", descriptors=True).values
    with SongMeasurer([tmp_path / "a.wav"]) as measurer:
        worker, = multiprocessing.active_children()
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(audio.GanzooError, match="measuring songs stopped: its worker process ended"):
            list(measurer.measured(descriptors=False))


@pytest.mark.parametrize("root, note", [(261.63, 0), (293.66, 2), (220.0, 9), (369.99, 6)])
@pytest.mark.parametrize("minor", [False, True])
def test_key_and_mode_of_a_triad(tmp_path, root, note, minor):
    soundfile.write(tmp_path / "chord.wav", triad(root, minor), RATE)
    values = song_features(tmp_path / "chord.wav").values
    assert (values["key"], values["mode"]) == (note, 0 if minor else 1)


@pytest.mark.parametrize("suffix, settings", [(".wav", {}), (".flac", {}), (".ogg", {"subtype": "VORBIS"}),
                                              (".mp3", {"format": "MP3", "subtype": "MPEG_LAYER_III"})])
def test_every_format_measures_its_duration_and_tempo(tmp_path, suffix, settings):
    path = tmp_path / f"song{suffix}"
    soundfile.write(path, np.stack([clicks(120, 8)] * 2, axis=1), RATE, **settings)
    values = song_features(path).values
    assert values["duration_ms"] == pytest.approx(8000, abs=60) and values["tempo"] == pytest.approx(120, rel=0.02)


def test_many_channels_and_a_high_rate_are_measured(tmp_path):
    soundfile.write(tmp_path / "eight.wav", np.stack([clicks(120, 6)] * 8, axis=1), RATE)
    soundfile.write(tmp_path / "fast.wav", clicks(120, 6, rate=384000), 384000)
    for name in ("eight.wav", "fast.wav"):
        assert song_features(tmp_path / name).values["tempo"] == pytest.approx(120, rel=0.02)


def test_a_long_song_is_analysed_up_to_the_cap_and_keeps_its_duration(tmp_path, monkeypatch):
    monkeypatch.setattr(audio, "MAX_SECONDS", 4)
    soundfile.write(tmp_path / "long.wav", clicks(120, 12), RATE)
    song = song_features(tmp_path / "long.wav")
    assert song.analysed_seconds == pytest.approx(4, abs=0.05) and song.values["duration_ms"] == pytest.approx(12000)
    assert "first 4 s analysed" in song.describe()


def bad_files(folder):
    soundfile.write(folder / "silent.wav", np.zeros(RATE * 4, np.float32), RATE)
    soundfile.write(folder / "one-sample.wav", np.zeros(1, np.float32), RATE)
    (folder / "noise.mp3").write_bytes(np.random.default_rng(0).bytes(50_000))
    Image.new("RGB", (8, 8)).save(folder / "picture.wav", "PNG")
    soundfile.write(folder / "whole.wav", clicks(120, 6), RATE)
    (folder / "truncated.wav").write_bytes((folder / "whole.wav").read_bytes()[:2000])
    (folder / "whole.wav").unlink()
    (folder / "empty.flac").write_bytes(b"")
    return {"silent.wav": "silent", "one-sample.wav": "at least 2 s", "noise.mp3": "not audio",
            "picture.wav": "not audio", "truncated.wav": "truncated", "empty.flac": "not audio"}


def test_bad_audio_is_one_line_naming_the_file(tmp_path):
    for name, why in bad_files(tmp_path).items():
        with pytest.raises(audio.GanzooError, match=why) as raised:
            song_features(tmp_path / name)
        assert name in str(raised.value) and "\n" not in str(raised.value)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("songs")
    conditional = tiny_config(recipe="acgan+wgan", options={"wgan": {"n_critic": 1},
                              "audio-features": {"features": ["loudness", "tempo", "energy"]}},
                              model={"conditions": ["audio-features"]}, schedule={"steps": 2})
    run_training(conditional, root / "loudness", progress=False)
    other = tiny_config(recipe="acgan+wgan", options={"wgan": {"n_critic": 1},
                        "audio-features": {"features": ["valence", "energy"]}},
                        model={"conditions": ["audio-features"]}, schedule={"steps": 2})
    run_training(other, root / "valence", progress=False)
    run_training(tiny_config(schedule={"steps": 1}), root / "unconditional", progress=False)
    return root


def test_generate_makes_one_cover_per_song_named_after_it(runs, tmp_path):
    songs = tmp_path / "songs"
    songs.mkdir()
    soundfile.write(songs / "loud.wav", clicks(120, 6, level=0.9), RATE)
    soundfile.write(songs / "quiet.flac", clicks(90, 6, level=0.05), RATE)
    result = invoke("generate", str(runs / "loudness"), "--audio", str(songs), "--features", "energy=0.5",
                    "--out-dir", tmp_path / "covers", "--size", "64", "--title", "Loud")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "covers").iterdir()) == ["loud.png", "quiet.png"]
    lines = {line.split(":")[0]: line for line in result.stdout.splitlines() if line.startswith(("loud", "quiet"))}
    assert "measured loudness" in lines["loud.wav"] and "given energy 0.5" in lines["quiet.flac"]
    assert "tempo 90.0 BPM" in lines["quiet.flac"]
    with Image.open(tmp_path / "covers" / "loud.png") as image:
        assert image.size == (64, 64)


def test_unmeasured_features_take_the_training_median(runs, tmp_path):
    soundfile.write(tmp_path / "song.wav", clicks(120, 6), RATE)
    result = invoke("generate", str(runs / "loudness"), "--audio", str(tmp_path / "song.wav"), "--out",
                    tmp_path / "cover.png")
    assert result.exit_code == 0, result.output
    assert "training median energy" in result.stdout and (tmp_path / "cover.png").is_file()


def test_bad_songs_are_skipped_one_line_each_and_the_rest_written(runs, tmp_path):
    songs = tmp_path / "songs"
    songs.mkdir()
    reasons = bad_files(songs)
    soundfile.write(songs / "good.wav", clicks(120, 6), RATE)
    result = invoke("generate", str(runs / "loudness"), "--audio", str(songs), "--out-dir", tmp_path / "covers")
    assert_user_error(result, f"{len(reasons)} of {len(reasons) + 1} songs could not be measured")
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert len(skipped) == len(reasons)
    assert [p.name for p in (tmp_path / "covers").iterdir()] == ["good.png"]


@pytest.mark.parametrize("run, fragment", [("valence", "none is measured from audio"),
                                           ("unconditional", "unconditional")])
def test_a_model_that_takes_no_audio_features_is_one_line(runs, tmp_path, run, fragment):
    soundfile.write(tmp_path / "song.wav", clicks(120, 6), RATE)
    result = invoke("generate", str(runs / run), "--audio", str(tmp_path / "song.wav"), "--out-dir", tmp_path / "out")
    assert_user_error(result, fragment)
    assert not any((tmp_path / "out").glob("*.png"))


def test_audio_flags_that_clash_or_name_nothing_are_refused(runs, tmp_path):
    assert_user_error(invoke("generate", str(runs / "loudness"), "--audio", str(tmp_path / "missing.wav")),
                      "no such file or folder")
    (tmp_path / "empty").mkdir()
    assert_user_error(invoke("generate", str(runs / "loudness"), "--audio", str(tmp_path / "empty")), "no audio files")
    soundfile.write(tmp_path / "song.wav", clicks(120, 3), RATE)
    assert_user_error(invoke("generate", str(runs / "loudness"), "--audio", str(tmp_path / "song.wav"), "-n", "4"),
                      "one cover per song")


def test_without_the_audio_extra_the_install_command_is_the_one_line(runs, tmp_path, monkeypatch):
    soundfile.write(tmp_path / "song.wav", clicks(120, 3), RATE)
    monkeypatch.setitem(__import__("sys").modules, "pyloudnorm", None)
    assert_user_error(invoke("generate", str(runs / "loudness"), "--audio", str(tmp_path / "song.wav")),
                      "pip install -e '.[audio]'", "pyloudnorm is missing")
