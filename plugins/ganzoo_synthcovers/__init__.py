"""synthcovers: procedural album covers whose look follows ten Spotify-like audio features.

Features are drawn from a Gaussian copula fitted to real Spotify audio features (``feature_model.json``;
see ``datasets/synthcovers.md``). Six of them drive the picture, and ``measure_features`` reads them back:

============== ============================== =====================================================
feature        drives                         mapping
============== ============================== =====================================================
valence        hue of the palette             hue = 0.66 + 0.42 * valence (mod 1): sad blue, purple, red, happy orange
energy         saturation and shape contrast  saturation = 0.3 + 0.65 * energy
loudness       brightness of the background   value = 0.3 + 0.6 * clip((loudness_db + 20) / 20, 0, 1)
acousticness   soft gradients vs hard shapes  edge width = (0.3 + 1.5 * acousticness) * size / 64 px
danceability   repetition of the motif        motif frequency = 1 + 4 * danceability per side
instrumental.  title band at the bottom       band height = 0.22 * size * (1 - instrumentalness ** 0.25)
============== ============================== =====================================================

Layout (motif shape and size, phase, gradient direction, hue offsets, band colour, title text) is random.
tempo, speechiness, liveness and popularity are carried as metadata but drive nothing.

``ganzoo data synthcovers OUT --audio`` writes covers as files with a short audio clip each, made from the same
features (``clips``): a paired set to train and check the ``audio-descriptors`` condition on.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from importlib import resources
from pathlib import Path

import click
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ganzoo import Dataset, GanzooError, ImageData, hookimpl
from ganzoo_conditions import AUDIO_FEATURES

FEATURES = tuple(AUDIO_FEATURES)
DRIVEN_FEATURES = ("valence", "energy", "loudness", "acousticness", "danceability", "instrumentalness")
SAD_HUE, HUE_SPAN = 0.66, 0.42
LOUDNESS_RANGE_DB = 20.0
BAND_FRACTION = 0.22


def feature_model() -> dict:
    return json.loads(resources.files(__name__).joinpath("feature_model.json").read_text())


def sample_features(count: int, seed: int) -> dict[str, np.ndarray]:
    """Draw ``count`` rows of the ten audio features from the fitted copula, deterministically for ``seed``."""
    model = feature_model()
    generator = torch.Generator().manual_seed(seed)
    correlation = torch.tensor(model["correlation"], dtype=torch.float64)
    normal = torch.randn(count, len(correlation), generator=generator, dtype=torch.float64)
    uniform = torch.special.ndtr(normal @ torch.linalg.cholesky(correlation).T)
    columns = dict(zip(model["copula_features"], uniform.T))
    columns["popularity"] = torch.rand(count, generator=generator, dtype=torch.float64)
    features = {}
    for name in FEATURES:
        quantiles = np.asarray(model["marginals"][name])
        levels = np.linspace(0.0, 1.0, len(quantiles))
        features[name] = np.interp(columns[name].numpy(), levels, quantiles)
    features["popularity"] = np.round(features["popularity"])
    return features


def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB for arrays of any (equal) shape; returns shape + (3,)."""
    h = np.mod(h, 1.0) * 6.0
    i = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = [np.select([i == k for k in range(6)], [c[channel] for c in choices]) for channel in range(3)]
    return np.stack(rgb, axis=-1)


def _rgb_to_hsv(rgb):
    """(…, 3) floats in [0, 1] -> hue, saturation, value arrays."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = rgb.max(axis=-1)
    spread = value - rgb.min(axis=-1)
    saturation = np.where(value > 0, spread / np.maximum(value, 1e-12), 0.0)
    safe = np.maximum(spread, 1e-12)
    hue = np.where(value == r, (g - b) / safe, np.where(value == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    return np.mod(hue / 6.0, 1.0), saturation, value


def render(features: dict[str, np.ndarray], size: int, seed: int) -> np.ndarray:
    """Render covers for the given feature rows: uint8 (N, size, size, 3). Layout is random, seeded by ``seed``."""
    rng = np.random.default_rng(seed)
    count = len(features["valence"])

    def per_image(values):
        return np.asarray(values, dtype=np.float64).reshape(count, 1, 1)

    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
    hue = per_image(SAD_HUE + HUE_SPAN * np.clip(features["valence"], 0, 1))
    saturation = per_image(0.3 + 0.65 * np.clip(features["energy"], 0, 1))
    value = per_image(0.3 + 0.6 * np.clip((np.asarray(features["loudness"]) + LOUDNESS_RANGE_DB) / LOUDNESS_RANGE_DB,
                                          0, 1))
    contrast = per_image((0.08 + 0.12 * np.clip(features["energy"], 0, 1)) * rng.choice([-1, 1], count))

    # background: a gradient between two neighbouring hues along a random direction
    angle = per_image(rng.uniform(0, 2 * np.pi, count))
    ramp = np.clip(0.5 + (x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle), 0, 1)[..., None]
    spread = per_image(rng.uniform(0.01, 0.04, count))
    start = _hsv_to_rgb(hue + spread, saturation, value)
    end = _hsv_to_rgb(hue - spread, saturation, value)
    picture = start * (1 - ramp) + end * ramp

    # motif: a repeated shape, frequency from danceability, edge softness from acousticness
    frequency = per_image(1 + 4 * np.clip(features["danceability"], 0, 1))
    u = np.mod(x * frequency + per_image(rng.uniform(0, 1, count)), 1.0) - 0.5
    v = np.mod(y * frequency + per_image(rng.uniform(0, 1, count)), 1.0) - 0.5
    shape = per_image(rng.integers(0, 3, count))
    distance = np.where(shape == 0, np.hypot(u, v),
                        np.where(shape == 1, np.maximum(abs(u), abs(v)), 0.75 * (abs(u) + abs(v))))
    distance = (distance - per_image(rng.uniform(0.2, 0.34, count))) * size / frequency
    softness = per_image((0.3 + 1.5 * np.clip(features["acousticness"], 0, 1)) * size / 64)
    mask = (1 / (1 + np.exp(np.clip(distance / softness, -50, 50))))[..., None]
    motif = _hsv_to_rgb(hue + per_image(rng.uniform(-0.06, 0.06, count)), saturation,
                        np.clip(value + contrast, 0, 1))
    picture = picture * (1 - mask) + motif * mask

    # title band: present unless instrumental, with achromatic "text"
    band_rows = np.round(BAND_FRACTION * size * (1 - np.clip(features["instrumentalness"], 0, 1) ** 0.25)
                         ).astype(int)
    band_rows = np.where(band_rows >= 2, band_rows, 0)
    row = np.arange(size).reshape(1, size, 1)
    height = band_rows.reshape(count, 1, 1)
    in_band = row >= size - height
    dark_band = per_image(rng.random(count) < 0.5)
    band_grey = np.where(dark_band, 0.1, 0.94)
    characters = per_image(rng.uniform(8, 14, count))
    text_end = per_image(rng.uniform(0.4, 0.9, count))
    text_row = (row >= size - height * 0.7) & (row < size - height * 0.3)
    text = text_row & (np.mod(x * characters, 1.0) < 0.6) & (x > 0.08) & (x < text_end)
    grey = np.where(text, np.where(dark_band, 0.85, 0.2), band_grey)
    picture = np.where(in_band[..., None], np.broadcast_to(grey[..., None], picture.shape), picture)
    return np.clip(np.rint(picture * 255), 0, 255).astype(np.uint8)


def measure_features(images: np.ndarray) -> dict[str, np.ndarray]:
    """Read the six driven features back from uint8 covers (N, S, S, 3), in the features' own units.

    Works on generated covers too: this is how the conditional benchmarks score whether covers follow their
    features. Each estimate inverts the mapping in the module docstring from a statistic that the random
    layout barely moves. Acousticness comes from an edge-softness ratio (gradient energy after and before a
    3-pixel blur, at 64 px or the image's own size if smaller) mapped only roughly to [0, 1]: it preserves
    order, not units.
    """
    pictures = np.asarray(images, dtype=np.float64) / 255.0
    count, size = pictures.shape[0], pictures.shape[1]
    hue, saturation, value = _rgb_to_hsv(pictures)

    row_saturation = saturation.mean(axis=2)
    achromatic = row_saturation < 0.1
    band_rows = np.zeros(count, dtype=int)
    for i in range(count):
        flags = achromatic[i, ::-1]
        band_rows[i] = size if flags.all() else int(np.argmin(flags))
    estimates = {name: np.zeros(count) for name in DRIVEN_FEATURES}
    estimates["instrumentalness"] = np.clip(1 - band_rows / (BAND_FRACTION * size), 0, 1) ** 4
    scale = max(size // 64, 1)
    reference = pictures.reshape(count, size // scale, scale, size // scale, scale, 3).mean(axis=(2, 4))

    for i in range(count):
        top = max(size - band_rows[i], 2)
        h, s, v = hue[i, :top], saturation[i, :top], value[i, :top]
        weight = s + 1e-9
        angle = np.angle(np.sum(weight * np.exp(2j * np.pi * h))) / (2 * np.pi)
        if angle < SAD_HUE - 0.3:
            angle += 1.0
        estimates["valence"][i] = (angle - SAD_HUE) / HUE_SPAN
        estimates["energy"][i] = (s.mean() - 0.3) / 0.65
        estimates["loudness"][i] = (np.median(v) - 0.3) / 0.6 * LOUDNESS_RANGE_DB - LOUDNESS_RANGE_DB
        spectrum = np.abs(np.fft.rfft(v - v.mean(axis=1, keepdims=True), axis=1)).mean(axis=0)
        peak = 1 + int(np.argmax(spectrum[1:7]))
        if 1 < peak < len(spectrum) - 1:
            left, centre, right = spectrum[peak - 1], spectrum[peak], spectrum[peak + 1]
            curvature = left - 2 * centre + right
            peak = peak + (0.5 * (left - right) / curvature if curvature < 0 else 0.0)
        estimates["danceability"][i] = (peak - 1) / 4
        rgb = reference[i, :max(top // scale, 2)]
        gradient = np.diff(rgb, axis=1) ** 2
        taps = 5 if rgb.shape[1] >= 64 else 3
        blurred = sum(rgb[:, k:rgb.shape[1] - taps + 1 + k] for k in range(taps)) / taps
        softness = (np.diff(blurred, axis=1) ** 2).sum() / max(gradient.sum(), 1e-12)
        estimates["acousticness"][i] = (softness - 0.40) / 0.33
    return estimates


class SynthcoversOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(8192, gt=0, description="covers to synthesise")
    seed: int = Field(0, ge=0, le=2 ** 31 - 1, description="seed of the features and the layouts")


class Synthcovers(Dataset):
    """The embedded default dataset: ``count`` covers (or as many as a caller wants) at any size from 8 px."""

    image_sizes = range(8, 4097)

    def __init__(self, options: SynthcoversOptions):
        self.options = options

    def load(self, image_size: int, wanted: int | None = None) -> ImageData:
        return synthcovers(wanted or self.options.count, image_size, self.options.seed)

    def memory(self, image_size: int, wanted: int | None = None) -> int:
        return (wanted or self.options.count) * image_size ** 2 * 3


def synthcovers(count: int, image_size: int, seed: int = 0) -> ImageData:
    """``count`` covers at ``image_size`` px with their features, deterministic for ``seed``."""
    features = sample_features(count, seed)
    chunks = []
    for start in range(0, count, 1024):
        rows = {k: v[start:start + 1024] for k, v in features.items()}
        chunks.append(render(rows, image_size, seed=seed * 1_000_003 + start))
    images = np.concatenate(chunks)
    key = f"synthcovers:v1:{count}:{image_size}:{seed}"
    return ImageData(name="synthcovers", images=images, metadata=features,
                     fingerprint=hashlib.sha256(key.encode()).hexdigest()[:16], measure=measure_features)


@hookimpl
def register_datasets(register):
    register("synthcovers", Synthcovers, options=SynthcoversOptions, default=True,
             description="procedural covers whose look follows ten Spotify-like audio features")


@click.command("synthcovers")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--count", type=click.IntRange(1, 100_000), default=1000, show_default=True, help="Covers to write.")
@click.option("--size", type=click.IntRange(8, 1024), default=64, show_default=True, help="Cover side in pixels.")
@click.option("--seed", type=click.IntRange(0, 2 ** 31 - 1), default=0, show_default=True,
              help="Seed of the features, layouts and clips.")
@click.option("--audio", is_flag=True, help="A clip per cover too, in OUT/songs (needs the audio extra).")
def write_synthcovers(out, count, size, seed, audio):
    """Write synthcovers as files: OUT/covers (PNGs, and metadata.csv with each cover's ten features) and, with
    --audio, OUT/songs (a 4 s WAV clip per cover made from the same features, paired by name). OUT must not
    exist; it appears whole or not at all."""
    import csv

    from PIL import Image
    from tqdm import tqdm

    out = Path(out)
    if out.exists():
        raise GanzooError(f"{out} exists; choose a new folder")
    if audio:
        try:
            import pyloudnorm  # noqa: F401
            import soundfile
        except ImportError as error:
            raise GanzooError(f"--audio needs the audio extra: pip install 'ganzoo[audio]' ({error.name} is "
                              "missing)") from None
        from ganzoo_synthcovers.clips import RATE, clip
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "covers").mkdir(parents=True)
    if audio:
        (partial / "songs").mkdir()
    data = synthcovers(count, size, seed)
    try:
        with open(partial / "covers" / "metadata.csv", "w", newline="") as table:
            writer = csv.writer(table)
            writer.writerow(["file", *FEATURES])
            for index in tqdm(range(count), desc="synthcovers", unit="cover"):
                name = f"{index:05d}"
                row = {feature: float(data.metadata[feature][index]) for feature in FEATURES}
                Image.fromarray(data.images[index]).save(partial / "covers" / f"{name}.png")
                writer.writerow([f"{name}.png", *(repr(row[feature]) for feature in FEATURES)])
                if audio:
                    soundfile.write(partial / "songs" / f"{name}.wav", clip(row, seed * 1_000_003 + index), RATE,
                                    subtype="PCM_16")
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    click.echo(f"wrote {count} covers of {size} px to {out / 'covers'}"
               + (f" and {count} clips to {out / 'songs'}" if audio else ""))


@hookimpl
def register_commands(register):
    register(write_synthcovers, group="data")
