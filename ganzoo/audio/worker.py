"""Songs measured in a worker process while the caller does something else (loads its model): measuring a song
is mostly waiting on librosa's and scipy's imports and on decoding, which a second core does beside torch's."""

from __future__ import annotations

import multiprocessing
import signal
from pathlib import Path
from typing import Iterator

from ganzoo.api.errors import GanzooError
from ganzoo.audio.features import SongFeatures, measured_song


class SongMeasurer:
    """Measures ``paths`` one after another in a worker process: the first song from the moment it is made, the
    rest once ``measured`` has said whether the audio descriptors are wanted too; ``measured`` yields each
    song's features, or its one-line error, in order. A context manager: leaving it stops the worker."""

    def __init__(self, paths: list[Path]):
        context = multiprocessing.get_context("spawn")
        self.count = len(paths)
        self._results, results = context.Pipe(duplex=False)
        wanted, self._wanted = context.Pipe(duplex=False)
        self._process = context.Process(target=measure_songs, args=(list(paths), wanted, results), daemon=True,
                                        name="ganzoo-songs")
        self._process.start()
        results.close()
        wanted.close()

    def measured(self, descriptors: bool) -> Iterator[SongFeatures | GanzooError]:
        """Each song's features (with its descriptors if ``descriptors``) or the error that stopped it."""
        try:
            self._wanted.send(descriptors)
        except BrokenPipeError:  # the worker has ended: said below, at the first song it did not send
            pass
        for _ in range(self.count):
            try:
                result = self._results.recv()
            except EOFError:
                self._process.join()
                raise GanzooError(f"measuring songs stopped: its worker process ended with exit code "
                                  f"{self._process.exitcode}") from None
            yield result

    def close(self) -> None:
        """Stop the worker, measured or not."""
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._results.close()
        self._wanted.close()

    def __enter__(self) -> SongMeasurer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def measure_songs(paths: list[Path], wanted, results) -> None:
    """The worker: measure each song, and once the first is measured wait to hear whether descriptors are wanted.
    A song that fails for any reason is its one-line error and the others go on. Interrupting the command stops
    the worker through its parent, not with a traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    descriptors = None
    for path in paths:
        try:
            song = measured_song(path)
            descriptors = wanted.recv() if descriptors is None else descriptors
            results.send(song.with_descriptors() if descriptors else song.features)
        except GanzooError as error:
            results.send(error)
        except Exception as error:  # a library's failure on this file: said, not the end of the other songs
            results.send(GanzooError(f"{path}: could not be measured ({type(error).__name__}: {error})"))
    results.close()
