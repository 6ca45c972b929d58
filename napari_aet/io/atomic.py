"""Atomic file writing: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import tempfile
import time
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


#: A temporary file of a dead process is removed once it is this old (seconds); the margin
#: covers a saver on another machine sharing the folder.
STALE_AGE_S = 60.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_temporaries(path, suffix: str | None = None) -> list[Path]:
    """Remove the temporary files of :func:`atomic_write` for ``path`` left by a process
    that was killed (its process id no longer runs and the file is older than
    :data:`STALE_AGE_S`); returns the files removed."""
    path = Path(path)
    suffix = suffix or path.suffix or ".tmp"
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)-\w+" + re.escape(suffix))
    removed = []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*"):
        match = pattern.fullmatch(candidate.name)
        try:
            if (match and not _alive(int(match.group(1)))
                    and time.time() - candidate.stat().st_mtime > STALE_AGE_S):
                candidate.unlink()
                removed.append(candidate)
        except OSError:
            continue
    return removed


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path, suffix: str | None = None):
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left as it was, so a
    crash or a cancel never leaves a half-written file; the rename is made durable by an
    fsync of the folder. The temporary name (``.<name>.<pid>-<random><suffix>``) keeps the
    target's suffix (libraries such as mrcfile and scipy.io look at it); those of killed
    processes are removed by the next save of the same file. The file gets the permissions
    of the file it replaces, or the usual ones for a new file (0666 less umask).
    """
    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"folder {path.parent} does not exist")
    suffix = suffix or path.suffix or ".tmp"
    remove_stale_temporaries(path, suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=suffix,
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_UMASK
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
        _fsync_folder(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
