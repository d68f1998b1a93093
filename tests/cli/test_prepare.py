"""Cleaning of nasty image folders into a packed store."""

import io
import json
import random

import numpy as np
import pytest
from PIL import Image

from ganzoo.data.dedup import NearDuplicateIndex
from ganzoo.data.prepare import clean_image, prepare
from ganzoo.data.store import load_store
from ganzoo.api.errors import GanzooError

from conftest import STORE_FLAGS, run_ganzoo


def save(image, path, **kwargs):
    image.save(path, **kwargs)
    return path


@pytest.fixture
def nasty_folder(tmp_path):
    folder = tmp_path / "covers"
    folder.mkdir()
    red = Image.new("RGB", (80, 80), (200, 10, 10))
    save(red, folder / "rgb.jpg", quality=95)
    save(Image.new("L", (40, 40), 128), folder / "grey.png")
    save(Image.new("LA", (40, 40), (128, 255)), folder / "grey_alpha.png")
    save(Image.new("RGBA", (40, 40), (0, 0, 255, 0)), folder / "transparent.png")
    save(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), folder / "cmyk.jpg")
    save(red.convert("P", palette=Image.Palette.ADAPTIVE), folder / "palette.png")
    save(Image.fromarray(np.full((40, 40), 65535, dtype=np.uint16)), folder / "white16.png")
    wide = Image.new("RGB", (120, 60), (0, 0, 0))
    wide.paste((0, 255, 0), (30, 0, 90, 60))  # a green centre square flanked by black
    save(wide, folder / "wide.png")
    save(Image.new("RGB", (4, 4)), folder / "tiny.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not an image")
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[:400])
    (folder / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return folder


def test_nasty_folder_is_cleaned_and_counted(nasty_folder, tmp_path):
    store, report = prepare(nasty_folder, 32, out=tmp_path / "store", workers=1, progress=False,
                            max_hash_distance=None)
    assert report["files"] == 13 and report["kept"] == 8
    assert report["dropped"] == {"empty file": 1, "not an image": 2, "truncated or corrupt": 1, "too small": 1}
    assert report["fixed"]["mode L"] == 1 and report["fixed"]["mode CMYK"] == 1
    assert report["fixed"]["cropped to square"] == 1
    data = load_store(store)
    assert data.images.shape == (8, 32, 32, 3) and data.images.dtype == np.uint8
    by_file = dict(zip(data.metadata["file"], data.images))
    assert np.all(by_file["white16.png"] == 255)           # 16-bit white stays white, not clipped garbage
    assert np.all(by_file["transparent.png"] == 255)       # full transparency flattens onto white
    assert np.all(np.abs(by_file["grey.png"].astype(int) - 128) <= 1)
    cmyk = by_file["cmyk.jpg"].reshape(-1, 3).mean(axis=0)
    assert cmyk[0] > 200 and cmyk[1] < 60 and cmyk[2] < 60  # C0 M255 Y255 K0 is red
    wide = by_file["wide.png"].reshape(-1, 3).mean(axis=0)
    assert wide[1] > 250 and wide[0] < 5                   # the centre crop kept only the green square


def test_second_prepare_is_cached(nasty_folder, tmp_path):
    first, report = prepare(nasty_folder, 32, workers=1, progress=False, max_hash_distance=None)
    assert report["cached"] is False
    again, report = prepare(nasty_folder, 32, workers=1, progress=False, max_hash_distance=None)
    assert again == first and report["cached"] is True and report["kept"] == 8
    (nasty_folder / "extra.png").write_bytes((nasty_folder / "grey.png").read_bytes())
    changed, report = prepare(nasty_folder, 32, workers=1, progress=False, max_hash_distance=None)
    assert changed != first and report["kept"] == 9
    deduplicated, report = prepare(nasty_folder, 32, workers=1, progress=False)
    assert deduplicated != changed and report["dropped"]["exact duplicate"] >= 1


def test_metadata_join(nasty_folder, tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("file,genre,popularity\nrgb.jpg,rock,40\ngrey.png,jazz,12\nempty.jpg,pop,3\n"
                        "missing.png,folk,1\n")
    store, report = prepare(nasty_folder, 32, metadata_csv=csv_path, out=tmp_path / "store", workers=1,
                            progress=False)
    assert report["kept"] == 2 and report["files_without_metadata_row"] == 10
    assert report["dropped"]["empty file"] == 1 and report["metadata_rows_without_image"] == 1
    data = load_store(store)
    assert list(data.metadata["genre"]) == ["jazz", "rock"]
    assert data.metadata["popularity"].tolist() == [12.0, 40.0]


def test_duplicates_are_dropped_exact_and_near(tmp_path):
    folder = tmp_path / "dups"
    folder.mkdir()
    rng = np.random.default_rng(3)
    layout = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((96, 96))
    save(layout, folder / "a_original.png")
    save(layout, folder / "b_same_pixels.png")
    save(layout, folder / "c_reencoded.jpg", quality=60)
    save(Image.fromarray(np.asarray(layout)[..., ::-1]), folder / "d_colours_swapped.png")
    save(Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((96, 96)), folder / "e_other.png")
    save(Image.new("RGB", (64, 64), (220, 20, 20)), folder / "f_red.png")
    save(Image.new("RGB", (64, 64), (20, 20, 220)), folder / "g_blue.png")
    save(Image.new("RGB", (64, 64), (222, 22, 18)), folder / "h_red_again.png")
    store, report = prepare(folder, 32, out=tmp_path / "store", workers=1, progress=False)
    assert report["dropped"] == {"exact duplicate": 1, "near duplicate": 2}
    assert list(load_store(store).metadata["file"]) == ["a_original.png", "d_colours_swapped.png", "e_other.png",
                                                        "f_red.png", "g_blue.png"]
    _, kept_all = prepare(folder, 32, out=tmp_path / "all", workers=1, progress=False, max_hash_distance=None)
    assert kept_all["kept"] == 8 and kept_all["dropped"] == {}


def test_near_duplicate_index_matches_brute_force():
    rng = random.Random(0)
    for distance in (0, 2, 4, 6, 8):
        index, kept = NearDuplicateIndex(distance), []
        values = [rng.getrandbits(64) for _ in range(200)]
        for value in values[:100]:
            for bit in rng.sample(range(64), rng.randint(0, distance + 2)):
                value ^= 1 << bit
            values.append(value)
        for value in values:
            expected = all((value ^ other).bit_count() > distance for other in kept)
            assert index.add_unless_near(value) == expected
            if expected:
                kept.append(value)
        assert 100 < len(kept) < 300


def test_parallel_matches_serial(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(300):
        Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    serial, _ = prepare(folder, 32, out=tmp_path / "serial", workers=1, progress=False)
    parallel, _ = prepare(folder, 32, out=tmp_path / "parallel", workers=2, progress=False)
    assert np.array_equal(load_store(serial).images, load_store(parallel).images)


def test_nothing_usable_is_an_error(tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.jpg").write_text("nope")
    with pytest.raises(GanzooError, match="no usable images"):
        prepare(folder, 32, progress=False)


def test_clean_image_resizes_with_antialiasing(tmp_path):
    stripes = np.zeros((128, 128, 3), dtype=np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes average to mid grey, not aliased black or white
    path = save(Image.fromarray(stripes), tmp_path / "stripes.png")
    array, fixes = clean_image(str(path), 32)
    assert fixes == ["resized"]
    assert abs(array.mean() - 127.5) < 3 and array.std() < 5


def test_cli_prepare_inspect_and_train_on_folder(nasty_folder, tmp_path):
    result = run_ganzoo("data", "prepare", nasty_folder, "--size", "32", "--out", tmp_path / "store",
                        "--keep-duplicates")
    assert result.returncode == 0, result.stderr
    assert "kept 8 of 13 files" in result.stdout and "1 truncated or corrupt" in result.stdout
    inspect = run_ganzoo("data", "inspect", tmp_path / "store")
    assert inspect.returncode == 0 and "8 images of 32 px" in inspect.stdout
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert manifest["count"] == 8
    bad = run_ganzoo("data", "inspect", nasty_folder)
    assert bad.returncode == 2 and "not a readable ganzoo store" in bad.stderr
    trained = run_ganzoo("train", "wgan", *STORE_FLAGS, "--set", f"data.name={tmp_path / 'store'}",
                         "--set", "schedule.batch_size=4", "--steps", "2", "--out", tmp_path / "run", "--quiet")
    assert trained.returncode == 0, trained.stderr
    from_folder = run_ganzoo("train", "wgan", *STORE_FLAGS, "--set", f"data.name={nasty_folder}",
                             "--set", "schedule.batch_size=4", "--steps", "1", "--out", tmp_path / "run2", "--quiet")
    assert from_folder.returncode == 0, from_folder.stderr
    wrong_size = run_ganzoo("train", "wgan", "--set", f"data.name={tmp_path / 'store'}", "--set", "schedule.batch_size=4",
                            "--set", "data.image_size=64", "--out", tmp_path / "run3")
    assert wrong_size.returncode == 2 and "holds 32 px images but data.image_size is 64" in wrong_size.stderr


def test_split_holds_out_a_seeded_share_disjoint_and_complete(tmp_path):
    folder = tmp_path / "covers"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    store, _ = prepare(folder, 16, out=tmp_path / "store", workers=1, progress=False, max_hash_distance=None)
    result = run_ganzoo("data", "split", store, "--held-out", "0.25", "--seed", "3", "--out", tmp_path / "split")
    assert result.returncode == 0, result.stderr
    train_part, held = load_store(tmp_path / "split" / "train"), load_store(tmp_path / "split" / "held-out")
    assert (len(train_part.images), len(held.images)) == (30, 10)
    whole = load_store(store)
    by_file = dict(zip(whole.metadata["file"], whole.images))
    files = list(train_part.metadata["file"]) + list(held.metadata["file"])
    assert sorted(files) == sorted(by_file)  # disjoint and complete
    for part in (train_part, held):
        assert all(np.array_equal(image, by_file[name]) for name, image in zip(part.metadata["file"], part.images))
    assert train_part.fingerprint != held.fingerprint != whole.fingerprint
    again = run_ganzoo("data", "split", store, "--held-out", "0.25", "--seed", "3", "--out", tmp_path / "again")
    assert again.returncode == 0
    assert list(load_store(tmp_path / "again" / "held-out").metadata["file"]) == list(held.metadata["file"])
    other = run_ganzoo("data", "split", store, "--held-out", "0.25", "--seed", "4", "--out", tmp_path / "other")
    assert other.returncode == 0
    assert list(load_store(tmp_path / "other" / "held-out").metadata["file"]) != list(held.metadata["file"])
    exists = run_ganzoo("data", "split", store, "--out", tmp_path / "split")
    assert exists.returncode == 2 and "already exists" in exists.stderr
    tiny = run_ganzoo("data", "split", store, "--held-out", "0.001", "--out", tmp_path / "tiny")
    assert tiny.returncode == 2 and "leaves an empty side" in tiny.stderr and not (tmp_path / "tiny").exists()
