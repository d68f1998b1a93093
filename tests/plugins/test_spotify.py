"""The Spotify collector against a fake Web API over real HTTP on 127.0.0.1 (no test touches the internet)."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganzoo.data.store import load_store
from ganzoo_spotify.catalog import Catalog
from ganzoo_spotify.tables import attach_features
from ganzoo_spotify.web import RateLimited, RetryPolicy, Transient, spotify_id as parse_id

from conftest import STORE_FLAGS, interruptible, run_ganzoo
from fake_spotify import CLIENT_ID, CLIENT_SECRET, Catalogue, FakeSpotify, Faults, spotify_id

FAULTS = Faults(rate_limit_every=7, server_error_every=7, slow_every=11, slow_s=1.5, truncate_every=5,
                garbage_every=5, broken_albums=frozenset({3}))
VOLATILE_COLUMNS = {"covers": ("attempts",)}
LOCAL_URL = re.compile(r"http://127\.0\.0\.1:\d+")


def credentials(server: FakeSpotify, secret: str = CLIENT_SECRET) -> dict:
    return {"SPOTIPY_CLIENT_ID": CLIENT_ID, "SPOTIPY_CLIENT_SECRET": secret,
            "GANZOO_SPOTIFY_API_URL": server.api_url, "GANZOO_SPOTIFY_TOKEN_URL": server.token_url}


def query_args(server: FakeSpotify) -> list[str]:
    return ["--playlist", server.playlist_id(0), "--playlist", f"spotify:playlist:{server.playlist_id(1)}",
            "--search", "genre:jazz", "--artist", f"https://open.spotify.com/artist/{spotify_id('artist', 2)}"]


def collect(server, out, *extra, env=None):
    return run_ganzoo("data", "spotify", "collect", *query_args(server), "--out", out, "--timeout", "1",
                      "--quiet", *extra, env={**credentials(server), **(env or {})})


def dump(folder: Path) -> dict:
    """Every table's rows, sorted, without bookkeeping columns or the server's port; plus the cover files."""
    db = sqlite3.connect(folder / "collection.sqlite")
    tables = {}
    for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")
                   if row[1] not in VOLATILE_COLUMNS.get(table, ())]
        rows = [tuple(LOCAL_URL.sub("http://fake", v) if isinstance(v, str) else v for v in row)
                for row in db.execute(f"SELECT {', '.join(columns)} FROM {table}")]
        tables[table] = sorted(rows, key=repr)
    db.close()
    tables["files"] = sorted((p.name, p.read_bytes()) for p in (folder / "covers").iterdir())
    return tables


def expected_tracks(catalogue: Catalogue) -> set[str]:
    indices = {t for p in (0, 1) for t in catalogue.playlist_tracks(p) if t is not None}
    indices |= set(catalogue.search_tracks("genre:jazz"))
    for album in range(2, catalogue.albums, catalogue.artists):
        indices |= set(range(album * catalogue.tracks_per_album, (album + 1) * catalogue.tracks_per_album))
    return {spotify_id("track", t) for t in indices}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted collection from a server without faults."""
    server = FakeSpotify().start()
    out = tmp_path_factory.mktemp("reference") / "collection"
    result = collect(server, out)
    server.stop()
    assert result.returncode == 0, result.stderr
    return out, server


def test_collection_under_faults_is_complete_exact_and_keeps_secrets(reference, tmp_path):
    reference_dir, _ = reference
    server = FakeSpotify(faults=FAULTS).start()
    out = tmp_path / "collection"
    result = collect(server, out)
    server.stop()
    assert result.returncode == 0, result.stderr

    faulty, clean = dump(out), dump(reference_dir)
    catalogue = server.catalogue
    tracks = {row[0] for row in faulty["tracks"]}
    assert tracks == expected_tracks(catalogue)
    assert all(row[3] is not None for row in faulty["tracks"])  # popularity, also for album-walk tracks
    assert len(faulty["features"]) == len(tracks)
    covers = {row[0]: row for row in faulty["covers"]}
    assert covers[spotify_id("album", 3)][3] == "failed"  # the album whose image is always an HTML page
    assert all(row[3] == "done" for album, row in covers.items() if album != spotify_id("album", 3))
    for table in ("tracks", "albums", "artists", "track_artists", "track_sources", "features", "queries"):
        assert faulty[table] == clean[table], table
    clean_covers = {row[0]: row for row in clean["covers"]}
    for album, row in covers.items():
        if album != spotify_id("album", 3):
            assert row == clean_covers[album]
    assert [f for f in faulty["files"] if not f[0].startswith(spotify_id("album", 3))] == \
        [f for f in clean["files"] if not f[0].startswith(spotify_id("album", 3))]

    throttled = [url for _, url, status in server.log if status == 429]
    assert throttled, "the fault plan must throttle some request"
    for url in throttled:
        times = [t for t, u, _ in server.log if u == url]
        assert len(times) >= 2 and times[1] - times[0] >= FAULTS.retry_after_s * 0.95  # honoured Retry-After
    assert server.requests_to("/v1/audio-features") and all(
        len(u.split("ids=")[1].split("%2C")) <= 100 for _, u, _ in server.requests_to("/v1/audio-features"))
    assert "retried" in result.stdout and "1 failed" in result.stdout

    for text in (result.stdout, result.stderr, *[p.read_bytes().decode("latin-1") for p in out.rglob("*")
                                                 if p.is_file()]):
        assert CLIENT_SECRET not in text and "fake-token" not in text


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the collector")


def count(folder: Path, sql: str) -> int:
    try:
        db = sqlite3.connect(f"file:{folder / 'collection.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute(sql).fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_kill_9_or_ctrl_c_then_restart_gives_the_uninterrupted_database(reference, tmp_path):
    reference_dir, reference_server = reference
    server = FakeSpotify(faults=Faults(delay_s=0.05)).start()
    concurrency = 2
    out = tmp_path / "collection"
    args = [sys.executable, "-m", "ganzoo", "data", "spotify", "collect", *query_args(server), "--out", str(out),
            "--quiet", "--concurrency", str(concurrency)]
    env = {**os.environ, **credentials(server)}
    kill_points = [(signal.SIGKILL, "SELECT COUNT(*) >= 30 FROM tracks"),                  # walking queries
                   (signal.SIGINT, "SELECT COUNT(*) >= 4 FROM covers WHERE status = 'done'"),  # downloading
                   (signal.SIGKILL, "SELECT COUNT(*) >= 12 FROM covers WHERE status = 'done'")]
    for how, point in kill_points:
        process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   preexec_fn=interruptible)
        try:
            wait_for(lambda: count(out, point) or process.poll() is not None)
        finally:
            process.send_signal(how)
            _, stderr = process.communicate(timeout=60)
        if how == signal.SIGINT:
            assert process.returncode == 130 and "run the same command again to continue" in stderr, stderr
            assert "Traceback" not in stderr
        else:
            assert process.returncode == -signal.SIGKILL, "the collector finished before it could be killed"
    unfinished = count(out, "SELECT COUNT(*) FROM covers WHERE status != 'done'")
    assert unfinished > 0
    finished = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    server.stop()
    assert finished.returncode == 0, finished.stderr
    assert dump(out) == dump(reference_dir)
    assert not list((out / "covers").glob("*.part"))

    # a restart repeats at most the unit in flight when killed: one API call, `concurrency` cover downloads
    reference_log = reference_server.log
    assert len(api_successes(server.log)) <= len(api_successes(reference_log)) + len(kill_points)
    reference_covers = [1 for _, url, status in reference_log if url.startswith("/image/") and status == 200]
    assert len(server.requests_to("/image/", 200)) <= len(reference_covers) + concurrency * len(kill_points)


def api_successes(log) -> list[str]:
    return [url for _, url, status in log if url.startswith("/v1/") and status == 200]


def test_audio_features_403_is_said_once_and_files_attach_by_both_id_styles(tmp_path):
    server = FakeSpotify(faults=Faults(forbid_audio_features=True)).start()
    out = tmp_path / "collection"
    result = collect(server, out)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("403") == 1 and "attach-features" in result.stderr
    assert len(server.requests_to("/v1/audio-features")) == 1
    assert "audio features for 0 tracks" in result.stdout and "0 failed" in result.stdout
    covered = {row[0] for row in sqlite3.connect(out / "collection.sqlite").execute("SELECT album_id FROM covers")}
    seen = len(server.log)
    again = collect(server, out, "--playlist", server.playlist_id(2))  # overlaps playlist 1 and the search
    server.stop()
    assert again.returncode == 0 and again.stderr.count("403") == 1
    second_run = [url for _, url, _ in server.log[seen:]]
    assert [url for url in second_run if url.startswith("/v1/playlists")] == [
        f"/v1/playlists/{server.playlist_id(2)}/items?limit=50&offset=0&additional_types=track"]
    assert len([url for url in second_run if url.startswith("/v1/audio-features")]) == 1
    downloaded_again = {url.split("/")[2] for url in second_run if url.startswith("/image/")}
    assert downloaded_again and not downloaded_again & covered  # only the new playlist's new albums

    tracks = sorted(row[0] for row in sqlite3.connect(out / "collection.sqlite").execute("SELECT id FROM tracks"))
    table = tmp_path / "features.csv"
    lines = ["track_id,valence,energy,danceability"]
    for i, track in enumerate(tracks):
        reference = f"spotify:track:{track}" if i % 2 else track
        lines.append(f"{reference},{(i % 10) / 10},0.5,0.25")
    lines += ["spotify:track:0000000000000000000000,0.1,0.1,0.1", "not-an-id,0.2,0.2,0.2", f"{tracks[0]},7,0.5,0.25"]
    table.write_text("\n".join(lines) + "\n")
    attached = run_ganzoo("data", "spotify", "attach-features", table, "--collection", out)
    assert attached.returncode == 0, attached.stderr
    assert f"{len(tracks)} of {len(tracks)} tracks matched" in attached.stdout
    assert "1 rows not in the collection, 1 without a track id, 1 values out of range" in attached.stdout
    db = sqlite3.connect(out / "collection.sqlite")
    stored = dict(db.execute("SELECT track_id, valence FROM features"))
    assert stored[tracks[0]] == 0.0 and stored[tracks[1]] == 0.1  # the out-of-range 7 did not overwrite
    metadata = (out / "metadata.csv").read_text().splitlines()
    assert metadata[0].split(",")[6:9] == ["danceability", "energy", "valence"]
    assert all(line.split(",")[6] == "0.25" for line in metadata[1:])


def test_attach_features_joins_ids_and_uris_directly(tmp_path):
    catalog = Catalog(tmp_path / "collection")
    ids = [spotify_id("track", t) for t in range(4)]
    with catalog.transaction() as tx:
        for track_id in ids:
            catalog.record_track(tx, {"id": track_id, "name": "t", "artists": []}, {"id": "album"}, ("test", "x"),
                                 None)
    table = tmp_path / "kaggle.csv"
    table.write_text(f"uri,tempo,popularity\nspotify:track:{ids[0]},120,40\n{ids[1]},90.5,\n"
                     f"https://open.spotify.com/track/{ids[2]}?si=abc,80,10\n")
    report = attach_features(catalog, table)
    assert report["matched_tracks"] == 3 and report["tracks_without_features"] == 4  # danceability absent
    assert dict(catalog.db.execute("SELECT track_id, tempo FROM features")) == {ids[0]: 120.0, ids[1]: 90.5,
                                                                                ids[2]: 80.0}
    assert dict(catalog.db.execute("SELECT id, popularity FROM tracks WHERE popularity IS NOT NULL")) == {
        ids[0]: 40.0, ids[2]: 10.0}
    bad = tmp_path / "bad.csv"
    bad.write_text("name,valence\nx,0.5\n")
    with pytest.raises(Exception, match="no track id column"):
        attach_features(catalog, bad)


def test_prepare_packs_a_collection_with_features_and_drops_duplicate_covers(reference, tmp_path):
    reference_dir, reference_server = reference
    result = run_ganzoo("data", "prepare", reference_dir, "--size", "32", "--out", tmp_path / "store")
    assert result.returncode == 0, result.stderr
    covered = {row[0] for row in sqlite3.connect(reference_dir / "collection.sqlite").execute(
        "SELECT album_id FROM covers WHERE status = 'done'")}
    present = {i for i in range(reference_server.catalogue.albums) if spotify_id("album", i) in covered}
    # album 8 copies album 7's art byte for byte and album 9 re-encodes it; likewise 17, 18 and 19
    exact = sum({k, k + 1} <= present for k in (7, 17))
    near = sum(max(len({k, k + 1, k + 2} & present) - 1, 0) for k in (7, 17)) - exact
    report = json.loads((tmp_path / "store" / "manifest.json").read_text())["report"]
    assert exact + near >= 3 and report["dropped"] == {"exact duplicate": exact, "near duplicate": near}
    assert report["files"] == len(present) and report["files_without_metadata_row"] == 1  # the database
    data = load_store(tmp_path / "store")
    assert data.images.shape == (len(present) - exact - near, 32, 32, 3)
    assert np.isfinite(data.metadata["valence"]).all() and "query" in data.metadata
    trained = run_ganzoo("train", "acgan+wgan", *STORE_FLAGS, "--set", f"data.name={tmp_path / 'store'}",
                         "--set", "model.conditions=[\"audio-features\"]", "--set", "schedule.batch_size=4", "--steps", "1",
                         "--out", tmp_path / "run", "--quiet")
    assert trained.returncode == 0, trained.stderr


def test_import_a_kaggle_csv_with_urls_and_paths(tmp_path):
    server = FakeSpotify().start()
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 40), (250, 200, 0)).save(images / "yellow.png")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    albums = [server.catalogue.images(i, server.base)[0]["url"] for i in range(3)]
    table = tmp_path / "dump.csv"
    table.write_text(
        "track_uri,track_name,artist_name,album_cover,valence,energy\n"
        f"spotify:track:{spotify_id('track', 0)},A,X,{albums[0]},0.9,0.1\n"
        f"spotify:track:{spotify_id('track', 1)},B,X,{albums[0]},0.7,0.3\n"
        f"spotify:track:{spotify_id('track', 2)},C,Y,{albums[1]},0.1,0.9\n"
        f"spotify:track:{spotify_id('track', 3)},D,Y,images/yellow.png,0.5,0.5\n"
        f"spotify:track:{spotify_id('track', 4)},E,Z,images/broken.jpg,0.5,0.5\n"
        f"spotify:track:{spotify_id('track', 5)},F,Z,images/missing.jpg,0.5,0.5\n"
        f"{spotify_id('track', 6)},G,Z,,0.5,0.5\n")
    result = run_ganzoo("data", "spotify", "import", table, "--out", tmp_path / "collection", "--quiet")
    server.stop()
    assert result.returncode == 0, result.stderr
    assert "7 rows (0 without a track id, 1 without an image, 2 unusable image files)" in result.stdout
    assert "covers: 3 downloaded, 2 failed, 0 pending" in result.stdout
    rows = (tmp_path / "collection" / "metadata.csv").read_text().splitlines()
    first_album = next(line for line in rows if ",2," in line)  # the cover shared by two tracks
    assert ",0.8," in first_album  # their mean valence
    store = run_ganzoo("data", "prepare", tmp_path / "collection", "--size", "32", "--out", tmp_path / "store")
    assert store.returncode == 0 and load_store(tmp_path / "store").images.shape[0] == 3


def test_bad_credentials_and_queries_are_one_line_errors(tmp_path):
    server = FakeSpotify().start()
    wrong = collect(server, tmp_path / "c", env={"SPOTIPY_CLIENT_SECRET": "wrong-secret-123"})
    missing = collect(server, tmp_path / "c2", env={"SPOTIPY_CLIENT_ID": ""})
    bad_id = run_ganzoo("data", "spotify", "collect", "--playlist", "spotify:album:" + "a" * 22, "--out",
                        tmp_path / "c3", env=credentials(server))
    server.stop()
    assert wrong.returncode == 2 and "refused the client credentials" in wrong.stderr
    assert "wrong-secret-123" not in wrong.stderr + wrong.stdout and "Traceback" not in wrong.stderr
    assert missing.returncode == 2 and "SPOTIPY_CLIENT_ID" in missing.stderr and not (tmp_path / "c2").exists()
    assert bad_id.returncode == 2 and "not a Spotify playlist id" in bad_id.stderr


def test_retry_policy_honours_retry_after_bounds_backoff_and_gives_up(monkeypatch):
    waits = []
    monkeypatch.setattr(time, "sleep", waits.append)
    policy = RetryPolicy(attempts=6, backoff_s=1.0, max_backoff_s=4.0, max_retry_after_s=60)
    failures = iter([Transient("429", wait=7), Transient("500"), Transient("timeout")])

    def flaky():
        failure = next(failures, None)
        if failure:
            raise failure
        return "ok"
    assert policy.call(flaky, "x") == "ok" and waits[0] == 7 and all(w <= 4.0 for w in waits[1:])
    assert policy.stats["rate_limited"] == 1 and policy.stats["retried"] == 2

    waits.clear()
    with pytest.raises(Transient):
        policy.call(lambda: (_ for _ in ()).throw(Transient("500")), "x")
    assert len(waits) == 5 and max(waits) <= 4.0
    with pytest.raises(RateLimited, match="wait 3600 s"):
        policy.call(lambda: (_ for _ in ()).throw(Transient("429", wait=3600)), "x")


def test_spotify_references_parse():
    track = "4uLU6hMCjMI75M1A2tKUQC"
    assert parse_id(track, "track") == track
    assert parse_id(f"spotify:track:{track}", "track") == track
    assert parse_id(f"https://open.spotify.com/intl-de/track/{track}?si=x", "track") == track
    assert parse_id(f"spotify:album:{track}", "track") is None and parse_id("short", "track") is None
