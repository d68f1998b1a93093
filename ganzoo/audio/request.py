"""A conditional model's request for a song: the features (or descriptors) measured from its audio where the
model takes them, the user's ``--features`` where given, and the model's training median for every other
continuous feature (the perceptual ones have no estimator here), each said."""

from __future__ import annotations

from typing import Any

from ganzoo.api.errors import GanzooError
from ganzoo.audio.features import AUDIO_DESCRIPTORS, MEASURED, SongFeatures
from ganzoo.engine.conditioning import UNCONDITIONAL
from ganzoo.engine.sampling import Sampler


def check_takes_audio(sampler: Sampler) -> None:
    """Refuse, before any cover is made, a model none of whose conditions a song's audio measures."""
    if not sampler.conditions:
        raise GanzooError(f"--audio: {UNCONDITIONAL}")
    columns = [column for condition in sampler.conditions.values() for column in condition.columns]
    if not set(columns) & {*MEASURED, *AUDIO_DESCRIPTORS}:
        raise GanzooError(f"--audio: this model takes {', '.join(columns)}; none is measured from audio "
                          f"({', '.join(MEASURED)}, or the audio descriptors): give its features with --features "
                          "instead")


def wants_descriptors(sampler: Sampler) -> bool:
    """Whether the model takes audio descriptors (measuring them costs more than the features)."""
    return any(set(condition.columns) & set(AUDIO_DESCRIPTORS) for condition in sampler.conditions.values())


def song_request(sampler: Sampler, song: SongFeatures, given: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The request for ``song`` and one line saying what was measured and where each value came from."""
    summary = sampler.summary or {}
    request, measured, median, clipped, described = dict(given), [], [], [], 0
    for condition in sampler.conditions.values():
        if condition.kind != "continuous":
            continue
        for column in condition.columns:
            if column in given:
                continue
            spread = summary.get(column, {})
            if column in song.values:
                value = song.values[column]
                if spread and not spread["low"] <= value <= spread["high"]:
                    clipped.append(f"{column} {value:g} to {min(max(value, spread['low']), spread['high']):g}")
                    value = min(max(value, spread["low"]), spread["high"])
                request[column] = value
                if column in AUDIO_DESCRIPTORS:
                    described += 1
                else:
                    measured.append(f"{column} {value:g}")
            elif "median" in spread:
                request[column] = spread["median"]
                median.append(f"{column} {spread['median']:g}")
    if described:
        measured.append(f"{described} audio descriptors")
    parts = [f"measured {', '.join(measured)}"]
    if median:
        parts.append(f"training median {', '.join(median)}")
    if given:
        parts.append(f"given {', '.join(f'{k} {v}' for k, v in given.items())}")
    if clipped:
        parts.append(f"clipped to the training range: {', '.join(clipped)}")
    return request, f"{song.describe()}; {'; '.join(parts)}"
