"""ganzoo studio: a local page that turns slider positions (one per condition) into a grid of covers.

The server is Flask (a small, synchronous server: generation is synchronous torch work anyway). One lock
serialises generation, every request is bounded (grid size, upscale factor, seed, body size), and bad input is
a 400 with a JSON ``error`` message. Covers for a seed use fixed noise, so moving one slider shows that
feature's effect alone. An uploaded song sets the sliders its audio measures (the audio extra): its size is
checked before its body is read, and it is written only to a file of the studio's own naming in a private
temporary folder, deleted once measured.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
import threading
from importlib import resources
from pathlib import Path

import numpy as np
from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ganzoo.engine.conditioning import condition_for
from ganzoo.api.errors import GanzooError
from ganzoo.apps.covers import encoded_cover, finished_cover, png_bytes
from ganzoo.runtime.limits import LAYOUTS, MAX_COVER_SIZE, MAX_SEED, MAX_SONG_BYTES, MAX_UPSCALE, RESAMPLING_FILTERS
from ganzoo.engine.sampling import Sampler
from ganzoo.registry.loading import get_registry
from ganzoo.apps.tracks import TrackTable, read_tracks, track_request

MAX_GRID = 16
RESERVED = {"seed", "n", "index", "scale", "filter", "size", "title", "artist", "layout"}
FINISHED_SIZE = 3000
"""The side of a finished download (what distributors ask for)."""


class BadRequest(GanzooError):
    """A request the studio refuses; its message goes back to the page."""


def bounded_int(args, name: str, default: int, low: int, high: int) -> int:
    text = args.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}, not {text!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be from {low} to {high}, not {value}")
    return value


class Studio:
    """The checkpoint's controls, request parsing and generation, independent of HTTP."""

    def __init__(self, sampler: Sampler, tracks: TrackTable | None = None):
        self.sampler = sampler
        self.lock = threading.Lock()
        self.controls = self._controls()
        self.tracks = tracks if tracks is not None else read_tracks(None, get_registry())
        self.upscaler = get_registry().create("upscaler", get_registry().default("upscaler").name, None)

    def _controls(self) -> list[dict]:
        controls = []
        for condition in self.sampler.conditions.values():
            for column in condition.columns:
                summary = self.sampler.summary[column]
                if condition.kind == "categorical":
                    choices = list(summary["choices"])
                    controls.append({"name": column, "kind": "categorical", "choices": choices,
                                     "value": choices[0] if choices else ""})
                    continue
                low, high = summary["low"], summary["high"]
                controls.append({"name": column, "kind": "continuous", "unit": condition.unit(column),
                                 "min": round(low, 4), "max": round(high, 4),
                                 "step": round((high - low) / 200, 6) or 0.01, "value": round(summary["median"], 4)})
        return controls

    def info(self) -> dict:
        return {"conditional": bool(self.sampler.conditions), "image_size": self.sampler.image_size,
                "step": self.sampler.step, "controls": self.controls, "max_grid": MAX_GRID,
                "tracks": bool(self.tracks.path), "resampling": sorted(RESAMPLING_FILTERS),
                "vector": self.sampler.draws,
                "max_song_bytes": MAX_SONG_BYTES}

    def parse_request(self, args) -> tuple[dict, int, int]:
        """(condition request, seed, grid size) from query arguments; unknown names and bad values raise."""
        seed = bounded_int(args, "seed", 0, 0, MAX_SEED)
        count = bounded_int(args, "n", 9, 1, MAX_GRID)
        wanted = {}
        for name, text in args.items():
            if name in RESERVED:
                continue
            if not self.sampler.conditions:
                raise BadRequest(f"this checkpoint is unconditional; it takes no {name!r}")
            wanted[name] = condition_for(self.sampler.conditions, name).parse(name, text)
        return wanted, seed, count

    def chosen_cover(self, args) -> tuple[dict, int, int, int]:
        """(condition request, seed, grid size, index) of the one cover of a grid a download asks for."""
        index = bounded_int(args, "index", 0, 0, MAX_GRID - 1)
        wanted, seed, count = self.parse_request(args)
        if index >= count:
            raise BadRequest(f"index {index} is outside the grid of {count}")
        return wanted, seed, count, index

    def covers(self, wanted: dict, seed: int, count: int) -> np.ndarray:
        """uint8 covers (count, S, S, 3) for the request, from the fixed noise of ``seed``."""
        with self.lock:
            images, _ = self.sampler.covers(count, seed, wanted)
        return images.permute(0, 2, 3, 1).numpy()

    def track_features(self, text: str) -> dict:
        """Slider values, and the title and artist when known, from a pasted track id/URI/URL (looked up in
        --tracks) or a CSV row of features."""
        try:
            found = track_request(text, self.tracks, self.sampler.conditions)
        except GanzooError as error:
            raise BadRequest(str(error)) from None
        return {"features": found.request, "title": found.title, "artist": found.artist}

    def song_values(self, stream, name: str) -> tuple[dict, str]:
        """(slider values, what was measured) for an uploaded song read from ``stream``, named ``name`` only in
        messages: written to a private temporary folder under a name of the studio's own, measured, deleted."""
        from ganzoo.audio.features import SUFFIXES, check_audio_libraries, song_features
        from ganzoo.audio.request import check_takes_audio, song_request, wants_descriptors

        try:
            check_audio_libraries()
            check_takes_audio(self.sampler)
        except GanzooError as error:
            raise BadRequest(str(error)) from None
        suffix = Path(name).suffix.lower()
        with tempfile.TemporaryDirectory(prefix="ganzoo-song-") as folder:
            path = Path(folder) / f"song{suffix if suffix in SUFFIXES else ''}"
            with open(path, "wb") as file:
                shutil.copyfileobj(stream, file, 1 << 20)
            try:
                song = song_features(path, wants_descriptors(self.sampler))
            except GanzooError as error:
                raise BadRequest(str(error).replace(str(path), name)) from None
        values, said = song_request(self.sampler, song, {})
        controls = {control["name"] for control in self.controls if control["kind"] == "continuous"}
        return {column: float(value) for column, value in values.items() if column in controls}, f"{name}: {said}"


def create_app(studio: Studio) -> Flask:
    """The studio's Flask app: the page, its JSON API and its downloads, all answered by ``studio``."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.extensions["ganzoo_studio"] = studio
    app.register_error_handler(GanzooError, lambda error: (jsonify(error=str(error)), 400))
    app.register_error_handler(HTTPException, lambda error: (jsonify(error=error.description), error.code))
    app.add_url_rule("/", view_func=page)
    app.add_url_rule("/api/info", view_func=info)
    app.add_url_rule("/api/covers", view_func=covers)
    app.add_url_rule("/api/cover.png", view_func=cover_download)
    app.add_url_rule("/api/cover.jpg", view_func=finished_download)
    app.add_url_rule("/api/cover.svg", view_func=svg_download)
    app.add_url_rule("/api/track", view_func=track, methods=["POST"])
    app.add_url_rule("/api/song", view_func=song, methods=["POST"])
    return app


def studio_of_app() -> Studio:
    return current_app.extensions["ganzoo_studio"]


def page():
    return Response(resources.files("ganzoo.apps.studio").joinpath("index.html").read_text(), mimetype="text/html")


def info():
    return jsonify(studio_of_app().info())


def covers():
    """A grid of covers for the sliders' values, as PNG data URLs."""
    studio = studio_of_app()
    wanted, seed, count = studio.parse_request(request.args)
    images = studio.covers(wanted, seed, count)
    urls = ["data:image/png;base64," + base64.b64encode(png_bytes(image)).decode() for image in images]
    return jsonify(covers=urls, seed=seed, request=wanted)


def cover_download():
    """One cover of the grid as a PNG download, upscaled ``scale`` times with ``filter``."""
    studio = studio_of_app()
    args = request.args.to_dict()
    scale = bounded_int(args, "scale", 8, 1, MAX_UPSCALE)
    resampling = args.get("filter", "lanczos")
    if resampling not in RESAMPLING_FILTERS:
        raise BadRequest(f"filter must be one of {', '.join(sorted(RESAMPLING_FILTERS))}, not {resampling!r}")
    wanted, seed, count, index = studio.chosen_cover(args)
    data = png_bytes(studio.covers(wanted, seed, count)[index], scale, resampling)
    return download(data, "image/png", f"ganzoo-cover-seed{seed}-{index}-{scale}x-{resampling}.png")


def download(data, mimetype: str, name: str) -> Response:
    return Response(data, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def finished_download():
    """One cover of the grid finished as ``generate --size`` finishes it: ``size`` px (3000 by default) by the
    default upscaler, lettered with ``title`` and ``artist`` (``layout``), as a JPEG under 10 MB."""
    studio = studio_of_app()
    args = request.args.to_dict()
    size = bounded_int(args, "size", FINISHED_SIZE, 8, MAX_COVER_SIZE)
    title, artist, layout = args.get("title", "").strip(), args.get("artist", "").strip(), args.get("layout", "auto")
    if layout not in LAYOUTS:
        raise BadRequest(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if artist and not title:
        raise BadRequest("an artist is lettered under a title; give a title too")
    wanted, seed, count, index = studio.chosen_cover(args)
    with studio.lock:
        covers, _ = studio.sampler.covers_at(size, count, seed, wanted, [index])
        cover = next(covers)
    image, _ = finished_cover(cover, size, studio.upscaler, title or None, artist or None, None, layout)
    return download(encoded_cover(image, "jpeg"), "image/jpeg", f"ganzoo-cover-seed{seed}-{index}-{size}px.jpg")


def svg_download():
    """One cover of the grid as SVG (``size`` px, 3000 by default): a vector model's only."""
    studio = studio_of_app()
    args = request.args.to_dict()
    size = bounded_int(args, "size", FINISHED_SIZE, 8, MAX_COVER_SIZE)
    wanted, seed, count, index = studio.chosen_cover(args)
    with studio.lock:
        documents, _ = studio.sampler.svgs(size, count, seed, wanted, [index])
        document = next(documents)
    return download(document, "image/svg+xml", f"ganzoo-cover-seed{seed}-{index}.svg")


def track():
    """Slider values, title and artist from a pasted track (a JSON object with its ``text``)."""
    try:
        payload = json.loads(request.get_data(cache=False))
    except (ValueError, RecursionError):  # a deeply nested body is refused like any other bad one
        payload = None
    if not isinstance(payload, dict):
        raise BadRequest('the body must be a JSON object such as {"text": "spotify:track:..."}')
    return jsonify(studio_of_app().track_features(str(payload.get("text", ""))))


def song():
    """Slider values measured from an uploaded song: the file's bytes as the body, its file name in ``name``.
    A body without a stated length, or longer than ``MAX_SONG_BYTES``, is refused before it is read."""
    length = request.content_length
    if length is None or length > MAX_SONG_BYTES:
        raise RequestEntityTooLarge(f"a song must come with its length and be at most {MAX_SONG_BYTES >> 20} MB")
    request.max_content_length = MAX_SONG_BYTES
    name = Path(request.args.get("name", "song")).name[:200] or "song"
    features, said = studio_of_app().song_values(request.stream, name)
    return jsonify(features=features, said=said)
