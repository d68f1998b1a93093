"""Songs in: the features of an audio file, measured on this machine (``ganzoo generate --audio``)."""

from ganzoo.audio.features import MEASURED, SongFeatures, song_features, song_files

__all__ = ["MEASURED", "SongFeatures", "song_features", "song_files"]
