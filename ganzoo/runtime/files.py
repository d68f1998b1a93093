"""Writing to disk without losing anything, and only where the user said: a lock per run folder, files and folders
built beside their target and renamed into place, output paths checked before any work starts, and no symbolic
link inside a folder followed (a run folder received from someone else never makes ganzoo write or read outside
it)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from ganzoo.api.errors import GanzooError

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
        handle = open_regular(self.folder / LOCK_FILE, "a+")
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


def remove_if_only_locked(folder: str | Path) -> None:
    """Remove ``folder`` if it holds nothing but ganzoo's lock file (a run that failed before writing anything)."""
    folder = Path(folder)
    try:
        if [entry.name for entry in folder.iterdir()] == [LOCK_FILE]:
            (folder / LOCK_FILE).unlink()
            folder.rmdir()
    except OSError:
        pass


def describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"{holder['purpose']} by pid {holder['pid']} on {holder['host']} since {holder['since']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"


def cache_root() -> Path:
    """Where ganzoo caches prepared stores and reference features: $GANZOO_CACHE or ~/.cache/ganzoo."""
    return Path(os.environ.get("GANZOO_CACHE", Path.home() / ".cache" / "ganzoo"))


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


def open_regular(path: str | Path, mode: str = "r", encoding: str | None = "utf-8"):
    """``open(path, mode)`` for a text mode ("r", "a", "a+") or "rb" (with ``encoding`` None), but never through a
    symbolic link and only onto a regular file (a planted FIFO, device or folder is refused too): a GanzooError
    otherwise."""
    path = Path(path)
    flags = {"r": os.O_RDONLY, "rb": os.O_RDONLY, "a": os.O_WRONLY | os.O_APPEND | os.O_CREAT,
             "a+": os.O_RDWR | os.O_APPEND | os.O_CREAT}[mode]
    try:
        descriptor = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise GanzooError(f"refusing to open {path}: it is a symbolic link, and ganzoo follows none inside a "
                              "folder (remove it)") from None
        if error.errno == errno.ENXIO:
            raise GanzooError(f"refusing to open {path}: it is not a regular file (remove it)") from None
        raise GanzooError(f"cannot open {path}: {error.strerror}") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise GanzooError(f"refusing to open {path}: it is not a regular file (remove it)")
    os.set_blocking(descriptor, True)
    return open(descriptor, mode, encoding=encoding)


def check_no_link(path: str | Path, kind: str = "file") -> Path:
    """Refuse ``path`` if it is a symbolic link, or exists as something other than a ``kind`` ("file" or
    "folder"); nothing at ``path`` is fine."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return path
    if stat.S_ISLNK(mode):
        raise GanzooError(f"refusing to use {path}: it is a symbolic link, and ganzoo follows none inside a folder "
                          "(remove it)")
    if not (stat.S_ISDIR(mode) if kind == "folder" else stat.S_ISREG(mode)):
        raise GanzooError(f"refusing to use {path}: it is not a {kind} (remove it)")
    return path


def check_folder_entries(folder: str | Path, files: tuple[str, ...], folders: tuple[str, ...]) -> None:
    """Before writing into ``folder``: refuse it if one of the ``files`` or ``folders`` ganzoo writes there, or
    anything inside those folders, is a symbolic link (or of the wrong kind), so that a folder received from
    someone else is refused at once instead of after the work."""
    folder = Path(folder)
    for name in files:
        check_no_link(folder / name)
    for name in folders:
        inside = check_no_link(folder / name, "folder")
        for entry in (inside.iterdir() if inside.is_dir() else ()):
            if entry.is_symlink():
                check_no_link(entry)


def make_subfolder(folder: str | Path) -> Path:
    """``mkdir`` of a folder inside one ganzoo writes to, refusing a symbolic link (or a file) in its place."""
    make_folder(check_no_link(folder, "folder"))
    return Path(folder)


@contextmanager
def atomic_file(path: str | Path, sync: bool = False):
    """A binary file to write ``path``'s new contents into: made beside it and renamed into place when the block
    ends without an error (removed otherwise), so ``path`` holds the old or the new contents, never half, and a
    symbolic link at ``path`` is replaced, never written through. ``sync`` flushes it to disk first."""
    path = Path(path)
    check_no_link(path)
    handle, temporary = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            yield f
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_atomically(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through ``atomic_file``."""
    with atomic_file(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def current_umask() -> int:
    """This process's umask (read from /proc where it can be, so that no thread sees it changed)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes it 0700; a store is as readable as the user's files
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
