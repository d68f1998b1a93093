"""Audio features of a song file, computed on this machine: the ones of Spotify's that have a physical
definition, on Spotify's scales. ``tempo`` in beats per minute, ``loudness`` as integrated loudness in dB
(ITU-R BS.1770, pyloudnorm), ``key`` as the tonic's pitch class (0 = C), ``mode`` (1 major, 0 minor) and
``duration_ms``. The perceptual ones (energy, valence, danceability, ...) have no validated estimator here and
are never guessed.

With ``descriptors``, a song is also summarised as ``AUDIO_DESCRIPTORS``, a fixed-length vector for models trained
on their own audio (the ``audio-descriptors`` condition): the measured tempo, loudness, mode and key (as a point on
the pitch-class circle), the onset rate, and the means of 13 MFCCs, 12 chroma bins and 7 spectral-contrast bands
over the middle ``TEMPO_SECONDS``.

Files are decoded by libsndfile (soundfile: WAV, FLAC, OGG, MP3, AIFF, ...) in blocks, so memory is bounded
whatever the file: the first ``MAX_SECONDS`` are analysed, channels beyond two are mixed into one, and every
block is resampled (soxr) before the next is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganzoo.api.errors import GanzooError

MEASURED = ("tempo", "loudness", "key", "mode", "duration_ms")
"""The features ``song_features`` measures."""
MAX_SECONDS = 600
"""Audio analysed: the first ten minutes (a longer file's duration is still its whole length)."""
MIN_SECONDS = 2.0
LOUDNESS_RATE = 48000
"""BS.1770's filters are specified at 48 kHz; loudness is measured on the audio resampled to it."""
ANALYSIS_RATE = 22050
HOP = 128
"""Onset envelope frames are HOP / ANALYSIS_RATE = 5.8 ms apart; the tempo is refined between them."""
TEMPO_SECONDS = 120
"""The fine onset envelope is taken over the middle two minutes: bounded time and memory for any length."""
BLOCK_SECONDS = 10
SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")
MAJOR = np.array([5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0])
MINOR = np.array([5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0])
"""Temperley's key profiles (1999, from the Kostka-Payne corpus): how well each pitch class fits a major and a
minor key on C. Krumhansl and Kessler's read a bare major triad as the minor key on its third."""
CHROMA_FFT = 8192
"""Chroma from 0.37 s windows: 2.7 Hz bins, which tell a bass note's semitones apart."""
FASTER_LEVEL = 0.8
"""A tempo twice librosa's wins when the onset envelope repeats at half the beat at least this strongly: a
click track at 180 BPM is not one at 90."""
NOTES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MFCCS, CONTRAST_BANDS = 13, 6
AUDIO_DESCRIPTORS = ("audio_tempo", "audio_loudness", "audio_mode", "audio_key_x", "audio_key_y",
                     "audio_onset_rate", *(f"audio_mfcc_{i}" for i in range(1, MFCCS + 1)),
                     *(f"audio_chroma_{note}" for note in NOTES),
                     *(f"audio_contrast_{i}" for i in range(1, CONTRAST_BANDS + 2)))
"""The ``audio-descriptors`` columns ``song_features(..., descriptors=True)`` adds, in their order."""


@dataclass(frozen=True)
class SongFeatures:
    """A song's measured features (``MEASURED``), and how much of it was analysed."""

    path: Path
    values: dict[str, float]
    analysed_seconds: float

    def describe(self) -> str:
        tempo, loudness, key, mode, duration = (self.values[name] for name in MEASURED)
        cut = f" (first {self.analysed_seconds:.0f} s analysed)" if self.analysed_seconds * 1000 < duration - 1 else ""
        return (f"tempo {tempo:.1f} BPM, loudness {loudness:.1f} dB, key {NOTES[int(key)]} "
                f"{'major' if mode else 'minor'}, {duration / 1000:.0f} s{cut}")


def unreadable(path: Path, why: str) -> GanzooError:
    return GanzooError(f"{path}: {why}")


def decode(path: Path) -> tuple[np.ndarray, float, float]:
    """(audio at ``LOUDNESS_RATE``, float32 (N, channels <= 2), the file's duration in seconds, its rate)."""
    import soundfile
    import soxr

    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        raise unreadable(path, f"not audio ganzoo can read ({str(error).strip() or type(error).__name__})") from None
    if info.samplerate <= 0 or info.channels <= 0 or info.frames <= 0:
        raise unreadable(path, "holds no audio")
    duration = info.frames / info.samplerate
    if duration < MIN_SECONDS:
        raise unreadable(path, f"{duration:.3f} s of audio; at least {MIN_SECONDS:g} s are needed to measure a tempo")
    kept = min(info.channels, 2) if info.channels <= 2 else 1
    stream = soxr.ResampleStream(info.samplerate, LOUDNESS_RATE, kept, dtype="float32")
    parts = []
    try:
        for block in soundfile.blocks(str(path), blocksize=info.samplerate * BLOCK_SECONDS, dtype="float32",
                                      always_2d=True, frames=min(info.frames, info.samplerate * MAX_SECONDS)):
            block = block if info.channels <= 2 else block.mean(axis=1, keepdims=True)
            parts.append(stream.resample_chunk(np.ascontiguousarray(block)))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        raise unreadable(path, f"damaged or truncated ({str(error).strip() or type(error).__name__})") from None
    parts.append(stream.resample_chunk(np.zeros((0, kept), np.float32), last=True))
    audio = np.concatenate(parts)
    if len(audio) < MIN_SECONDS * LOUDNESS_RATE * 0.9:
        raise unreadable(path, "damaged or truncated: far less audio than its header says")
    if not np.isfinite(audio).all():
        raise unreadable(path, "holds samples that are not numbers")
    return audio, duration, len(audio) / LOUDNESS_RATE


def integrated_loudness(audio: np.ndarray, path: Path) -> float:
    """BS.1770 integrated loudness (LUFS) of ``audio`` at ``LOUDNESS_RATE``."""
    import pyloudnorm

    loudness = pyloudnorm.Meter(LOUDNESS_RATE).integrated_loudness(audio)
    if not np.isfinite(loudness):
        raise unreadable(path, "silent: it has no loudness, tempo or key to measure")
    return float(loudness)


def tempo(mono: np.ndarray) -> float:
    """Beats per minute: librosa's estimate (its prior picks the metrical level), refined to the autocorrelation
    peak of a finer onset envelope near it (of the middle ``TEMPO_SECONDS``), interpolated between frames
    (librosa's own is quantised to its frames: a 120 BPM click track reads as 117.5 at its default hop)."""
    import librosa

    coarse = float(librosa.feature.tempo(y=mono, sr=ANALYSIS_RATE)[0])
    middle = max(0, (len(mono) - TEMPO_SECONDS * ANALYSIS_RATE) // 2)
    excerpt = mono[middle:middle + TEMPO_SECONDS * ANALYSIS_RATE]
    envelope = librosa.onset.onset_strength(y=excerpt, sr=ANALYSIS_RATE, hop_length=HOP, n_fft=1024)
    centred = envelope - envelope.mean()
    spectrum = np.fft.rfft(centred, n=2 * len(centred))
    autocorrelation = np.fft.irfft(spectrum * np.conj(spectrum))[:len(centred)]
    lag = 60 * ANALYSIS_RATE / (HOP * coarse)
    peak = peak_near(autocorrelation, lag)
    if peak is None:
        return coarse
    faster = peak_near(autocorrelation, peak[0] / 2)
    if faster is not None and faster[1] >= FASTER_LEVEL * peak[1] and coarse * 2 <= 220:
        peak = faster
    return 60 * ANALYSIS_RATE / (HOP * peak[0])


def peak_near(autocorrelation: np.ndarray, lag: float) -> tuple[float, float] | None:
    """The autocorrelation's highest point within 6 % of ``lag``, interpolated between lags (a parabola through
    the three around it): (lag, height), or None outside the envelope."""
    low, high = int(lag * 0.94), int(np.ceil(lag * 1.06)) + 1
    if high + 1 >= len(autocorrelation) or low < 2:
        return None
    peak = low + int(np.argmax(autocorrelation[low:high]))
    before, at, after = autocorrelation[peak - 1:peak + 2]
    curvature = before - 2 * at + after
    offset = 0.5 * (before - after) / curvature if curvature < 0 else 0.0
    return peak + offset, float(at)


def mean_chroma(mono: np.ndarray) -> np.ndarray:
    """The song's 12 chroma bins (C first), averaged over time."""
    import librosa

    chroma = librosa.feature.chroma_stft(y=mono, sr=ANALYSIS_RATE, n_fft=CHROMA_FFT, hop_length=CHROMA_FFT // 2)
    return chroma.mean(axis=1)


def key_and_mode(chroma: np.ndarray) -> tuple[int, int]:
    """The key whose profile best correlates with the song's mean chroma: (pitch class, mode)."""
    scores = [(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1], tonic, mode)
              for mode, profile in ((1, MAJOR), (0, MINOR)) for tonic in range(12)]
    _, tonic, mode = max(scores, key=lambda entry: (np.nan_to_num(entry[0], nan=-2.0), entry[2]))
    return tonic, mode


def song_features(path: str | Path, descriptors: bool = False) -> SongFeatures:
    """Measure a song file's ``MEASURED`` features (and its ``AUDIO_DESCRIPTORS`` too, if asked); a file that
    cannot be measured is one GanzooError naming it."""
    import soxr

    path = Path(path)
    if not path.is_file():
        raise unreadable(path, "no such file")
    audio, duration, analysed = decode(path)
    loudness = integrated_loudness(audio, path)
    mono = soxr.resample(audio.mean(axis=1), LOUDNESS_RATE, ANALYSIS_RATE)
    chroma = mean_chroma(mono)
    tonic, mode = key_and_mode(chroma)
    values = {"tempo": tempo(mono), "loudness": loudness, "key": float(tonic), "mode": float(mode),
              "duration_ms": duration * 1000}
    if descriptors:
        values |= summary(mono, values, chroma)
    return SongFeatures(path, values, analysed)


def summary(mono: np.ndarray, measured: dict[str, float], chroma: np.ndarray) -> dict[str, float]:
    """The ``AUDIO_DESCRIPTORS`` of a song: its mono audio at ``ANALYSIS_RATE``, measured features and chroma."""
    import librosa

    middle = max(0, (len(mono) - TEMPO_SECONDS * ANALYSIS_RATE) // 2)
    excerpt = mono[middle:middle + TEMPO_SECONDS * ANALYSIS_RATE]
    power = np.abs(librosa.stft(excerpt, n_fft=2048, hop_length=512)) ** 2
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=ANALYSIS_RATE)),
                                n_mfcc=MFCCS).mean(axis=1)
    contrast = librosa.feature.spectral_contrast(S=np.sqrt(power), sr=ANALYSIS_RATE,
                                                 n_bands=CONTRAST_BANDS).mean(axis=1)
    onsets = librosa.onset.onset_detect(y=excerpt, sr=ANALYSIS_RATE, units="time")
    angle = 2 * np.pi * measured["key"] / 12
    values = [measured["tempo"], measured["loudness"], measured["mode"], np.cos(angle), np.sin(angle),
              len(onsets) / (len(excerpt) / ANALYSIS_RATE), *mfcc, *chroma / max(chroma.max(), 1e-12), *contrast]
    return dict(zip(AUDIO_DESCRIPTORS, map(float, values)))


def check_audio_libraries() -> None:
    """Refuse, with the command that installs them, to measure songs without the audio extra."""
    try:
        import librosa  # noqa: F401
        import pyloudnorm  # noqa: F401
        import soundfile  # noqa: F401
        import soxr  # noqa: F401
    except ImportError as error:
        raise GanzooError(f"measuring songs needs the audio extra: pip install -e '.[audio]' ({error.name} is "
                          "missing)") from None


def song_files(paths: list[str | Path]) -> list[Path]:
    """The audio files named: files as given, folders as the audio files they hold (by suffix, sorted)."""
    check_audio_libraries()
    found = []
    for entry in map(Path, paths):
        if entry.is_dir():
            inside = sorted(p for p in entry.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
            if not inside:
                raise GanzooError(f"{entry} holds no audio files ({', '.join(SUFFIXES)})")
            found += inside
        elif entry.exists():
            found.append(entry)
        else:
            raise GanzooError(f"{entry}: no such file or folder")
    return found
