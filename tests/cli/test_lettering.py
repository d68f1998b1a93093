"""Finished covers: enlarged by an upscaler plugin to the size distributors ask for, lettered with a title and an
artist that read at a contrast of at least 4.5:1, written as PNG or JPEG one file at a time."""

import subprocess

import numpy as np
import pytest
from PIL import Image

from ganzoo.engine.training import run_training
from ganzoo.lettering import MIN_CONTRAST, contrast_ratio, find_font, font_for, letter
from ganzoo.lettering.layout import relative_luminance

from conftest import assert_user_error, invoke, tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lettering") / "run"
    run_training(tiny_config(schedule={"steps": 2}), folder, progress=False)
    return folder


def test_contrast_ratio_is_wcags():
    assert contrast_ratio(np.array([255, 255, 255]), np.array([0, 0, 0])) == pytest.approx(21.0)
    assert contrast_ratio(np.array([119, 119, 119]), np.array([255, 255, 255])) == pytest.approx(4.48, abs=0.01)
    assert relative_luminance(np.array([255, 0, 0])) == pytest.approx(0.2126)


def halves(top, bottom, side=600):
    pixels = np.zeros((side, side, 3), np.uint8)
    pixels[: side // 2], pixels[side // 2:] = top, bottom
    return pixels


def noise(side=600, seed=0):
    small = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return np.array(Image.fromarray(small).resize((side, side), Image.Resampling.NEAREST))


def text_pixels(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.any(before != np.asarray(after), axis=-1)


@pytest.mark.parametrize("cover", [halves((200, 40, 40), (20, 20, 120)), halves((250, 250, 240), (240, 240, 250)),
                                   noise()], ids=["two-fields", "pale", "busy"])
def test_every_placed_text_contrasts_at_least_4_5_with_what_lies_under_it(cover):
    lettered, placement = letter(Image.fromarray(cover), "Midnight Drive", "The Velvet Echo")
    left, top, right, bottom = placement.box
    (band, opacity), box = placement.band, (slice(top, bottom), slice(left, right))
    under = cover.astype(np.float64)
    under[box] = np.round(under[box] * (1 - opacity) + np.array(band) * opacity)  # the band, if any
    assert contrast_ratio(under[box].reshape(-1, 3), np.array(placement.colour)).min() >= MIN_CONTRAST
    assert placement.contrast >= MIN_CONTRAST
    lettered = np.asarray(lettered)
    inside = np.all(lettered[box] == under[box], axis=-1)
    assert 0.3 < inside.mean() < 0.95  # the box shows that background around the text's glyphs
    outside = np.ones(cover.shape[:2], bool)
    outside[box] = False
    assert np.array_equal(lettered[outside], cover[outside])


def test_a_busy_cover_gets_a_band_and_a_flat_one_none():
    assert letter(Image.fromarray(noise()), "Title")[1].band[1] > 0
    assert letter(Image.fromarray(halves((200, 40, 40), (20, 20, 120))), "Title")[1].band[1] == 0


def test_auto_puts_the_text_where_the_cover_is_flattest():
    cover = noise()
    cover[420:] = (30, 90, 60)  # a flat field at the bottom, noise above
    placement = letter(Image.fromarray(cover), "Low Tide")[1]
    assert placement.box[1] >= 420 and placement.band[1] == 0
    assert letter(Image.fromarray(cover), "Low Tide", layout="top")[1].box[3] < 300


def test_the_title_fills_the_width_it_may_and_no_more():
    placement = letter(Image.fromarray(halves((0, 0, 0), (0, 0, 0))), "Wide Title Here")[1]
    left, _, right, _ = placement.box
    assert 0.7 * 600 < right - left <= 0.9 * 600


def test_accented_titles_are_set_and_a_font_without_a_glyph_falls_back():
    assert font_for("Café Señorita Zoë", find_font("DejaVuSans-Bold")).name == "DejaVuSans-Bold"
    cmr = find_font("cmr10")  # Computer Modern, as matplotlib ships it: ASCII only
    assert font_for("Plain", cmr).name == "cmr10"
    assert font_for("Café", cmr).name != "cmr10"
    lettered, placement = letter(Image.fromarray(halves((10, 10, 10), (10, 10, 10))), "Café", font="cmr10")
    assert placement.font != "cmr10" and text_pixels(halves((10, 10, 10), (10, 10, 10)), np.asarray(lettered)).any()


def test_a_character_no_font_has_is_one_line_naming_it(run, tmp_path):
    result = invoke("generate", str(run), "--title", "Night \U000E0100", "--out", tmp_path / "c.png")
    assert_user_error(result, "U+E0100")
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("file_format, suffix", [("png", ".png"), ("jpeg", ".jpg")])
def test_generate_finishes_covers_at_the_size_asked_for(run, tmp_path, file_format, suffix):
    result = invoke("generate", str(run), "-n", "3", "--size", "700", "--title", "Zoë", "--artist", "Ünder",
                    "--format", file_format, "--out-dir", tmp_path / "covers")
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "covers").glob(f"*{suffix}"))
    assert len(files) == 3
    for path in files:
        with Image.open(path) as image:
            assert image.size == (700, 700) and image.mode == "RGB"
            assert image.format == {"png": "PNG", "jpeg": "JPEG"}[file_format]


def test_one_finished_cover_goes_to_out_and_says_its_contrast(run, tmp_path):
    result = invoke("generate", str(run), "--size", "3000", "--title", "Midnight Drive", "--out", tmp_path / "c.jpg")
    assert result.exit_code == 0, result.output
    assert "contrast at least" in result.stdout
    with Image.open(tmp_path / "c.jpg") as image:
        assert image.size == (3000, 3000) and image.format == "JPEG"
    assert (tmp_path / "c.jpg").stat().st_size < 10 * 2 ** 20


def test_an_unlettered_cover_is_the_upscalers_output(run, tmp_path):
    assert invoke("generate", str(run), "--out", tmp_path / "grid.png", "-n", "1").exit_code == 0
    assert invoke("generate", str(run), "--size", "96", "--upscaler", "nearest", "--out",
                  tmp_path / "big.png").exit_code == 0
    with Image.open(tmp_path / "grid.png") as small, Image.open(tmp_path / "big.png") as big:
        expected = small.convert("RGB").resize((96, 96), Image.Resampling.NEAREST)
        assert np.array_equal(np.asarray(big), np.asarray(expected))


@pytest.mark.parametrize("flags, fragments", [
    (["-n", "4", "--size", "512"], ["give --out-dir"]),
    (["--size", "512", "--out", "cover.gif"], [".png, .jpg, .jpeg or .svg"]),
    (["--title", "T", "--out", "cover.svg"], ["SVG covers are not lettered"]),
    (["--format", "svg", "--out", "cover.svg"], ["paints pixels", "such as shapes"]),
    (["--size", "512", "--out", "cover.png", "--format", "jpeg"], ["matching --format jpeg"]),
    (["--artist", "Someone"], ["give --title too"]),
    (["--title", "T", "--font", "NoSuchFont"], ["unknown font 'NoSuchFont'", "ganzoo fonts"]),
    (["--title", "T", "--font", "missing.ttf"], ["no such font file"]),
    (["--size", "512", "--sweep", "energy"], ["no --interpolate or --sweep"]),
    (["--size", "512", "--upscale", "2"], ["no --upscale"]),
    (["--title", "   "], ["the title is empty"]),
    (["--size", "16"], ["smaller than the model's 32 px covers"]),
])
def test_bad_finishing_flags_are_one_line_before_any_work(run, tmp_path, monkeypatch, flags, fragments):
    monkeypatch.chdir(tmp_path)
    assert_user_error(invoke("generate", str(run), *flags), *fragments)
    assert list(tmp_path.iterdir()) == []


def test_fonts_lists_the_default_and_filters_by_text():
    listed = invoke("fonts")
    assert listed.exit_code == 0 and "DejaVuSans-Bold (default)" in listed.stdout
    greek = invoke("fonts", "--has", "Ωμέγα").stdout.splitlines()
    assert greek and all("cmr10:" not in line for line in greek)
    assert_user_error(invoke("fonts", "--has", "\U000E0100"), "no installed font")


def test_a_lettered_title_on_a_busy_cover_reads_back_by_ocr(tmp_path):
    """tesseract (Debian's tesseract-ocr, installed by the README's test command) reads what was lettered."""
    lettered, placement = letter(Image.fromarray(noise(1000, seed=3)), "Paper Moon", "Silver Lake")
    lettered.save(tmp_path / "cover.png")
    read = subprocess.run(["tesseract", str(tmp_path / "cover.png"), "stdout", "--psm", "11"], capture_output=True,
                          text=True, check=True).stdout
    assert "paper moon" in " ".join(read.lower().split()) and placement.band[1] > 0


def test_a_cjk_title_falls_back_to_a_font_with_its_glyphs_and_reads_back_by_ocr(tmp_path):
    """DejaVu has no kanji or kana: the title is set in an installed CJK font (Debian's fonts-wqy-microhei, a
    TrueType collection, installed by the README's test command) and reads back with tesseract's Japanese."""
    lettered, placement = letter(Image.fromarray(noise(1000, seed=3)), "東京の雨", "ミナミ")
    assert not placement.font.startswith("DejaVu")
    lettered.save(tmp_path / "cover.png")
    read = subprocess.run(["tesseract", str(tmp_path / "cover.png"), "stdout", "-l", "jpn", "--psm", "11"],
                          capture_output=True, text=True, check=True).stdout
    assert "東京の雨" in "".join(read.split())


def test_letter_track_letters_the_title_and_artist_of_the_tracks_row(tmp_path):
    config = tiny_config(recipe="acgan+wgan", options={"wgan": {"n_critic": 1},
                         "audio-features": {"features": ["valence", "energy"]}},
                         model={"conditions": ["audio-features"]}, schedule={"steps": 2})
    run_training(config, tmp_path / "run", progress=False)
    track = "4uLU6hMCjMI75M1A2tKUQC"
    tracks = tmp_path / "tracks.csv"
    tracks.write_text(f"track_id,track_name,artists,valence,energy\n{track},Paper Moon,\"['Ann', 'Bo']\",0.9,0.2\n"
                      f"{'x' * 22},,Nobody,0.1,0.1\n")
    common = ["generate", tmp_path / "run", "--tracks", tracks, "--size", "400"]
    lettered = invoke(*common, "--track", track, "--letter-track", "--out", tmp_path / "lettered.png")
    assert lettered.exit_code == 0, lettered.output
    assert "lettered 'Paper Moon' by 'Ann, Bo'" in lettered.stdout and "contrast at least" in lettered.stdout
    plain = invoke(*common, "--track", track, "--out", tmp_path / "plain.png")
    assert plain.exit_code == 0, plain.output
    differs = np.asarray(Image.open(tmp_path / "lettered.png")) != np.asarray(Image.open(tmp_path / "plain.png"))
    assert differs.any()
    assert_user_error(invoke(*common, "--track", "x" * 22, "--letter-track"), "has no title", "give --title")
    assert_user_error(invoke("generate", tmp_path / "run", "--letter-track"), "give both")
