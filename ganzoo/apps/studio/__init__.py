"""ganzoo studio: a local page that turns slider positions (one per condition) into a grid of covers.

The server is Flask (a small, synchronous server: generation is synchronous torch work anyway). One lock
serialises generation, every request is bounded (grid size, upscale factor, seed, body size), and bad input is
a 400 with a JSON ``error`` message. Covers for a seed use fixed noise, so moving one slider shows that
feature's effect alone.
"""

from __future__ import annotations

import base64
import json
import threading
from importlib import resources

import numpy as np
from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from ganzoo.engine.conditioning import condition_for
from ganzoo.api.errors import GanzooError
from ganzoo.apps.covers import encoded_cover, finished_cover, png_bytes
from ganzoo.runtime.limits import LAYOUTS, MAX_COVER_SIZE, MAX_SEED, MAX_UPSCALE, RESAMPLING_FILTERS
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
                "tracks": bool(self.tracks.path), "resampling": sorted(RESAMPLING_FILTERS)}

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

    def covers(self, wanted: dict, seed: int, count: int) -> np.ndarray:
        """uint8 covers (count, S, S, 3) for the request, from the fixed noise of ``seed``."""
        with self.lock:
            images, _ = self.sampler.covers(count, seed, wanted)
        return images.permute(0, 2, 3, 1).numpy()

    def track_features(self, text: str) -> dict:
        """Slider values from a pasted track id/URI/URL (looked up in --tracks) or a CSV row of features."""
        try:
            return track_request(text, self.tracks, self.sampler.conditions)[1]
        except GanzooError as error:
            raise BadRequest(str(error)) from None


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
    app.add_url_rule("/api/track", view_func=track, methods=["POST"])
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
    index = bounded_int(args, "index", 0, 0, MAX_GRID - 1)
    scale = bounded_int(args, "scale", 8, 1, MAX_UPSCALE)
    resampling = args.get("filter", "lanczos")
    if resampling not in RESAMPLING_FILTERS:
        raise BadRequest(f"filter must be one of {', '.join(sorted(RESAMPLING_FILTERS))}, not {resampling!r}")
    wanted, seed, count = studio.parse_request(args)
    if index >= count:
        raise BadRequest(f"index {index} is outside the grid of {count}")
    data = png_bytes(studio.covers(wanted, seed, count)[index], scale, resampling)
    name = f"ganzoo-cover-seed{seed}-{index}-{scale}x-{resampling}.png"
    return Response(data, mimetype="image/png", headers={"Content-Disposition": f'attachment; filename="{name}"'})


def finished_download():
    """One cover of the grid finished as ``generate --size`` finishes it: ``size`` px (3000 by default) by the
    default upscaler, lettered with ``title`` and ``artist`` (``layout``), as a JPEG under 10 MB."""
    studio = studio_of_app()
    args = request.args.to_dict()
    index = bounded_int(args, "index", 0, 0, MAX_GRID - 1)
    size = bounded_int(args, "size", FINISHED_SIZE, 8, MAX_COVER_SIZE)
    title, artist, layout = args.get("title", "").strip(), args.get("artist", "").strip(), args.get("layout", "auto")
    if layout not in LAYOUTS:
        raise BadRequest(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if artist and not title:
        raise BadRequest("an artist is lettered under a title; give a title too")
    wanted, seed, count = studio.parse_request(args)
    if index >= count:
        raise BadRequest(f"index {index} is outside the grid of {count}")
    cover = studio.covers(wanted, seed, count)[index]
    image, _ = finished_cover(cover, size, studio.upscaler, title or None, artist or None, None, layout)
    name = f"ganzoo-cover-seed{seed}-{index}-{size}px.jpg"
    return Response(encoded_cover(image, "jpeg"), mimetype="image/jpeg",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def track():
    """Slider values from a pasted track (a JSON object with its ``text``)."""
    try:
        payload = json.loads(request.get_data(cache=False))
    except (ValueError, RecursionError):  # a deeply nested body is refused like any other bad one
        payload = None
    if not isinstance(payload, dict):
        raise BadRequest('the body must be a JSON object such as {"text": "spotify:track:..."}')
    return jsonify(features=studio_of_app().track_features(str(payload.get("text", ""))))
