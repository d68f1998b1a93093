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
block is resampled (soxr) and fed to the loudness meter before the next is read.
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


def decode(path: Path) -> tuple[np.ndarray, float, float, float]:
    """(the mono audio at ``ANALYSIS_RATE``, float32; its integrated loudness; the file's duration in seconds; the
    seconds analysed). Decoded block by block: each block is resampled to ``LOUDNESS_RATE`` for the loudness meter
    and mixed to mono at ``ANALYSIS_RATE``; no whole song is held at the loudness meter's rate."""
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
    to_meter = soxr.ResampleStream(info.samplerate, LOUDNESS_RATE, kept, dtype="float32")
    to_mono = soxr.ResampleStream(info.samplerate, ANALYSIS_RATE, 1, dtype="float32")
    meter, parts = LoudnessMeter(kept), []

    def add(block: np.ndarray, last: bool = False) -> None:
        meter.add(to_meter.resample_chunk(block, last=last))
        parts.append(to_mono.resample_chunk(np.ascontiguousarray(block.mean(axis=1, keepdims=True)), last=last))

    try:
        for block in soundfile.blocks(str(path), blocksize=info.samplerate * BLOCK_SECONDS, dtype="float32",
                                      always_2d=True, frames=min(info.frames, info.samplerate * MAX_SECONDS)):
            if not np.isfinite(block).all():
                raise unreadable(path, "holds samples that are not numbers")
            add(np.ascontiguousarray(block if info.channels <= 2 else block.mean(axis=1, keepdims=True)))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        raise unreadable(path, f"damaged or truncated ({str(error).strip() or type(error).__name__})") from None
    add(np.zeros((0, kept), np.float32), last=True)
    mono = np.concatenate(parts)[:, 0]
    if len(mono) < MIN_SECONDS * ANALYSIS_RATE * 0.9:
        raise unreadable(path, "damaged or truncated: far less audio than its header says")
    loudness = meter.loudness()
    if not np.isfinite(loudness):
        raise unreadable(path, "silent: it has no loudness, tempo or key to measure")
    return mono, loudness, duration, len(mono) / ANALYSIS_RATE


class LoudnessMeter:
    """BS.1770-4 integrated loudness of audio at ``LOUDNESS_RATE`` fed block by block: pyloudnorm's K-weighting
    filters run over each block (their state carried to the next), the mean square of every 100 ms is kept, and at
    the end the 400 ms blocks (75 % overlap) are gated at -70 LUFS and then 10 LU below their mean. Each of at most
    two channels weighs 1. pyloudnorm's own meter needs the whole song at once and loops over its blocks in
    Python (a second for a 4-minute song here)."""

    STEP = LOUDNESS_RATE // 10

    def __init__(self, channels: int):
        import pyloudnorm

        stages = pyloudnorm.Meter(LOUDNESS_RATE)._filters.values()  # its K-weighting, as its own meter applies it
        self.sections = np.array([[*stage.b, *stage.a] for stage in stages])
        self.state = np.zeros((len(self.sections), 2, channels))
        self.pending = np.zeros((0, channels))
        self.powers = [np.zeros((0, channels))]

    def add(self, block: np.ndarray) -> None:
        """K-weight ``block`` (samples, channels) and keep the mean square of each whole 100 ms so far."""
        from scipy.signal import sosfilt

        if not len(block):  # a resampler's last flush may hold nothing (a file already at LOUDNESS_RATE)
            return

        weighted, self.state = sosfilt(self.sections, block.astype(np.float64), axis=0, zi=self.state)
        squares = np.concatenate([self.pending, weighted ** 2])
        whole = len(squares) // self.STEP * self.STEP
        self.powers.append(squares[:whole].reshape(-1, self.STEP, squares.shape[1]).mean(axis=1))
        self.pending = squares[whole:]

    def loudness(self) -> float:
        """Integrated loudness in LUFS; -inf when no 400 ms block is louder than -70 LUFS."""
        steps = np.concatenate(self.powers)
        if len(steps) < 4:
            return -np.inf
        power = np.lib.stride_tricks.sliding_window_view(steps, 4, axis=0).mean(axis=-1)
        with np.errstate(divide="ignore"):
            block_loudness = -0.691 + 10 * np.log10(power.sum(axis=1))
        loud = block_loudness > -70
        if not loud.any():
            return -np.inf
        relative = -0.691 + 10 * np.log10(power[loud].mean(axis=0).sum()) - 10
        kept = loud & (block_loudness > relative)
        return float(-0.691 + 10 * np.log10(power[kept].mean(axis=0).sum()))


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
    song = measured_song(path)
    return song.with_descriptors() if descriptors else song.features


@dataclass(frozen=True)
class MeasuredSong:
    """A song's ``MEASURED`` features, with the mono audio and chroma its descriptors are summarised from."""

    features: SongFeatures
    mono: np.ndarray
    chroma: np.ndarray

    def with_descriptors(self) -> SongFeatures:
        """The features with the song's ``AUDIO_DESCRIPTORS`` added."""
        values = self.features.values | summary(self.mono, self.features.values, self.chroma)
        return SongFeatures(self.features.path, values, self.features.analysed_seconds)


def measured_song(path: str | Path) -> MeasuredSong:
    """Decode a song file and measure its ``MEASURED`` features; a file that cannot be measured is one GanzooError
    naming it."""
    path = Path(path)
    if not path.is_file():
        raise unreadable(path, "no such file")
    mono, loudness, duration, analysed = decode(path)
    chroma = mean_chroma(mono)
    tonic, mode = key_and_mode(chroma)
    values = {"tempo": float(tempo(mono)), "loudness": loudness, "key": float(tonic), "mode": float(mode),
              "duration_ms": duration * 1000}
    return MeasuredSong(SongFeatures(path, values, analysed), mono, chroma)


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
    """Refuse, with the command that installs them, to measure songs without the audio extra. librosa and
    pyloudnorm (pure Python, a second of imports) are only looked for; the libraries with compiled parts are
    imported."""
    from importlib.util import find_spec

    try:
        import soundfile  # noqa: F401
        import soxr  # noqa: F401
    except ImportError as error:
        missing = error.name
    else:
        missing = next((name for name in ("librosa", "pyloudnorm") if find_spec(name) is None), None)
    if missing:
        raise GanzooError(f"measuring songs needs the audio extra: pip install -e '.[audio]' ({missing} is "
                          "missing)")


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
