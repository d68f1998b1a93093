"""Covers at the size distributors ask for: a vector model's cover drawn at 3000 px against a pixel model's cover
enlarged to 3000 px (the default upscaler), by the sharpness of their edges, with a crop of each at full size and
the time each takes.

    python benchmarks/bench_vector_size.py VECTOR_RUN RASTER_RUN --size 3000 --covers 8 --crop docs/grids/crop.jpg
    python benchmarks/bench_vector_size.py --smoke      # two tiny runs made here: that the script runs

Sharpness: the luminance's gradient magnitude (central differences, in grey levels per pixel) over each cover's
strongest edges, the top 0.5 % of its pixels by that magnitude: a sharp edge rises within a pixel, an enlarged
one over as many pixels as the enlargement. Time: ``ganzoo generate RUN --size SIZE -n 1`` as a whole command
(start-up included), the median of three, and the drawing or enlarging alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from runner import ganzoo, tiny_run

STRONGEST = 0.005


def sharpness(image: np.ndarray) -> float:
    grey = image.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])
    gy, gx = np.gradient(grey)
    magnitude = np.hypot(gx, gy)
    return float(np.sort(magnitude, axis=None)[-max(1, int(magnitude.size * STRONGEST)):].mean())


def command_seconds(run: Path, size: int, out: Path, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        ganzoo("generate", run, "--size", size, "--out", out, threads=2)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def finishing_seconds(run: Path, size: int) -> float:
    """Drawing (or enlarging) one cover at ``size``, in this process, model loaded: the median of three."""
    from ganzoo.apps import toolkit

    sampler = toolkit.load_sampler(run, toolkit.resolve_device("cpu"))
    registry = toolkit.get_registry()
    upscaler = registry.create("upscaler", registry.default("upscaler").name, None)
    times = []
    for seed in range(3):
        started = time.perf_counter()
        covers, _ = sampler.covers_at(size, 1, seed, None)
        array = next(covers)
        if array.shape[0] != size:
            toolkit.finished_cover(array, size, upscaler)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(vector: Path, raster: Path, size: int, count: int, crop: Path | None, work: Path) -> dict:
    result = {"size": size, "covers": count}
    crops = []
    for name, run in (("vector", vector), ("raster", raster)):
        folder = work / f"{name}-covers"
        ganzoo("generate", run, "-n", count, "--size", size, "--out-dir", folder, threads=2)
        images = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(folder.glob("*.png"))]
        values = [sharpness(image) for image in images]
        result[name] = {"run": str(run), "sharpness_mean": round(statistics.mean(values), 2),
                        "sharpness_each": [round(v, 2) for v in values],
                        "command_seconds": round(command_seconds(run, size, work / f"{name}-one.png"), 2),
                        "finishing_seconds": round(finishing_seconds(run, size), 2)}
        side = min(512, size)
        top = (size - side) // 2
        crops.append(images[0][top:top + side, top:top + side])
    if crop:
        gap = np.full((crops[0].shape[0], 8, 3), 255, np.uint8)
        Image.fromarray(np.concatenate([crops[0], gap, crops[1]], axis=1)).save(crop, quality=92)
        result["crop"] = str(crop)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vector", type=Path, nargs="?")
    parser.add_argument("raster", type=Path, nargs="?")
    parser.add_argument("--size", type=int, default=3000)
    parser.add_argument("--covers", type=int, default=8)
    parser.add_argument("--crop", type=Path, help="a JPEG of the two covers' centres at full size, side by side")
    parser.add_argument("--smoke", action="store_true", help="two tiny runs, 96 px: seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        if args.smoke:
            vector = tiny_run(work / "vector", "shapes+hinge", "--set", "data.image_size=32")
            raster = tiny_run(work / "raster", "dcgan+ns", "--set", "data.image_size=32")
            print(json.dumps(measure(vector, raster, 96, 2, work / "crop.jpg", work)))
            return
        if not (args.vector and args.raster):
            sys.exit("give VECTOR_RUN and RASTER_RUN (or --smoke)")
        print(json.dumps(measure(args.vector, args.raster, args.size, args.covers, args.crop, work)))


if __name__ == "__main__":
    main()
