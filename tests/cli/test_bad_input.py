"""Bad input through the CLI and the studio: one line, exit code 2 (a 4xx for the studio), nothing deleted,
nothing left half-written."""

import json
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
import torch

import tiny_extractor
from ganzoo.registry import loading as plugins
from ganzoo.runtime.checkpoint import load_checkpoint, save_checkpoint
from ganzoo.data.prepare import clean_image, prepare
from ganzoo.registry.loading import load_plugins
from ganzoo.engine.training import run_training

from conftest import TINY_FLAGS, assert_user_error, cover_folder, invoke, tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained run folder."""
    folder = tmp_path_factory.mktemp("hardening") / "run"
    run_training(tiny_config(schedule={"steps": 2}), folder, progress=False)
    return folder


def rewrite(run, tmp_path, change):
    """A copy of ``run``'s checkpoint with ``change(state)`` applied (and a fresh digest)."""
    state = load_checkpoint(run)
    change(state)
    path = tmp_path / "changed.pt"
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version", "digest")}, path)
    return path


# --- data prepare never deletes what ganzoo did not write -------------------------------------------------------


def test_prepare_refuses_an_existing_folder_that_is_not_a_store(tmp_path):
    covers = cover_folder(tmp_path / "covers")
    thesis = tmp_path / "thesis"
    (thesis / "sub").mkdir(parents=True)
    (thesis / "notes.txt").write_text("keep me")
    (thesis / "sub" / "thesis.tex").write_text("\\section{keep me too}")
    assert_user_error(invoke("data", "prepare", covers, "--out", thesis, "--size", "32"),
                      "exists and is not a ganzoo store")
    assert (thesis / "notes.txt").read_text() == "keep me" and (thesis / "sub" / "thesis.tex").is_file()
    assert_user_error(invoke("data", "prepare", covers, "--out", covers, "--size", "32"), "inside the source folder")
    assert_user_error(invoke("data", "prepare", covers, "--out", covers / "store", "--size", "32"),
                      "inside the source folder")
    assert sorted(p.name for p in covers.iterdir()) == ["cover0.png", "cover1.png", "cover2.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["covers", "thesis"]  # no staging folder left


def test_prepare_into_an_empty_folder_and_beside_a_user_partial_folder(tmp_path):
    covers = cover_folder(tmp_path / "covers")
    users = tmp_path / "store.partial"
    users.mkdir()
    (users / "mine.txt").write_text("not ganzoo's")
    (tmp_path / "store").mkdir()
    result = invoke("data", "prepare", covers, "--out", tmp_path / "store", "--size", "32")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "store" / "manifest.json").is_file() and (users / "mine.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["covers", "store", "store.partial"]


def test_failed_prepare_leaves_nothing_and_stale_staging_is_cleared(tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_text("not an image")
    assert_user_error(invoke("data", "prepare", junk, "--out", tmp_path / "store"), "no usable images")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk"]
    stale = tmp_path / ".store.abc.partial"  # left by a killed prepare: marked, and its process is gone
    stale.mkdir()
    (stale / ".ganzoo-partial").write_text("999999999")
    foreign = tmp_path / ".store.xyz.partial"  # a folder of that shape without the mark is not ours
    foreign.mkdir()
    covers = cover_folder(tmp_path / "covers")
    assert invoke("data", "prepare", covers, "--out", tmp_path / "store", "--size", "32").exit_code == 0
    assert not stale.exists() and foreign.is_dir()


def tiny_png(path, width, height, mode=b"\x08\x02"):
    """A PNG whose header declares ``width`` x ``height`` but whose pixel data is a few bytes: decoding it in
    full would take width x height pixels of memory."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">II", width, height) + mode + b"\x00\x00\x00"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_huge_canvases_links_and_loops_are_counted(tmp_path):
    covers = cover_folder(tmp_path / "covers")
    tiny_png(covers / "huge.png", 12500, 12500)
    tiny_png(covers / "huge16.png", 12500, 12500, mode=b"\x10\x00")  # 16-bit greyscale
    (covers / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (covers / "loop").symlink_to(covers)
    (covers / "self.png").symlink_to(covers / "self.png")
    store, report = prepare(covers, 32, out=tmp_path / "store", workers=1, progress=False)
    assert report["kept"] == 3
    assert report["dropped"] == {"too large": 2, "broken symlink": 1, "symlink loop": 2}
    assert report["files"] == 8 and report["metadata_rows_without_image"] == 0
    with pytest.raises(Exception, match="too large"):
        clean_image(str(covers / "huge.png"), 64)


# --- one run folder, one trainer ---------------------------------------------------------------------------------

def test_a_second_training_into_the_same_folder_is_refused_naming_the_first(tmp_path):
    folder = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "ganzoo", "train", "wgan", *TINY_FLAGS, "--steps", "100000",
                              "--out", str(folder), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.time() + 120
        while not (folder / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.2)
        line = assert_user_error(invoke("train", "wgan", *TINY_FLAGS, "--steps", "3", "--out", folder),
                                 "is in use by another ganzoo process", f"pid {first.pid}")
        assert "training" in line
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130
    steps = [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # one writer: no step logged twice, none out of order


def test_resume_from_an_earlier_checkpoint_cuts_later_metrics_and_stale_temporaries(tmp_path):
    folder = tmp_path / "run"
    run_training(tiny_config(schedule={"steps": 2}), folder, progress=False)
    earlier = (folder / "checkpoint.pt").read_bytes()
    run_training(tiny_config(schedule={"steps": 4}), folder, resume=load_checkpoint(folder), progress=False)
    (folder / "checkpoint.pt").write_bytes(earlier)  # as if the run had been killed before its step-4 checkpoint
    (folder / "checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    result = invoke("train", "--resume", folder, "--steps", "5", "--quiet")
    assert result.exit_code == 0, result.output
    steps = [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
    assert not list(folder.glob("*.tmp"))
    elapsed = [json.loads(line)["elapsed_s"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert elapsed[2] > elapsed[1]  # the clock continues from the checkpoint, it does not restart at 0
    assert_user_error(invoke("train", "--resume", folder, "--steps", "5"), "already at step 5",
                      "--steps above 5")


# --- checkpoints ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, content, message", [
    ("random.pt", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "not a ganzoo checkpoint"),
    ("empty.pt", b"", "an empty file"),
    ("notes.txt", b"hello, these are notes", "not a ganzoo checkpoint"),
    ("config.json", b'{"recipe": "wgan"}', "not a ganzoo checkpoint"),
    ("zip.pt", b"PK\x03\x04" + bytes(300), "not a readable checkpoint"),
    ("pickle.pt", b"\x80\x02}q\x00(X\x01", "not a readable checkpoint"),
])
def test_files_that_are_not_checkpoints(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    assert_user_error(invoke("generate", path, "--out", tmp_path / "grid.png"), message)
    assert not (tmp_path / "grid.png").exists()


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("config"), "'config' should be a str, is missing"),
    (lambda s: s.update(config='{"batch_size": -1}'), "unusable config: invalid config: schedule.batch_size"),
    (lambda s: s.update(config="{not json"), "unusable config"),
    (lambda s: s["spec"].update(colour_space="lab"), "'spec' is malformed"),
    (lambda s: s["spec"].update(image_size="big"), "'spec' is malformed"),
    (lambda s: s.update(step="many"), "'step' should be a int, is a str"),
    (lambda s: s.update(ema="weights"), "'ema' is not a table of tensors"),
    (lambda s: s["ema"].__setitem__(next(iter(s["ema"])), torch.tensor([float("nan")])), "non-finite ema weights"),
])
def test_checkpoints_with_bad_contents(run, tmp_path, change, message):
    path = rewrite(run, tmp_path, change)
    assert_user_error(invoke("generate", path, "--out", tmp_path / "grid.png"), message)


def test_nan_weights_and_string_steps_stop_resume(run, tmp_path):
    for change, message in [(lambda s: s["generator"].__setitem__("convs.0.weight", s["generator"]["convs.0.weight"]
                                                                   * float("nan")), "non-finite generator weights"),
                            (lambda s: s.update(step="3"), "'step' should be a int")]:
        folder = tmp_path / "resumed"
        folder.mkdir(exist_ok=True)
        (folder / "checkpoint.pt").write_bytes(rewrite(run, tmp_path, change).read_bytes())
        assert_user_error(invoke("train", "--resume", folder, "--steps", "9"), message)


def test_edited_bytes_are_caught_by_the_digest(run, tmp_path):
    original = (run / "checkpoint.pt").read_bytes()
    state = load_checkpoint(run)
    weights_at = original.index(bytes(state["ema"]["module.to_rgb.weight"].untyped_storage())[:64])
    damaged = bytearray(original)
    damaged[weights_at + 8] ^= 0x40  # one bit of one weight: still a valid float, still loads in torch
    path = tmp_path / "damaged.pt"
    path.write_bytes(bytes(damaged))
    assert torch.load(path, weights_only=True)["step"] == state["step"]
    assert_user_error(invoke("generate", path, "--out", tmp_path / "grid.png"), "is damaged")


def test_training_that_diverges_keeps_the_last_finite_checkpoint(tmp_path):
    config = tiny_config(options={"wgan": {"n_critic": 1, "lr_generator": 1e5,
                                                                        "lr_critic": 1e5}}, schedule={"steps": 6, "checkpoint_every": 1})
    with pytest.raises(Exception, match="training diverged at step 2"):
        run_training(config, tmp_path / "run", progress=False)
    state = load_checkpoint(tmp_path / "run")  # loads, so its weights are finite
    assert state["step"] == 1


# --- configs and sizes --------------------------------------------------------------------------------------------

def test_config_files_that_are_not_text_or_explode(tmp_path):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"batch_size: 8\n\xff\xfe\x00data")
    assert_user_error(invoke("train", "--config", binary), "is not UTF-8 text")
    bomb = tmp_path / "bomb.yaml"
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [" + ",".join([f"*{previous}"] * 9) + "]")
    lines.append("conditions: *i")
    bomb.write_text("\n".join(lines) + "\n")
    assert len(bomb.read_bytes()) < 600
    started = time.perf_counter()
    line = assert_user_error(invoke("train", "wgan", "--config", bomb), "more than 10,000 values")
    assert time.perf_counter() - started < 5 and len(line) < 300
    broken = tmp_path / "broken.yaml"
    broken.write_text("batch_size: 8\ndata:\n  image_size: [32\n")
    assert_user_error(invoke("train", "wgan", "--config", broken), "not valid YAML", "line 4")


@pytest.mark.parametrize("setting, message", [
    ("options.synthcovers.seed=-1", "options.synthcovers.seed: Input should be greater than or equal to 0"),
    (f"system.seed={10 ** 30}", "seed: Input should be less than or equal to 2147483647"),
    ("model.conditions=[" + ",".join(["x" * 500] * 40) + "]", "unknown condition"),
])
def test_bad_values_are_one_short_line(tmp_path, setting, message):
    line = assert_user_error(invoke("train", "wgan", *TINY_FLAGS, "--set", setting, "--out", tmp_path / "run"),
                             message)
    assert len(line) <= 1100


@pytest.mark.parametrize("settings, message", [
    (["options.synthcovers.count=1000000000"], "dataset 'synthcovers' at 32 px needs about 2.8 TiB"),
    (["model.width=1000000"], "lower batch_size, model.width or model.latent_dim"),
    (["model.latent_dim=1000000000"], "lower batch_size, model.width or model.latent_dim"),
    (["schedule.batch_size=100000", "model.width=64", "data.image_size=64"], "activations for batch_size 100000"),
])
def test_runs_that_cannot_fit_in_memory_say_so_before_allocating(tmp_path, settings, message):
    flags = [*TINY_FLAGS, *[x for s in settings for x in ("--set", s)]]
    assert_user_error(invoke("train", "wgan", *flags, "--out", tmp_path / "run"), message, "free on cpu")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


# --- generate, bench, plugins, studio --------------------------------------------------------------------------

def test_generate_into_a_path_under_a_file(run, tmp_path):
    (tmp_path / "afile").write_text("x")
    assert_user_error(invoke("generate", run, "--out", tmp_path / "afile" / "grid.png"), "a file is in the way")
    assert_user_error(invoke("generate", run, "--out-dir", tmp_path / "afile" / "covers"), "a file is in the way")


def test_a_grid_named_other_than_png_is_refused_before_any_work(run, tmp_path):
    assert_user_error(invoke("generate", run, "-n", "4", "--out", tmp_path / "grid.jpg"), "a grid is written as PNG")
    assert not (tmp_path / "grid.jpg").exists()


@pytest.fixture
def tiny_registry(monkeypatch):
    monkeypatch.setattr(plugins, "_registry", load_plugins({"tiny": tiny_extractor}))


def test_bench_minimum_counts_and_small_sample_warnings(run, tmp_path, tiny_registry):
    one = cover_folder(tmp_path / "one", count=1)
    out = tmp_path / "bench.json"
    assert_user_error(invoke("bench", one, "--size", "32", "--ref", run, "--extractor", "tiny", "--out", out),
                      "fid needs at least 2 generated images; the source gives 1")
    assert_user_error(invoke("bench", run, "--ref", one, "--extractor", "tiny", "-n", "8", "--out", out),
                      "fid needs at least 2 reference images; the reference gives 1")
    three = cover_folder(tmp_path / "three", count=3)
    assert_user_error(invoke("bench", run, "--ref", three, "--metric", "pr", "--extractor", "tiny", "-n", "3",
                             "--out", out), "pr needs at least 4 generated images")
    small = invoke("bench", run, "--metric", "fid", "--metric", "kid", "--ref", "synthcovers", "--size", "32",
                   "--extractor", "tiny", "-n", "2", "--real", "2", "--out", out)
    assert small.exit_code == 0, small.output
    assert "warning: FID from 2 generated and 2 real images" in small.stderr
    assert "kid_std is 0 and says nothing" in small.stderr
    assert len(json.loads(out.read_text())["protocol"]["warnings"]) == 2


def test_bench_checks_the_reference_before_generating(run, tmp_path, tiny_registry, monkeypatch):
    import ganzoo.evaluation.scoring

    def no_extraction(*args, **kwargs):
        raise AssertionError("features were extracted before the reference was checked")

    monkeypatch.setattr(ganzoo.evaluation.scoring, "extract", no_extraction)
    assert_user_error(invoke("bench", run, "--ref", "synthcovrs", "--extractor", "tiny", "--out",
                             tmp_path / "b.json"), "unknown dataset 'synthcovrs'", "did you mean 'synthcovers'")


def test_unknown_plugin_in_load_plugins_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("GANZOO_LOAD_PLUGINS", "nope,wgan")
    result = subprocess.run([sys.executable, "-m", "ganzoo", "train", "wgan", "--out", str(tmp_path / "r")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "Error: GANZOO_LOAD_PLUGINS names 'nope', which no installed plugin is called (installed: acgan, ")
    assert "synthcovers, upscalers, wgan)" in lines[0]


def test_help_and_version_do_not_import_torch():
    for flags in (["--version"], ["--help"], ["train", "--help"]):
        code = ("import sys\nfrom ganzoo.apps.cli import cli\ntry:\n    cli(%r, prog_name='ganzoo')\n"
                "except SystemExit:\n    pass\nprint('torch' in sys.modules)" % flags)
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.stdout.strip().endswith("False"), (flags, result.stdout, result.stderr)
