"""Files received from someone else (run folders, checkpoints, stores, features files, metadata tables) and
requests too large for the generate side: each is one line and exit code 2 (a 4xx for the studio), nothing is
written outside the named paths, and nothing is left half-written."""

import json
import os
import random
import stat
import time

import numpy as np
import pytest
import torch
from PIL import Image

from ganzoo.runtime.checkpoint import load_checkpoint, save_checkpoint
from ganzoo.apps.studio import Studio, create_app
from ganzoo.engine.sampling import load_sampler
from ganzoo.engine.training import run_training

from conftest import TINY_FLAGS, assert_user_error, cover_folder, invoke, tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny unconditional run folder."""
    folder = tmp_path_factory.mktemp("received") / "run"
    run_training(tiny_config(schedule={"steps": 2}), folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    """A tiny run conditioned on three audio features of synthcovers."""
    folder = tmp_path_factory.mktemp("received") / "conditional"
    run_training(tiny_config(options={"audio-features": {"features": ["energy", "valence", "tempo"]}}, schedule={"steps": 2}, model={"conditions": ["audio-features"]}), folder,
          progress=False)
    return folder


def rewrite(source, path, change):
    """A copy of ``source``'s checkpoint at ``path`` with ``change(state)`` applied and a fresh digest, as a
    crafted file would have."""
    state = load_checkpoint(source)
    change(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version", "digest")}, path)
    return path


def copied_run(run, folder):
    folder.mkdir()
    for name in ("checkpoint.pt", "config.json", "metrics.jsonl"):
        (folder / name).write_bytes((run / name).read_bytes())
    return folder


# --- a run folder never makes ganzoo write or read outside it ----------------------------------------------------

@pytest.mark.parametrize("name", [".ganzoo.lock", "metrics.jsonl", "config.json", "samples.png", "checkpoint.pt"])
def test_a_planted_file_link_in_a_run_folder_is_refused(run, tmp_path, name):
    folder = copied_run(run, tmp_path / "received")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    (folder / name).unlink(missing_ok=True)
    (folder / name).symlink_to(os.path.relpath(notes, folder))
    assert_user_error(invoke("train", "--resume", folder, "--steps", "3", "--quiet"), "symbolic link", name)
    assert notes.read_text() == "my notes"


@pytest.mark.parametrize("name", ["samples", "tensorboard"])
def test_a_planted_folder_link_in_a_run_folder_is_refused(run, tmp_path, name):
    folder = copied_run(run, tmp_path / "received")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / name).symlink_to(elsewhere)
    assert_user_error(invoke("train", "--resume", folder, "--steps", "3", "--quiet"), "symbolic link", name)
    assert not any(elsewhere.iterdir())


def test_a_planted_link_inside_the_samples_folder_is_refused(run, tmp_path):
    folder = copied_run(run, tmp_path / "received")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    (folder / "samples").mkdir()
    (folder / "samples" / "step_0000003.png").symlink_to(notes)
    assert_user_error(invoke("train", "--resume", folder, "--steps", "3", "--quiet"), "symbolic link")
    assert notes.read_text() == "my notes"


def test_a_fifo_in_place_of_the_lock_is_refused_without_hanging(run, tmp_path):
    folder = copied_run(run, tmp_path / "received")
    os.mkfifo(folder / ".ganzoo.lock")
    assert_user_error(invoke("train", "--resume", folder, "--steps", "3", "--quiet"), "not a regular file")


# --- sampling needs only the checkpoint ---------------------------------------------------------------------------

def test_a_checkpoint_naming_another_folder_as_its_data_never_opens_it(conditional, tmp_path):
    other = tmp_path / "someone-elses-photos"
    other.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), (50 * i, 0, 0)).save(other / f"photo{i}.png")
    steered = rewrite(conditional, tmp_path / "steered.pt", lambda s: s.update(
        config=s["config"].replace('"name":null', json.dumps({"name": str(other)})[1:-1])))
    assert str(other) in load_checkpoint(steered)["config"]
    result = invoke("generate", steered, "-n", "4", "--out", tmp_path / "grid.png")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "cache" / "stores").exists()  # the folder was never walked or packed


def drop_feature(state, feature):
    """A checkpoint whose config, fitted state and record no longer name ``feature``, consistently: only the
    networks still take it."""
    config = json.loads(state["config"])
    features = config["options"]["audio-features"]["features"]
    index = features.index(feature)
    features.remove(feature)
    state["config"] = json.dumps(config)
    fitted = state["conditions"]["states"]["audio-features"]
    for key in ("mean", "std"):
        fitted[key] = [v for i, v in enumerate(fitted[key]) if i != index]
    for part in ("columns", "rows"):
        state["conditions"][part].pop(feature)


@pytest.mark.parametrize("change, message", [
    (lambda s: s["conditions"]["states"]["audio-features"].update(std=[0.0, 1.0, 1.0]), "positive"),
    (lambda s: s["conditions"]["states"]["audio-features"].update(mean=[float("nan")] * 3), "finite means"),
    (lambda s: s["conditions"]["states"]["audio-features"].update(mean=[0.5]), "holds 1 means"),
    (lambda s: s["conditions"].update(states=None), "keeps no fitted state"),
    (lambda s: s["conditions"]["columns"]["tempo"].update(low=float("nan")), "the range of 'tempo'"),
    (lambda s: s["conditions"]["rows"].update(tempo=["fast"] * len(s["conditions"]["rows"]["tempo"])),
     "wrong kind"),
    (lambda s: s["conditions"]["rows"].update(tempo=[1.0]), "training rows of the conditions are malformed"),
    (lambda s: s.pop("conditions"), "missing or malformed"),
    (lambda s: drop_feature(s, "energy"), "its conditions encode 2 values, its networks take 3"),
])
def test_bad_condition_records_are_refused(conditional, tmp_path, change, message):
    path = rewrite(conditional, tmp_path / "bad.pt", change)
    assert_user_error(invoke("generate", path, "--out", tmp_path / "grid.png"), message)
    assert_user_error(invoke("studio", path, "--port", "0"), message)
    assert not (tmp_path / "grid.png").exists()


def test_nan_condition_states_do_not_pass_through_init_from(conditional, tmp_path):
    path = rewrite(conditional, tmp_path / "nan.pt",
                   lambda s: s["conditions"]["states"]["audio-features"].update(std=[float("nan")] * 3))
    result = invoke("train", *TINY_FLAGS, "--set", "recipe=wgan", "--set", "model.conditions=[audio-features]",
                    "--set", "options.audio-features.features=[energy, valence, tempo]", "--init-from", path,
                    "--steps", "1", "--out", tmp_path / "tuned")
    assert_user_error(result, "positive, finite spreads")
    assert not (tmp_path / "tuned" / "checkpoint.pt").exists()


def test_the_studio_never_sends_invalid_json(conditional):
    sampler = load_sampler(conditional, torch.device("cpu"))
    client = create_app(Studio(sampler)).test_client()
    info = client.get("/api/info")
    assert info.status_code == 200 and "NaN" not in info.get_data(as_text=True)
    json.loads(info.get_data(as_text=True))
    nested = client.post("/api/track", data="[" * 20000 + "]" * 20000, content_type="application/json")
    assert nested.status_code == 400 and "JSON object" in nested.get_json()["error"]


# --- networks a checkpoint asks for are checked before they are built -------------------------------------------

def enlarged(size=None, width=None):
    def change(state):
        config = json.loads(state["config"])
        if size:
            config["data"]["image_size"] = state["spec"]["image_size"] = size
        if width:
            config["model"]["width"] = state["spec"]["width"] = width
        state["config"] = json.dumps(config)
    return change


@pytest.mark.parametrize("change, message", [
    (enlarged(size=4096), "builds images of 16, 32, 64, 128, 256 px, not data.image_size=4096"),
    (enlarged(width=10 ** 6), "cannot be used on this machine"),
])
def test_checkpoints_asking_for_impossible_networks(run, tmp_path, change, message):
    path = rewrite(run, tmp_path / "huge.pt", change)
    started = time.perf_counter()
    assert_user_error(invoke("generate", path, "--out", tmp_path / "grid.png"), message)
    assert_user_error(invoke("bench", path, "--metric", "fid", "--out", tmp_path / "b.json"), message)
    assert_user_error(invoke("studio", path, "--port", "0"), message)
    assert time.perf_counter() - started < 60


def test_init_from_a_checkpoint_of_another_size_names_it_before_building(run, tmp_path):
    path = rewrite(run, tmp_path / "huge.pt", enlarged(size=4096))
    assert_user_error(invoke("train", "wgan", *TINY_FLAGS, "--init-from", path, "--steps", "1",
                             "--out", tmp_path / "tuned"), "its data.image_size is 4096, this run's is 32")


def test_init_from_a_run_of_another_loss_names_the_batch_norm(tmp_path):
    source = tmp_path / "ns"
    run_training(tiny_config(recipe="dcgan+ns", schedule={"steps": 1}), source, progress=False)
    result = invoke("train", "dcgan+wgan", *TINY_FLAGS, "--init-from", source, "--steps", "1",
                    "--out", tmp_path / "tuned")
    assert_user_error(result, "its loss 'ns' allows batch norm in the critic", "'wgan' forbids it")


# --- the generate side is bounded -----------------------------------------------------------------------------

def test_an_upscaled_grid_is_written_cover_by_cover(run, tmp_path):
    result = invoke("generate", run, "-n", "5", "--upscale", "3", "--upscale-filter", "nearest",
                    "--out", tmp_path / "grid.png", "--out-dir", tmp_path / "covers")
    assert result.exit_code == 0, result.output
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 * (96 + 2) + 2, 3 * (96 + 2) + 2, 3)  # 3 columns, 2 rows, 2 px of black around each
    for i in range(5):
        cover = np.asarray(Image.open(tmp_path / "covers" / f"{i:05d}.png"))
        top, left = 2 + (i // 3) * 98, 2 + (i % 3) * 98
        assert np.array_equal(grid[top:top + 96, left:left + 96], cover)
    assert not grid[:2].any() and not grid[98:100].any() and not grid[100:, 100 + 96:].any()


def test_a_grid_that_cannot_fit_in_memory_is_refused_before_generating(run, tmp_path, monkeypatch):
    import ganzoo.runtime.memory
    monkeypatch.setattr(ganzoo.runtime.memory, "available_bytes", lambda device: 16 << 20)
    assert_user_error(invoke("generate", run, "-n", "4096", "--upscale", "16", "--out", tmp_path / "grid.png"),
                      "4096 covers of 32 px written 16x larger needs about", "ask for fewer covers")
    assert not (tmp_path / "grid.png").exists()


def test_seeds_beyond_the_range_are_refused(run, tmp_path):
    assert_user_error(invoke("generate", run, "--seed", str(10 ** 30), "--out", tmp_path / "g.png"), "--seed")
    assert_user_error(invoke("bench", run, "--seed", "-1", "--out", tmp_path / "b.json"), "--seed")


def features_file(path, rows):
    path.write_text("track_id,energy,valence,tempo\n" + "".join(f"{t},0.5,0.5,120\n" for t in rows))
    return path


def test_tracks_files_that_are_devices_long_lines_or_latin1(conditional, tmp_path):
    track = "4uLU6hMCjMI75M1A2tKUQC"
    flags = ["--track", track, "--out", tmp_path / "g.png"]
    assert_user_error(invoke("generate", conditional, *flags, "--tracks", "/dev/zero"), "not a regular file")
    long = features_file(tmp_path / "long.csv", [track])
    long.write_text(long.read_text() + "x" * 70_000 + "\n")
    assert_user_error(invoke("generate", conditional, "--track", "0" * 22, "--tracks", long, "--out",
                             tmp_path / "g.png"), "line 3 of", "longer than 64 KiB")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("track_id,energy,valence,tempo,artist\n".encode() + f"{track},0.5,0.5,120,Sigur Rós\n"
                      .encode("latin-1"))
    assert_user_error(invoke("generate", conditional, *flags, "--tracks", latin), "line 2 of", "not UTF-8",
                      "0xf3")
    found = features_file(tmp_path / "ok.csv", ["0" * 22] * 1000 + [track])
    assert invoke("generate", conditional, *flags, "--tracks", found).exit_code == 0


# --- metadata, manifests and --where ------------------------------------------------------------------------------


def test_a_latin1_metadata_table_names_its_line(tmp_path):
    covers = cover_folder(tmp_path / "covers")
    (covers / "metadata.csv").write_bytes("file,artist\n".encode() + "".join(
        f"cover{i}.png,{'Björk' if i == 2 else 'Low'}\n" for i in range(4)).encode("latin-1"))
    assert_user_error(invoke("data", "prepare", covers, "--size", "32", "--out", tmp_path / "store"),
                      "is not UTF-8: byte 0xf6 on line 4, column 14", "iconv")
    assert not (tmp_path / "store").exists()
    (covers / "metadata.csv").unlink()
    assert invoke("data", "prepare", covers, "--size", "32", "--out", tmp_path / "store").exit_code == 0
    (tmp_path / "store" / "metadata.csv").write_bytes("file\ncover0.png\nBj\xf6rk\n".encode("latin-1"))
    assert_user_error(invoke("data", "inspect", tmp_path / "store"), "not UTF-8", "line 3")
    assert_user_error(invoke("data", "split", tmp_path / "store", "--out", tmp_path / "split"), "not UTF-8")
    assert not (tmp_path / "split").exists()


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(count="many"), "count: Input should be a valid integer"),
    (lambda m: m.pop("fingerprint"), "fingerprint: Field required"),
    (lambda m: m.update(count=-1), "count: Input should be greater than or equal to 1"),
    (lambda m: m.update(image_size=0), "image_size: Input should be greater than or equal to 8"),
    (lambda m: m.update(count=2), "holds 9,216 bytes, not the 6,144"),
    (lambda m: m.update(format="zip"), "format: Input should be 'ganzoo-store'"),
])
def test_edited_store_manifests(tmp_path, change, message):
    store = tmp_path / "store"
    assert invoke("data", "prepare", cover_folder(tmp_path / "covers"), "--size", "32", "--out", store).exit_code == 0
    manifest = json.loads((store / "manifest.json").read_text())
    change(manifest)
    (store / "manifest.json").write_text(json.dumps(manifest))
    for command in (["data", "split", store, "--out", tmp_path / "split"], ["data", "inspect", store]):
        assert_user_error(invoke(*command), message)
    assert not (tmp_path / "split").exists()


def test_where_expressions_are_parsed_in_linear_time_and_finite(tmp_path):
    covers = cover_folder(tmp_path / "covers")
    (covers / "metadata.csv").write_text("file,year\n" + "".join(f"cover{i}.png,{1990 + i}\n" for i in range(4)))
    started = time.perf_counter()
    assert_user_error(invoke("data", "prepare", covers, "--where", "year" + " " * 16_000 + ">= 1991"),
                      "is 16,011 characters long")
    assert_user_error(invoke("data", "prepare", covers, "--where", "year" + " " * 990 + "!"),
                      "is not COLUMN OP VALUE")
    assert time.perf_counter() - started < 5
    assert_user_error(invoke("data", "prepare", covers, "--where", "year >= nan"), "not a finite number")
    assert_user_error(invoke("data", "prepare", covers, "--where", "year >= 3000", "--out", tmp_path / "s"),
                      "no row of", "matches year >= 3000")


def test_prepared_stores_follow_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        assert invoke("data", "prepare", cover_folder(tmp_path / "covers"), "--size", "32",
                      "--out", tmp_path / "store").exit_code == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "store").stat().st_mode) == 0o750


def test_running_out_of_memory_while_decoding_stops_instead_of_dropping(tmp_path, monkeypatch):
    covers = cover_folder(tmp_path / "covers")

    def exhausted(self, *args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(Image.Image, "load", exhausted)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", exhausted)
    assert_user_error(invoke("data", "prepare", covers, "--size", "32", "--workers", "1", "--out",
                             tmp_path / "store"), "ran out of memory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "covers"] or not (tmp_path / "store").exists()


# --- resuming from a crafted optimiser state --------------------------------------------------------------------

def optimiser_mutations():
    def first(state):
        return state["optimiser_g"]["state"][0]

    return [
        (lambda s: first(s).pop("exp_avg"), "keeps ['exp_avg_sq', 'step']"),
        (lambda s: first(s).update(exp_avg=torch.zeros(3)), "not a finite tensor of the parameter's shape"),
        (lambda s: first(s).update(exp_avg=first(s)["exp_avg"] * float("nan")), "not a finite tensor"),
        (lambda s: s["optimiser_g"]["state"].update({999: first(s)}), "a parameter 999 this run does not have"),
        (lambda s: s["optimiser_g"]["param_groups"].append(s["optimiser_g"]["param_groups"][0]), "parameter groups"),
        (lambda s: s["optimiser_g"]["param_groups"][0]["params"].pop(), "parameter groups differ"),
        (lambda s: s["optimiser_g"]["param_groups"][0].update(lr=float("inf")), "setting 'lr'"),
        (lambda s: s["optimiser_d"].update(state=[]), "critic optimiser state"),
        (lambda s: s.update(sampler_position=10 ** 30), "data position"),
    ]


@pytest.mark.parametrize("change, message", optimiser_mutations())
def test_resume_with_a_malformed_optimiser_state(run, tmp_path, change, message):
    folder = tmp_path / "received"
    folder.mkdir()
    rewrite(run, folder / "checkpoint.pt", change)
    assert_user_error(invoke("train", "--resume", folder, "--steps", "3", "--quiet"), message)


def test_fuzzed_optimiser_states_resume_or_are_one_line(run, tmp_path):
    rng = random.Random(5)
    outcomes = {"resumed": 0, "refused": 0}
    state = load_checkpoint(run)
    for trial in range(30):
        folder = tmp_path / f"fuzz{trial}"
        folder.mkdir()

        def change(s):
            optimiser = s[rng.choice(["optimiser_g", "optimiser_d"])]
            entry = optimiser["state"][rng.choice(sorted(optimiser["state"]))]
            key = rng.choice(sorted(entry))
            choice = rng.random()
            if choice < 0.3:
                entry.pop(key)
            elif choice < 0.6:
                entry[key] = torch.randn(rng.randint(1, 4))
            elif choice < 0.8:
                entry[key] = "text"
            else:
                optimiser["param_groups"][0][rng.choice(sorted(state["optimiser_g"]["param_groups"][0]))] = \
                    rng.choice([None, -1, "x", [1, 2, 3], float("nan")])

        rewrite(run, folder / "checkpoint.pt", change)
        result = invoke("train", "--resume", folder, "--steps", "3", "--quiet")
        if result.exit_code == 0:
            outcomes["resumed"] += 1
        else:
            assert_user_error(result)
            outcomes["refused"] += 1
    assert outcomes["refused"] >= 20, outcomes


def test_fuzzed_store_manifests_load_or_are_one_line(tmp_path):
    store = tmp_path / "store"
    assert invoke("data", "prepare", cover_folder(tmp_path / "covers"), "--size", "32", "--out", store).exit_code == 0
    original = json.loads((store / "manifest.json").read_text())
    rng = random.Random(11)
    values = [None, -1, 0, 1, 2 ** 70, "x", "", [], {}, 3.5, True, "../../etc", ["shard-1"]]
    for trial in range(60):
        manifest = dict(original)
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(sorted(manifest) + ["shards", "extra"])
            manifest[key] = rng.choice(values)
        (store / "manifest.json").write_text(json.dumps(manifest))
        result = invoke("data", "inspect", store)
        if result.exit_code != 0:
            assert_user_error(result)
