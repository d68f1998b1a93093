"""Songs in: the features of an audio file, measured on this machine (``ganzoo generate --audio``), and its
descriptors for models trained on audio (``ganzoo data prepare --audio``)."""

from ganzoo.audio.features import AUDIO_DESCRIPTORS, MEASURED, SongFeatures, song_features, song_files

__all__ = ["AUDIO_DESCRIPTORS", "MEASURED", "SongFeatures", "song_features", "song_files"]
