"""Covers paired with their songs by name (``ganzoo data prepare COVERS --audio SONGS``): a cover's song is the
audio file in SONGS with the same name less its suffix (``a/b/cover1.jpg`` pairs with ``cover1.flac``). Each
song's ``AUDIO_DESCRIPTORS`` are computed once, in worker processes, and join its cover's row. A cover without a
song keeps blank descriptors (the condition encodes it as the training mean); songs without a cover and songs
that cannot be measured are reported, one line each, never dropped silently."""

from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path

from tqdm import tqdm

from ganzoo.api.errors import GanzooError
from ganzoo.audio.features import AUDIO_DESCRIPTORS, SUFFIXES, check_audio_libraries, song_features

DESCRIPTORS_VERSION = 1
SHOWN = 5
"""Names listed in a report line before "and N more"."""


def song_index(folder: str | Path) -> dict[str, Path]:
    """The audio files directly in ``folder`` by name less suffix; two files of one name are an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GanzooError(f"--audio {folder}: no such folder")
    songs: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in SUFFIXES or path.name.startswith(".") or not path.is_file():
            continue
        if path.stem in songs:
            raise GanzooError(f"--audio {folder}: {songs[path.stem].name} and {path.name} are songs of one name; "
                              "which cover is whose?")
        songs[path.stem] = path
    if not songs:
        raise GanzooError(f"--audio {folder} holds no audio files ({', '.join(SUFFIXES)})")
    return songs


def songs_key(songs: dict[str, Path]) -> str:
    """A digest of the songs' names, sizes and times, so a store is prepared again when they change."""
    digest = hashlib.sha256(f"descriptors:{DESCRIPTORS_VERSION}".encode())
    for name, path in songs.items():
        info = path.stat()
        digest.update(f"{name}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _describe(path: Path) -> tuple[dict[str, float] | None, str | None]:
    try:
        values = song_features(path, descriptors=True).values
    except GanzooError as error:
        return None, str(error)
    return {name: values[name] for name in AUDIO_DESCRIPTORS}, None


def add_descriptors(songs: dict[str, Path], jobs: list[tuple[str, dict[str, str]]], workers: int,
                    progress: bool) -> dict:
    """Give every job's row the descriptors of its cover's song (blanks where it has none or it cannot be
    measured); returns the report of the pairing."""
    check_audio_libraries()
    paired = [(row, songs[Path(path).stem]) for path, row in jobs if Path(path).stem in songs]
    covered = {Path(path).stem for path, _ in jobs}
    lonely_covers = [Path(path).name for path, _ in jobs if Path(path).stem not in songs]
    for _, row in jobs:
        row.update(dict.fromkeys(AUDIO_DESCRIPTORS, ""))
    unmeasured: dict[str, str] = {}
    pool = multiprocessing.Pool(workers) if workers > 1 and len(paired) > 8 else None
    try:
        results = pool.imap(_describe, [song for _, song in paired]) if pool else map(
            _describe, [song for _, song in paired])
        for (row, song), (values, why) in tqdm(zip(paired, results), total=len(paired), desc="songs", unit="song",
                                                disable=not progress):
            if values is None:
                unmeasured[song.name] = why
            else:
                row.update({name: repr(value) for name, value in values.items()})
    finally:
        if pool:
            pool.close()
            pool.join()
    return {"folder": str(next(iter(songs.values())).parent), "songs": len(songs), "paired": len(paired),
            "measured": len(paired) - len(unmeasured), "unmeasured": unmeasured,
            "covers_without_song": lonely_covers,
            "songs_without_cover": sorted(path.name for name, path in songs.items() if name not in covered)}


def describe_pairing(report: dict) -> list[str]:
    """The pairing's report as lines: counts, then each song that could not be measured."""
    lines = [f"songs {report['folder']}: {report['paired']} of the covers paired with a song, {report['measured']} "
             f"measured"]
    for kind, names, fate in (("cover", report["covers_without_song"], "without a song (kept, descriptors blank)"),
                              ("song", report["songs_without_cover"], "without a cover (not used)")):
        if names:
            more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
            lines.append(f"{len(names)} {kind}{'s' * (len(names) != 1)} {fate}: {', '.join(names[:SHOWN])}{more}")
    lines += [f"song not measured (its cover kept, descriptors blank): {why}" for why in report["unmeasured"].values()]
    return lines
