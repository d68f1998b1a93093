"""Writing to disk without losing anything: a lock per run folder, folders built beside their target and renamed
into place, and output paths checked before any work starts."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from ganzoo.errors import GanzooError

LOCK_FILE = ".ganzoo.lock"
PARTIAL_MARKER = ".ganzoo-partial"

try:
    import fcntl
except ImportError:  # not POSIX: folders are not locked
    fcntl = None


class FolderLock:
    """An exclusive lock on a folder, held while a process writes into it (``flock``: the kernel releases it
    when the process ends, however it ends). The lock file says who holds it, for the message a second process
    gets."""

    def __init__(self, folder: str | Path, purpose: str):
        self.folder, self.purpose = Path(folder), purpose
        self.handle = None

    def acquire(self) -> "FolderLock":
        make_folder(self.folder)
        path = self.folder / LOCK_FILE
        handle = open(path, "a+")
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = describe_holder(handle.read())
                handle.close()
                raise GanzooError(f"{self.folder} is in use by another ganzoo process ({holder}); wait for it to "
                                  f"finish or choose another folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose,
                                 "command": " ".join(sys.argv[:4]), "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        handle.flush()
        self.handle = handle
        return self

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing the descriptor drops the flock
            self.handle = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"{holder['purpose']} by pid {holder['pid']} on {holder['host']} since {holder['since']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"


def make_folder(folder: str | Path) -> Path:
    """``mkdir -p``; a path blocked by a file or without permission is a one-line GanzooError."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise GanzooError(f"cannot create folder {folder}: a file is in the way") from None
    except OSError as error:
        raise GanzooError(f"cannot create folder {folder}: {error.strerror}") from None
    return folder


def writable_file(path: str | Path) -> Path:
    """Check, before any work, that ``path`` can be written: its folder exists or can be made, and it is not a
    folder itself."""
    path = Path(path)
    make_folder(path.parent)
    if path.is_dir():
        raise GanzooError(f"cannot write {path}: it is a folder")
    return path


def staging_folder(target: Path) -> Path:
    """A new hidden folder beside ``target`` to build its replacement in, marked as ganzoo's own. Staging
    folders left by killed processes (marked, and their process gone) are removed first."""
    make_folder(target.parent)
    for leftover in target.parent.glob(f".{target.name}.*.partial"):
        marker = leftover / PARTIAL_MARKER
        try:
            pid = int(marker.read_text())
        except (OSError, ValueError):
            continue  # not ours: never touched
        if not process_alive(pid):
            shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    (staging / PARTIAL_MARKER).write_text(str(os.getpid()))
    return staging


def publish_folder(staging: Path, target: Path) -> None:
    """Move a finished staging folder into place; ``target`` must not exist or be an empty folder."""
    (staging / PARTIAL_MARKER).unlink()
    os.replace(staging, target)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
