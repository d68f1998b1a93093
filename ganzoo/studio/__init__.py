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
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from ganzoo.conditions import condition_for
from ganzoo.errors import GanzooError
from ganzoo.images import MAX_UPSCALE, RESAMPLING, png_bytes
from ganzoo.limits import MAX_SEED
from ganzoo.sampling import Sampler
from ganzoo.plugins import get_registry
from ganzoo.tracks import TrackTable, read_tracks, track_request

MAX_GRID = 16
RESERVED = {"seed", "n", "index", "scale", "filter"}


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
                "tracks": bool(self.tracks.path), "resampling": sorted(RESAMPLING)}

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
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024

    @app.errorhandler(GanzooError)
    def refused(error):
        return jsonify(error=str(error)), 400

    @app.errorhandler(HTTPException)
    def http_error(error):
        return jsonify(error=error.description), error.code

    @app.get("/")
    def page():
        return Response(resources.files("ganzoo.studio").joinpath("index.html").read_text(), mimetype="text/html")

    @app.get("/api/info")
    def info():
        return jsonify(studio.info())

    @app.get("/api/covers")
    def covers():
        wanted, seed, count = studio.parse_request(request.args)
        images = studio.covers(wanted, seed, count)
        urls = ["data:image/png;base64," + base64.b64encode(png_bytes(image)).decode() for image in images]
        return jsonify(covers=urls, seed=seed, request=wanted)

    @app.get("/api/cover.png")
    def cover():
        args = request.args.to_dict()
        index = bounded_int(args, "index", 0, 0, MAX_GRID - 1)
        scale = bounded_int(args, "scale", 8, 1, MAX_UPSCALE)
        resampling = args.get("filter", "lanczos")
        if resampling not in RESAMPLING:
            raise BadRequest(f"filter must be one of {', '.join(sorted(RESAMPLING))}, not {resampling!r}")
        wanted, seed, count = studio.parse_request(args)
        if index >= count:
            raise BadRequest(f"index {index} is outside the grid of {count}")
        data = png_bytes(studio.covers(wanted, seed, count)[index], scale, resampling)
        name = f"ganzoo-cover-seed{seed}-{index}-{scale}x-{resampling}.png"
        return Response(data, mimetype="image/png", headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.post("/api/track")
    def track():
        try:
            payload = json.loads(request.get_data(cache=False))
        except (ValueError, RecursionError):  # a deeply nested body is refused like any other bad one
            payload = None
        if not isinstance(payload, dict):
            raise BadRequest('the body must be a JSON object such as {"text": "spotify:track:..."}')
        return jsonify(features=studio.track_features(str(payload.get("text", ""))))

    return app
