"""Condition plugins: ``audio-features`` and ``audio-descriptors`` (continuous), ``genre`` (categorical).

audio-features
    Any subset of Spotify's ten audio features, each standardised with the training table's mean and
    standard deviation: ``(value - mean) / std``. A missing value (NaN) encodes as 0, the training mean.
    Requested values are checked against the feature's real range (see ``AUDIO_FEATURES``).
audio-descriptors
    The fixed-length summary of each cover's song that ``ganzoo data prepare COVERS --audio SONGS`` computes
    (``ganzoo.AUDIO_DESCRIPTORS``: tempo, loudness, mode, key, onset rate, MFCC, chroma and spectral-contrast
    means), standardised the same way; a cover without a song encodes as the training mean.
genre
    One metadata column (``genre`` by default; covers640 uses ``playlist_name``) as a one-hot over every
    distinct non-blank value of the training table. Blank, missing and unseen values encode as all zeros,
    which the ``acgan`` objective leaves out of its classification term.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ganzoo import AUDIO_DESCRIPTORS, Condition, GanzooError, hookimpl

AUDIO_FEATURES: dict[str, tuple[float, float, str]] = {
    "danceability": (0.0, 1.0, ""),
    "energy": (0.0, 1.0, ""),
    "valence": (0.0, 1.0, ""),
    "tempo": (0.0, 300.0, " BPM"),
    "loudness": (-60.0, 5.0, " dB"),
    "acousticness": (0.0, 1.0, ""),
    "instrumentalness": (0.0, 1.0, ""),
    "speechiness": (0.0, 1.0, ""),
    "liveness": (0.0, 1.0, ""),
    "popularity": (0.0, 100.0, ""),
}
"""Spotify's audio features: name -> (lowest, highest, unit). Loudness is integrated LUFS-like dB, mostly
between -60 and 0 (a few masters exceed 0); tempo is in beats per minute; popularity is Spotify's 0-100 score."""


def _table_column(metadata, column: str, condition: str) -> np.ndarray:
    if column not in metadata:
        raise GanzooError(f"condition {condition}: the dataset has no {column!r} column (it has: "
                          f"{', '.join(sorted(metadata)) or 'no metadata'})")
    return metadata[column]


class AudioFeaturesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: list[str] = Field(list(AUDIO_FEATURES), min_length=1,
                                description="which audio features to condition on")


class Standardised(Condition):
    """Numeric columns, each standardised with the training table's mean and standard deviation; ``ranges``
    gives each column's (lowest, highest, unit)."""

    kind = "continuous"

    def __init__(self, name: str, columns: list[str], ranges: dict[str, tuple[float, float, str]]):
        self.name, self.ranges = name, ranges
        self.columns = tuple(dict.fromkeys(columns))
        self.dim = len(self.columns)
        self.mean = np.zeros(self.dim)
        self.std = np.ones(self.dim)

    def fit(self, metadata) -> None:
        for i, column in enumerate(self.columns):
            values = _table_column(metadata, column, self.name)
            try:
                values = values.astype(np.float64)
            except ValueError:
                raise GanzooError(f"condition {self.name}: column {column!r} is not numeric") from None
            if np.isnan(values).all():
                raise GanzooError(f"condition {self.name}: column {column!r} has no values")
            self.mean[i] = np.nanmean(values)
            self.std[i] = np.nanstd(values) or 1.0

    def encode(self, metadata) -> torch.Tensor:
        values = np.stack([metadata[column].astype(np.float64) for column in self.columns], axis=1)
        standardised = np.nan_to_num((values - self.mean) / self.std, nan=0.0)
        return torch.from_numpy(standardised).float()

    def state(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    def load_state(self, state: dict) -> None:
        mean, std = np.asarray(state["mean"], dtype=np.float64), np.asarray(state["std"], dtype=np.float64)
        if mean.shape != (self.dim,) or std.shape != (self.dim,):
            raise GanzooError(f"condition {self.name}: the fitted state holds {mean.size} means and {std.size} "
                              f"spreads for {self.dim} columns")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise GanzooError(f"condition {self.name}: the fitted state needs finite means and positive, finite "
                              f"spreads, not means {mean.tolist()} and spreads {std.tolist()}")
        self.mean, self.std = mean, std

    def unit(self, column: str) -> str:
        return self.ranges[column][2].strip()

    def parse(self, column: str, text: str) -> float:
        low, high, unit = self.ranges[column]
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            raise GanzooError(f"{column} must be a number from {low:g} to {high:g}{unit}, not {text!r}")
        return value


class AudioFeatures(Standardised):
    def __init__(self, features: list[str]):
        unknown = [name for name in features if name not in AUDIO_FEATURES]
        if unknown:
            raise GanzooError(f"invalid config: options.audio-features.features: unknown feature "
                              f"{unknown[0]!r} (valid: {', '.join(AUDIO_FEATURES)})")
        super().__init__("audio-features", features, AUDIO_FEATURES)

    def describe(self) -> str:
        return f"{self.dim} audio features, standardised: {', '.join(self.columns)}"


class AudioDescriptors(Standardised):
    def __init__(self):
        finite = float(np.finfo(np.float32).max)
        super().__init__("audio-descriptors", list(AUDIO_DESCRIPTORS),
                         dict.fromkeys(AUDIO_DESCRIPTORS, (-finite, finite, "")))

    def fit(self, metadata) -> None:
        if AUDIO_DESCRIPTORS[0] not in metadata:
            raise GanzooError("condition audio-descriptors: the dataset has no audio descriptors; prepare it "
                              "with its songs: ganzoo data prepare COVERS --audio SONGS")
        super().fit(metadata)

    def describe(self) -> str:
        return f"{self.dim} audio descriptors of each cover's song, standardised"


class AudioDescriptorsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenreOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str = Field("genre", description="the metadata column holding the genre or playlist name")


class Genre(Condition):
    kind = "categorical"

    def __init__(self, column: str):
        self.columns = (column,)
        self.vocabulary: list[str] = []
        self.dim = 0

    def fit(self, metadata) -> None:
        column = self.columns[0]
        values = _table_column(metadata, column, "genre")
        self.vocabulary = sorted({str(v) for v in values if _known(v)})
        if not self.vocabulary:
            raise GanzooError(f"condition genre: column {column!r} has no values")
        self.dim = len(self.vocabulary)

    def encode(self, metadata) -> torch.Tensor:
        values = np.asarray(metadata[self.columns[0]], dtype=object)
        names = np.array([str(v) if _known(v) else "" for v in values], dtype=object)
        vocabulary = np.asarray(self.vocabulary, dtype=object)
        position = np.searchsorted(vocabulary, names) if len(vocabulary) else np.zeros(len(names), dtype=int)
        position = np.minimum(position, max(len(vocabulary) - 1, 0))
        found = (vocabulary[position] == names) & (names != "") if len(vocabulary) else np.zeros(len(names), bool)
        one_hot = torch.zeros(len(values), self.dim)
        rows = np.flatnonzero(found)
        one_hot[torch.from_numpy(rows), torch.from_numpy(position[rows])] = 1.0
        return one_hot

    def describe(self) -> str:
        return f"{self.columns[0]}, one of {self.dim}: {', '.join(self.vocabulary)}"

    def state(self) -> dict:
        return {"vocabulary": list(self.vocabulary)}

    def load_state(self, state: dict) -> None:
        vocabulary = state["vocabulary"]
        if not isinstance(vocabulary, list) or not vocabulary or not all(isinstance(v, str) and v for v in vocabulary) \
                or sorted(set(vocabulary)) != vocabulary:
            raise GanzooError("condition genre: the fitted vocabulary must be a sorted list of distinct, non-blank "
                              "names")
        self.vocabulary = vocabulary
        self.dim = len(self.vocabulary)

    def parse(self, column: str, text: str) -> str:
        if text not in self.vocabulary:
            raise GanzooError(f"unknown {column} {text!r}; this checkpoint knows: {', '.join(self.vocabulary)}")
        return text


def _known(value) -> bool:
    """False for blanks and NaN: a missing genre."""
    if isinstance(value, float):
        return not np.isnan(value)
    return str(value).strip() != ""


@hookimpl
def register_conditions(register):
    register("audio-features", lambda options: AudioFeatures(options.features), options=AudioFeaturesOptions,
             description="Spotify's audio features, standardised (continuous)")
    register("audio-descriptors", lambda options: AudioDescriptors(), options=AudioDescriptorsOptions,
             description="a summary of each cover's song (data prepare --audio), standardised (continuous)")
    register("genre", lambda options: Genre(options.column), options=GenreOptions,
             description="one metadata column as a one-hot category (categorical)")
