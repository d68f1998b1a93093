"""From a folder of covers to covers one keeps, through the CLI: training on a folder with choices made from the
data, fine-tuning that takes the source's shape, resuming to the planned budget, snapshots and best.pt, bench
compare and reference statistics, and the generator tools (truncation, interpolation, time-lapse, mirroring,
the augmentation preview, projection)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import tiny_extractor
from ganzoo.data.loader import BatchSampler, ResidentBatches
from ganzoo.registry import loading as plugins
from ganzoo.registry.loading import load_plugins
from ganzoo.runtime.checkpoint import load_checkpoint, save_checkpoint
from ganzoo.runtime.context import RunContext

from conftest import REPO, assert_user_error, invoke

SMALL = ["--set", "model.width=8", "--set", "model.latent_dim=16"]
"""A tiny model; image size, batch size and recipe are left for train to choose."""


def train(*args):
    result = invoke("train", *args, "--quiet") if "--banner" not in args else invoke(
        "train", *[a for a in args if a != "--banner"])
    assert result.exit_code == 0, result.output + str(result.exception)
    return result


def config_of(run):
    return json.loads((run / "config.json").read_text())


@pytest.fixture(scope="module")
def covers(tmp_path_factory):
    """Six 40 px covers of random noise (none a near-duplicate of another) and a seventh, a duplicate."""
    folder = tmp_path_factory.mktemp("covers") / "covers"
    folder.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
    for i, cover in enumerate(pixels):
        Image.fromarray(cover).save(folder / f"cover{i}.png")
    Image.fromarray(pixels[0]).save(folder / "copy.png")
    return folder


@pytest.fixture
def tiny_registry(monkeypatch):
    monkeypatch.setattr(plugins, "_registry", load_plugins({"tiny": tiny_extractor}))


# --- start ----------------------------------------------------------------------------------------------------

def test_train_on_a_folder_chooses_size_batch_and_recipe_from_the_data(covers, tmp_path):
    run = tmp_path / "run"
    result = train(covers, *SMALL, "--steps", "1", "--out", run, "--banner")
    config = config_of(run)
    assert config["data"]["image_size"] == 32  # 40 px covers: the largest size dcgan builds at or below 40
    assert config["schedule"]["batch_size"] == 6  # not above the data's 6 images
    assert config["recipe"] == "dcgan+ns+diffaug"
    for line in (f"training dcgan+ns+diffaug in {run}", f"{covers}: 6 images at 32 px, batches of 6",
                 "image size 32 px (the data's images are 40 px", "batch size 6 (the data holds 6 images)",
                 "recipe dcgan+ns+diffaug (the default at 32 px", f"ganzoo train --resume {run}", "budget:    1 step"):
        assert line in result.stderr, result.stderr
    swapped = tmp_path / "swapped"
    train("wgan", "--data", covers, *SMALL, "--steps", "1", "--out", swapped)
    assert config_of(swapped)["recipe"] == "dcgan+wgan" and config_of(swapped)["data"]["name"] == str(covers)
    assert_user_error(invoke("train", covers, covers), "two datasets given")
    assert_user_error(invoke("train", "wgan", "ns"), "two recipes given")


def test_another_datasets_options_in_a_config_file_are_dropped_with_a_warning(covers, tmp_path):
    run = tmp_path / "run"
    result = train(covers, "--config", REPO / "configs" / "quickstart.toml", *SMALL, "--steps", "1", "--out", run,
                   "--set", "schedule.batch_size=4")
    assert "ignoring options for synthcovers: this run's data is" in result.stderr
    assert "synthcovers" not in config_of(run)["options"]
    assert config_of(run)["data"]["name"] == str(covers)


def test_config_mistakes_are_said_before_torch_or_the_plugins_load(tmp_path):
    code = ("import sys; from ganzoo.apps.cli import cli\n"
            "try:\n    cli(['train', '--set', 'model.widht=3'], prog_name='ganzoo')\n"
            "except SystemExit as exit:\n    print(exit.code, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.stdout.split() == ["2", "False"], result.stderr
    assert "did you mean model.width for model.widht?" in result.stderr


def test_init_from_takes_the_sources_shape_unless_set(covers, tmp_path):
    source = tmp_path / "source"
    train(covers, *SMALL, "--steps", "1", "--out", source)
    tuned = tmp_path / "tuned"
    result = train(covers, "--init-from", source, "--steps", "1", "--out", tuned, "--banner")
    assert "from --init-from: recipe dcgan+ns+diffaug, data.image_size=32, model.width=8, model.latent_dim=16" \
        in result.stderr
    assert config_of(tuned)["model"]["width"] == 8 and config_of(tuned)["model"]["latent_dim"] == 16
    assert_user_error(invoke("train", covers, "--init-from", source, "--set", "model.width=16", "--steps", "1",
                             "--out", tmp_path / "wider"), "its model.width is 8, this run's is 16")
    assert not (tmp_path / "wider").exists()  # a failed start leaves no folder behind


def test_a_resume_without_a_budget_continues_to_the_planned_one(covers, tmp_path):
    run = tmp_path / "run"
    train(covers, *SMALL, "--steps", "2", "--out", run)
    state = load_checkpoint(run)
    assert state["planned"] == {"steps": 2, "minutes": None, "cpu_minutes": None}
    assert_user_error(invoke("train", "--resume", run),
                      "has used the budget it was started with (2 steps); give --steps above 2")
    train("--resume", run, "--steps", "3")
    assert_user_error(invoke("train", "--resume", run), "is at step 3 and has used the budget it was started with")
    # a run started for 5 steps that stopped at 3 (interrupted): a plain resume goes on to 5
    state = {key: value for key, value in load_checkpoint(run).items() if key not in ("format", "version", "digest")}
    save_checkpoint(state | {"planned": {"steps": 5, "minutes": None, "cpu_minutes": None}}, run / "checkpoint.pt")
    train("--resume", run)
    assert load_checkpoint(run)["step"] == 5


# --- snapshots ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def snapshotted(tmp_path_factory, covers):
    """A run of 4 steps with a scored snapshot every step, the 2 newest kept, and no other evaluation."""
    saved = plugins._registry
    plugins._registry = load_plugins({"tiny": tiny_extractor})
    try:
        run = tmp_path_factory.mktemp("snapshots") / "run"
        train(covers, *SMALL, "--steps", "4", "--out", run, "--set", "schedule.snapshot_every=1",
              "--set", "schedule.keep_snapshots=2", "--set", "evaluation.every=1000", "--set", "evaluation.images=6",
              "--set", "evaluation.extractor=tiny")
    finally:
        plugins._registry = saved
    return run


def test_snapshots_are_scored_kept_to_the_limit_and_best_follows_the_score(snapshotted):
    run = snapshotted
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["step_0000003.pt", "step_0000004.pt"]
    fid = {row["step"]: row["eval/fid"] for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
           if "eval/fid" in row}
    assert sorted(fid) == [1, 2, 3, 4]  # every snapshot scored, though evaluation.every is 1000
    best = load_checkpoint(run / "best.pt")
    assert best["step"] == min(fid, key=fid.get) and best["scores"]["eval/fid"] == fid[best["step"]]
    snapshot = load_checkpoint(run / "snapshots" / "step_0000004.pt")
    assert "optimiser_g" not in snapshot and "rng_cpu" not in snapshot and "ema" in snapshot


def test_generate_and_bench_take_a_snapshot_or_best(snapshotted, tmp_path, tiny_registry):
    for source in (f"{snapshotted}@best", f"{snapshotted}@3"):
        assert invoke("generate", source, "-n", "4", "--out", tmp_path / "grid.png").exit_code == 0
    assert_user_error(invoke("generate", f"{snapshotted}@1", "--out", tmp_path / "grid.png"),
                      "has no snapshot of step 1; its snapshots: 3, 4")
    out = tmp_path / "bench.json"
    result = invoke("bench", f"{snapshotted}@4", "--ref", "synthcovers", "--extractor", "tiny", "-n", "4",
                    "--real", "4", "--set", "options.synthcovers.count=8", "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["protocol"]["source_step"] == 4


def test_bench_compare_ranks_bench_results_and_scores_snapshots_on_request(covers, tmp_path, tiny_registry):
    from ganzoo.apps.source_scoring import score_snapshots

    run = tmp_path / "run"
    train(covers, *SMALL, "--steps", "2", "--out", run, "--set", "schedule.snapshot_every=1")
    assert_user_error(invoke("bench", "compare", run), "pass --score to score its snapshots")
    bench = tmp_path / "bench.json"
    assert invoke("bench", f"{run}@1", "--ref", covers, "--extractor", "tiny", "-n", "6", "--real", "6",
                  "--out", bench).exit_code == 0
    steps, values, _ = score_snapshots(run, "fid", str(covers), 6, 6, 0, {"fid": {}}, torch.device("cpu"),
                                       extractor="tiny", progress=False)
    assert steps == [1, 2] and values[0] == json.loads(bench.read_text())["scores"]["fid"]
    result = invoke("bench", "compare", bench, run, "--score", "--ref", covers, "--extractor", "tiny", "-n", "6",
                    "--real", "6")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")
            and not line.startswith(("| rank", "| ---"))]
    assert len(rows) == 2 and all("dcgan+ns+diffaug" in row for row in rows)
    best = min(values)
    assert rows[0].split(" | ")[3] == f"{min(best, values[0]):.2f}"
    mixed = invoke("bench", "compare", bench, run, "--score", "--ref", covers, "--extractor", "tiny", "-n", "5",
                   "--real", "6")
    assert_user_error(mixed, "measured under different protocols (generated_images differ)")


def test_reference_statistics_round_trip(covers, tmp_path, tiny_registry):
    run = tmp_path / "run"
    train(covers, *SMALL, "--steps", "1", "--out", run)
    stats = tmp_path / "covers.npz"
    exported = invoke("bench", "stats", covers, "--size", "32", "--extractor", "tiny", "--out", stats)
    assert exported.exit_code == 0, exported.output
    direct, stored = tmp_path / "direct.json", tmp_path / "stored.json"
    common = ["--extractor", "tiny", "-n", "6", "--real", "6", "--metric", "fid", "--metric", "kid"]
    assert invoke("bench", run, "--ref", covers, *common, "--out", direct).exit_code == 0
    assert invoke("bench", run, "--ref", stats, *common, "--out", stored).exit_code == 0
    assert json.loads(direct.read_text())["scores"] == json.loads(stored.read_text())["scores"]
    assert_user_error(invoke("bench", covers, "--ref", stats, "--extractor", "tiny", "--size", "16", "-n", "6",
                             "--out", stored), "taken at 32 px")
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"PK\x03\x04 not really")
    assert_user_error(invoke("bench", run, "--ref", damaged, *common, "--out", stored),
                      "is not a ganzoo reference statistics file")


def test_the_resize_filter_is_an_option_recorded_in_the_protocol():
    from ganzoo_inception import InceptionOptions, InceptionV3, resized

    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    bilinear, bicubic = resized(images, "bilinear"), resized(images, "pil-bicubic")
    assert bilinear.shape == bicubic.shape == (2, 3, 299, 299) and not torch.allclose(bilinear, bicubic)
    assert torch.allclose(bicubic, resized(images, "bicubic"), atol=0.05)  # PIL's and torch's antialiased bicubic
    extractor = InceptionV3(InceptionOptions(resize="pil-bicubic"))
    assert "PIL bicubic" in extractor.protocol["resize"]
    assert_user_error(invoke("bench", "synthcovers", "--size", "32", "--resize-filter", "box", "-n", "2",
                             "--real", "2", "--out", "x.json"), "resize")


# --- generator tools ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory, covers):
    """A tiny run with a sample grid every step."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train(covers, *SMALL, "--steps", "3", "--set", "schedule.sample_every=1", "--out", run)
    return run


def cells(grid_path, count, side):
    """The covers of a grid written by generate (2 px padding)."""
    grid = np.asarray(Image.open(grid_path).convert("RGB"))
    columns = int(np.ceil(np.sqrt(count)))
    return [grid[2 + (i // columns) * (side + 2):][:side, 2 + (i % columns) * (side + 2):][:, :side]
            for i in range(count)]


def test_truncation_pulls_covers_toward_the_average(trained, tmp_path):
    assert invoke("generate", trained, "-n", "4", "--truncation", "0", "--out", tmp_path / "zero.png").exit_code == 0
    zero = cells(tmp_path / "zero.png", 4, 32)
    assert all(np.array_equal(zero[0], cover) for cover in zero[1:])  # psi 0: every latent is the average
    assert invoke("generate", trained, "-n", "4", "--out", tmp_path / "one.png").exit_code == 0
    one = cells(tmp_path / "one.png", 4, 32)
    assert not all(np.array_equal(one[0], cover) for cover in one[1:])


def test_interpolation_writes_a_gif_and_frames(trained, tmp_path):
    gif, frames = tmp_path / "walk.gif", tmp_path / "frames"
    result = invoke("generate", trained, "--interpolate", "3", "--frames", "4", "-n", "4", "--out", gif,
                    "--out-dir", frames)
    assert result.exit_code == 0, result.output
    with Image.open(gif) as animation:
        assert animation.n_frames == 12 and animation.size == (2 + 2 * 34, 2 + 2 * 34)
    pngs = sorted(frames.iterdir())
    assert len(pngs) == 12 and pngs[0].name == "frame_00000.png"
    first, fourth = np.asarray(Image.open(pngs[0])), np.asarray(Image.open(pngs[4]))
    assert not np.array_equal(first, fourth)  # the walk moves
    assert_user_error(invoke("generate", trained, "--interpolate", "2", "--out", tmp_path / "walk.png"),
                      "writes a GIF (--out NAME.gif) or frames (--out-dir)")


def test_timelapse_animates_the_sample_grids_in_step_order(trained, tmp_path):
    result = invoke("timelapse", trained, "--out", tmp_path / "run.gif")
    assert result.exit_code == 0, result.output
    assert "3 frames, steps 1 to 3" in result.stdout
    with Image.open(tmp_path / "run.gif") as animation:
        assert animation.n_frames == 3
        animation.seek(2)
        last = np.asarray(animation.convert("RGB"))
    assert np.abs(last.astype(int) - np.asarray(Image.open(trained / "samples.png").convert("RGB"))).mean() < 8
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(invoke("timelapse", empty), "a time-lapse needs at least 2")


def test_mirroring_doubles_the_data_with_flipped_copies():
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    sampler = BatchSampler(4, 4, seed=0)  # two images and their mirror images
    batches = ResidentBatches(images, lambda rows: None, sampler, RunContext(), torch.contiguous_format)
    sampler.next = lambda: torch.tensor([0, 1, 2, 3])
    real, _ = batches.real_batch()
    assert torch.equal(real[2], real[0].flip(-1)) and torch.equal(real[3], real[1].flip(-1))
    assert not torch.equal(real[0], real[1])


def test_train_with_mirror_and_preview_the_augmentations(covers, tmp_path):
    run = tmp_path / "run"
    train(covers, *SMALL, "--steps", "1", "--set", "data.mirror=true", "--out", run)
    assert config_of(run)["data"]["mirror"] is True
    out = tmp_path / "preview.png"
    result = invoke("data", "preview", covers, "-n", "3", "--variants", "2", "--out", out)
    assert result.exit_code == 0, result.output
    assert "3 images of" in result.stdout and "at 32 px, then 2 augmentations each by dcgan+ns+diffaug" in result.stdout
    assert Image.open(out).size == (2 + 3 * 34, 2 + 3 * 34)
    rows = cells(out, 9, 32)
    assert not np.array_equal(rows[0], rows[1])  # the augmented differs from the image
    assert_user_error(invoke("data", "preview", covers, "--recipe", "wgan", "--out", out), "has no augmentations")


def test_project_finds_a_closer_latent_and_writes_variations(trained, covers, tmp_path):
    out = tmp_path / "projection"
    result = invoke("project", trained, covers / "cover1.png", "--steps", "30", "--variations", "3", "--out-dir", out)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "projection.json").read_text())
    assert record["distance_end"]["total"] < record["distance_start"]["total"]
    assert len(record["latent"]) == 16
    assert Image.open(out / "variations.png").size == (2 + 3 * 34, 2 + 2 * 34)  # target, reconstruction, 3 more
    assert Image.open(out / "reconstruction.png").size == (32, 32)
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")
    assert_user_error(invoke("project", trained, not_image, "--out-dir", out), "cannot use")
