"""Short audio clips paired with synthcovers: each clip is made from the same features that draw its cover, so
that a model conditioned on audio (``audio-descriptors``) can be trained and checked without anyone's music.

============== ============================== =====================================================
feature        drives in the clip             its cover
============== ============================== =====================================================
danceability   the beat: a kick drum          tempo = 80 + 100 * danceability BPM; the motif repeats more
valence        the harmony: four chords       round(4 * valence) of them major, the rest minor; the hue
energy         the timbre of the chords       1 + round(7 * energy) harmonics; the saturation
loudness       the level                      integrated loudness (BS.1770) of loudness dB; the brightness
============== ============================== =====================================================

The key (a random root), the progression's roots and the order of major and minor chords are random, seeded.
"""

from __future__ import annotations

import numpy as np

RATE = 22050
SECONDS = 4.0
CHORDS = 4
LEVELLING_PASSES = 3
"""Gain, clip to full scale, measure again: loud clips reach their level despite the clipping."""
PROGRESSION = (0, 5, 7, 9, 2, 4)
"""Scale degrees (in semitones above the key) the chords' roots are drawn from."""


def beat_tempo(danceability: float) -> float:
    return 80.0 + 100.0 * float(np.clip(danceability, 0, 1))


def clip(features: dict[str, float], seed: int, seconds: float = SECONDS, rate: int = RATE) -> np.ndarray:
    """One clip (float32, mono, ``seconds`` at ``rate``) for one row of features."""
    import pyloudnorm

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    key = 48 + int(rng.integers(0, 12))
    majors = int(round(CHORDS * float(np.clip(features["valence"], 0, 1))))
    qualities = rng.permutation([1] * majors + [0] * (CHORDS - majors))
    roots = rng.choice(PROGRESSION, CHORDS, replace=True)
    harmonics = 1 + int(round(7 * float(np.clip(features["energy"], 0, 1))))
    chord_length = len(t) // CHORDS
    music = np.zeros(len(t))
    for index, (root, major) in enumerate(zip(roots, qualities)):
        span = slice(index * chord_length, (index + 1) * chord_length)
        local = t[span] - t[span][0]
        envelope = np.minimum(local / 0.02, 1.0) * np.exp(-local * 0.8)
        for interval in (0, 4 if major else 3, 7):
            frequency = 440.0 * 2 ** ((key + root + interval - 69) / 12)
            for k in range(1, harmonics + 1):
                music[span] += envelope * np.sin(2 * np.pi * k * frequency * local) / k
    beat = 60.0 / beat_tempo(features["danceability"])
    since = np.mod(t, beat)
    kick = np.sin(2 * np.pi * (50 * since + 60 * (1 - np.exp(-since * 30)) / 30)) * np.exp(-since * 18)
    music = 0.25 * music / np.abs(music).max() + 0.6 * kick
    meter, levelled = pyloudnorm.Meter(rate), music
    for _ in range(LEVELLING_PASSES):
        levelled = np.clip(levelled * 10 ** ((float(features["loudness"]) - meter.integrated_loudness(levelled)) / 20),
                           -1.0, 1.0)
    return levelled.astype(np.float32)
