"""The cover studio: its HTTP API on 127.0.0.1, and the page end to end in headless Chromium."""

import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from PIL import Image
from werkzeug.serving import make_server

from conftest import REPO, interruptible, run_ganzoo, tiny_config
from ganzoo.engine.sampling import load_sampler
from ganzoo.registry.loading import get_registry
from ganzoo.apps.studio import Studio, create_app
from ganzoo.apps.tracks import read_tracks
from ganzoo.engine.training import run_training

TRACK = "4uLU6hMCjMI75M1A2tKUQC"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio")
    conditional = tiny_config(recipe="acgan+wgan", options={"wgan": {"n_critic": 1},
                                       "audio-features": {"features": ["valence", "energy", "tempo"]}}, model={"conditions": ["audio-features"]}, schedule={"steps": 2})
    run_training(conditional, root / "conditional", progress=False)
    run_training(tiny_config(schedule={"steps": 1}), root / "unconditional", progress=False)
    tracks = root / "tracks.csv"
    tracks.write_text(f"track_uri,track_name,valence,energy,tempo\nspotify:track:{TRACK},Song,0.9,0.2,96.5\n")
    return root, tracks


def serve(checkpoint, tracks=None):
    app = create_app(Studio(load_sampler(checkpoint, "cpu"), read_tracks(tracks, get_registry())))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


@pytest.fixture(scope="module")
def studio(checkpoints):
    root, tracks = checkpoints
    server, url = serve(root / "conditional" / "checkpoint.pt", tracks)
    yield url
    server.shutdown()


def get(url, data=None):
    """(status, headers, body) of a GET, or of a JSON POST when ``data`` is given."""
    request = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def covers(url, **args):
    status, _, body = get(f"{url}/api/covers?" + "&".join(f"{k}={v}" for k, v in args.items()))
    assert status == 200, body
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))))
            for u in json.loads(body)["covers"]]


def test_info_lists_one_control_per_feature_with_units(studio):
    status, _, body = get(f"{studio}/api/info")
    info = json.loads(body)
    assert status == 200 and info["conditional"] and info["image_size"] == 32
    controls = {c["name"]: c for c in info["controls"]}
    assert set(controls) == {"valence", "energy", "tempo"}
    assert controls["tempo"]["unit"] == "BPM" and controls["valence"]["unit"] == ""
    for control in controls.values():
        assert control["min"] < control["value"] < control["max"]


def test_covers_follow_fixed_noise_and_the_sliders(studio):
    first = covers(studio, seed=3, valence=0.2, energy=0.5, tempo=120)
    again = covers(studio, seed=3, valence=0.2, energy=0.5, tempo=120)
    moved = covers(studio, seed=3, valence=0.9, energy=0.5, tempo=120)
    other_seed = covers(studio, seed=4, valence=0.2, energy=0.5, tempo=120)
    assert len(first) == 9 and first[0].shape == (32, 32, 3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], moved[0]) and not np.array_equal(first[0], other_seed[0])


def test_download_is_the_grid_cover_upscaled_with_the_named_filter(studio):
    grid = covers(studio, seed=5, n=4, valence=0.7)
    status, headers, body = get(f"{studio}/api/cover.png?seed=5&n=4&valence=0.7&index=2&scale=8&filter=lanczos")
    assert status == 200 and "attachment" in headers["Content-Disposition"] and "lanczos" in headers[
        "Content-Disposition"]
    expected = Image.fromarray(grid[2]).resize((256, 256), Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(body))), np.asarray(expected))


def test_a_finished_download_is_the_cover_upscaled_and_lettered(studio):
    grid = covers(studio, seed=5, n=4, valence=0.7)
    status, headers, body = get(f"{studio}/api/cover.jpg?seed=5&n=4&valence=0.7&index=1&size=640")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and "640px" in headers["Content-Disposition"]
    plain = np.asarray(Image.open(io.BytesIO(body)), dtype=np.float64)
    expected = np.asarray(Image.fromarray(grid[1]).resize((640, 640), Image.Resampling.LANCZOS), dtype=np.float64)
    assert np.abs(plain - expected).mean() < 3  # JPEG's loss only
    status, _, body = get(f"{studio}/api/cover.jpg?seed=5&n=4&valence=0.7&index=1&size=640&title=Paper%20Moon"
                          "&artist=Zo%C3%AB&layout=top")
    lettered = np.asarray(Image.open(io.BytesIO(body)), dtype=np.float64)
    assert status == 200 and np.abs(lettered - plain)[:320].mean() > 3 * np.abs(lettered - plain)[320:].mean()


@pytest.mark.parametrize("query, message", [
    ("size=5000", "size must be from 8 to 4096"), ("layout=left", "layout must be one of"),
    ("artist=Someone", "give a title too"), ("title=%F0%9F%98%80%F3%A0%84%80", "U+E0100"),
])
def test_bad_finished_downloads_get_a_400_with_a_message(studio, query, message):
    status, _, body = get(f"{studio}/api/cover.jpg?{query}")
    assert status == 400 and message in json.loads(body)["error"], body


@pytest.mark.parametrize("query, message", [
    ("valence=7", "valence must be a number from 0 to 1"),
    ("danceability=0.5", "unknown feature 'danceability'"),
    ("n=1000", "n must be from 1 to 16"),
    ("seed=-1", "seed must be from 0"),
    ("seed=abc", "seed must be a whole number"),
])
def test_bad_requests_get_a_400_with_a_message(studio, query, message):
    status, _, body = get(f"{studio}/api/covers?{query}")
    assert status == 400 and message in json.loads(body)["error"]


def test_bad_downloads_and_paths_are_refused_and_the_server_lives(studio):
    for query, message in (("scale=100", "scale must be from 1 to 16"), ("filter=box", "filter must be one of"),
                           ("n=4&index=7", "outside the grid of 4")):
        status, _, body = get(f"{studio}/api/cover.png?{query}")
        assert status == 400 and message in json.loads(body)["error"]
    status, _, body = get(f"{studio}/no/such/page")
    assert status == 404 and "error" in json.loads(body)
    assert get(f"{studio}/api/info")[0] == 200


def test_tracks_by_id_and_by_pasted_row(studio):
    status, _, body = get(f"{studio}/api/track", {"text": f"spotify:track:{TRACK}"})
    assert status == 200 and json.loads(body)["features"] == {"valence": 0.9, "energy": 0.2, "tempo": 96.5}
    assert json.loads(body)["title"] == "Song" and json.loads(body)["artist"] is None
    status, _, body = get(f"{studio}/api/track", {"text": f"https://open.spotify.com/track/{TRACK}?si=x"})
    assert status == 200 and json.loads(body)["features"]["tempo"] == 96.5
    row = f"spotify:track:{'y' * 22},Other,0.1,0.8,150"
    status, _, body = get(f"{studio}/api/track", {"text": row})  # the features file's header applies
    assert status == 200 and json.loads(body)["features"] == {"valence": 0.1, "energy": 0.8, "tempo": 150.0}
    status, _, body = get(f"{studio}/api/track", {"text": "valence,tempo\n0.5,400"})
    assert status == 400 and "tempo must be a number from 0 to 300 BPM" in json.loads(body)["error"]
    status, _, body = get(f"{studio}/api/track", {"text": "0" * 22})
    assert status == 400 and "not in the features file" in json.loads(body)["error"]
    for not_an_object in ([1, 2], "abc", 5, None):
        status, _, body = get(f"{studio}/api/track", not_an_object if not_an_object is not None else {})
        assert status == 400 and "error" in json.loads(body)
    for raw in (b"[1,2]", b'"abc"', b"5", b"{broken"):
        request = urllib.request.Request(f"{studio}/api/track", data=raw, headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=60)
        assert refused.value.code == 400 and "JSON object" in json.loads(refused.value.read())["error"]


def click_track(path, bpm=132.0, seconds=8, rate=22050):
    """A WAV click track (a 10 ms 1 kHz blip a beat) at ``path``."""
    import soundfile

    y = np.zeros(int(seconds * rate), np.float32)
    blip = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(int(0.01 * rate)) / rate)
    for beat in np.arange(0, seconds - 0.02, 60 / bpm):
        y[int(round(beat * rate)):int(round(beat * rate)) + len(blip)] += blip
    soundfile.write(path, y, rate)
    return path


def upload(url, body: bytes, name="song.wav"):
    request = urllib.request.Request(f"{url}/api/song?name={urllib.parse.quote(name)}", data=body,
                                     headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_an_uploaded_song_sets_the_sliders_its_audio_measures(studio, tmp_path):
    import tempfile

    before = set(os.listdir(tempfile.gettempdir()))
    status, body = upload(studio, click_track(tmp_path / "x.wav").read_bytes(), "My Song.wav")
    assert status == 200, body
    info = json.loads(get(f"{studio}/api/info")[2])
    medians = {control["name"]: control["value"] for control in info["controls"]}
    assert body["features"]["tempo"] == pytest.approx(132.0, rel=0.02)
    assert body["features"]["valence"] == pytest.approx(medians["valence"], abs=1e-3)
    assert body["said"].startswith("My Song.wav: tempo 13") and "training median" in body["said"]
    assert not {name for name in set(os.listdir(tempfile.gettempdir())) - before if name.startswith("ganzoo-song-")}


def test_bad_uploads_are_refused_with_a_message_and_named_as_sent(studio, tmp_path):
    status, body = upload(studio, b"RIFF\x00\x00junk" * 10, "../../evil.wav")
    assert status == 400 and body["error"].startswith("evil.wav: not audio") and "ganzoo-song-" not in body["error"]
    status, body = upload(studio, np.zeros(100, np.int16).tobytes(), "silence.raw")
    assert status == 400 and "silence.raw" in body["error"]
    assert get(f"{studio}/api/info")[0] == 200


def test_an_oversized_or_unsized_upload_is_refused_before_it_is_read(studio):
    import http.client

    from ganzoo.runtime.limits import MAX_SONG_BYTES

    host, port = studio.removeprefix("http://").split(":")
    for headers in ({"Content-Length": str(MAX_SONG_BYTES + 1)}, {"Transfer-Encoding": "chunked"}):
        connection = http.client.HTTPConnection(host, int(port), timeout=20)
        connection.putrequest("POST", "/api/song?name=big.wav")
        for key, value in headers.items():
            connection.putheader(key, value)
        connection.endheaders()  # no body is sent: a server that waited for it would time out
        response = connection.getresponse()
        assert response.status == 413 and "at most 256 MB" in json.loads(response.read())["error"]
        connection.close()


def test_unconditional_checkpoint_has_no_controls(checkpoints):
    root, _ = checkpoints
    server, url = serve(root / "unconditional" / "checkpoint.pt")
    try:
        info = json.loads(get(f"{url}/api/info")[2])
        assert info["conditional"] is False and info["controls"] == []
        assert len(covers(url, seed=1)) == 9
        status, _, body = get(f"{url}/api/covers?valence=0.5")
        assert status == 400 and "unconditional" in json.loads(body)["error"]
        status, body = upload(url, b"anything")
        assert status == 400 and "unconditional" in body["error"]
    finally:
        server.shutdown()


def test_page_in_headless_chromium_moves_a_slider_and_downloads(studio, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,760"):
        options.add_argument(argument)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(studio)
        wait = WebDriverWait(driver, 60)
        generation = lambda: int(driver.find_element(By.ID, "grid").get_attribute("data-generation") or 0)
        wait.until(lambda d: generation() >= 1)
        before = [image.get_attribute("src") for image in driver.find_elements(By.CSS_SELECTOR, "img.cover")]
        assert len(before) == 9
        driver.find_element(By.ID, "control-valence").send_keys(Keys.END)  # the slider to its maximum
        wait.until(lambda d: generation() >= 2)
        after = [image.get_attribute("src") for image in driver.find_elements(By.CSS_SELECTOR, "img.cover")]
        assert after != before
        artifacts = REPO / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        driver.save_screenshot(str(artifacts / "studio.png"))
        driver.find_elements(By.CSS_SELECTOR, "a.download")[0].click()
        deadline = time.monotonic() + 30
        while not [p for p in downloads.glob("*.png")] and time.monotonic() < deadline:
            time.sleep(0.1)
        saved = list(downloads.glob("*.png"))
        assert saved and Image.open(saved[0]).size == (256, 256)
        assert "lanczos" in saved[0].name
        driver.find_element(By.ID, "title").send_keys("Paper Moon")
        driver.find_elements(By.CSS_SELECTOR, "a.finished")[0].click()
        deadline = time.monotonic() + 60
        while not [p for p in downloads.glob("*.jpg")] and time.monotonic() < deadline:
            time.sleep(0.1)
        finished = list(downloads.glob("*.jpg"))
        assert finished and Image.open(finished[0]).size == (3000, 3000) and "3000px" in finished[0].name
        shown = generation()
        driver.find_element(By.ID, "song").send_keys(str(click_track(tmp_path / "Upload Me.wav")))
        wait.until(lambda d: generation() > shown)
        assert float(driver.find_element(By.ID, "control-tempo").get_attribute("value")) == pytest.approx(132, rel=0.02)
        assert "Upload Me.wav: tempo" in driver.find_element(By.ID, "status").text
    finally:
        driver.quit()


def test_cli_serves_on_loopback_and_refuses_a_busy_port(checkpoints):
    root, _ = checkpoints
    checkpoint = root / "unconditional"  # a run folder, as generate and bench take
    process = subprocess.Popen([sys.executable, "-m", "ganzoo", "studio", str(checkpoint), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=interruptible)
    try:
        line = process.stdout.readline()
        assert line.startswith("ganzoo studio: http://127.0.0.1:"), line + process.stderr.read()
        port = int(line.split(":")[3].split("/")[0])
        assert json.loads(get(f"http://127.0.0.1:{port}/api/info")[2])["conditional"] is False
        busy = run_ganzoo("studio", checkpoint, "--port", port)
        assert busy.returncode == 2 and "choose another --port" in busy.stderr and "Traceback" not in busy.stderr
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert process.returncode == 0


def test_a_vector_model_draws_its_downloads_and_gives_svg(checkpoints, tmp_path):
    run_training(tiny_config(recipe="shapes+hinge", schedule={"steps": 1}), tmp_path / "shapes", progress=False)
    server, url = serve(tmp_path / "shapes" / "checkpoint.pt")
    try:
        assert json.loads(get(f"{url}/api/info")[2])["vector"] is True
        status, headers, body = get(f"{url}/api/cover.svg?seed=3&index=2&size=640")
        assert status == 200 and headers["Content-Type"].startswith("image/svg+xml")
        assert body.startswith(b"<svg") and b'width="640"' in body
        status, _, body = get(f"{url}/api/cover.jpg?seed=3&index=2&size=256")
        drawn = np.asarray(Image.open(io.BytesIO(body))).astype(float)
        grid = covers(url, seed=3)[2].astype(float)
        assert status == 200 and drawn.shape == (256, 256, 3)
        assert np.abs(drawn.reshape(32, 8, 32, 8, 3).mean(axis=(1, 3)) - grid).mean() < 8  # drawn, the same cover
    finally:
        server.shutdown()
    root, _ = checkpoints
    server, url = serve(root / "unconditional" / "checkpoint.pt")
    try:
        status, _, body = get(f"{url}/api/cover.svg")
        assert status == 400 and "paints pixels" in json.loads(body)["error"]
    finally:
        server.shutdown()
