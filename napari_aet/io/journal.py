"""Autosave journal for manual curation: a snapshot plus an append-only log of edits.

Files of one session (for a journal path ``NAME.journal.jsonl``):

* ``NAME.journal.jsonl``: one JSON object per line, appended and fsync'ed after every do /
  undo / redo of an :class:`~napari_aet.core.curation.AtomModel`
  (``{"revision": r, "action": "do", "label": ..., "edits": [...]}``, or
  ``{"revision": r, "action": "undo"}`` / ``"redo"``);
* ``NAME.snapshot.npz``: the whole model (:meth:`AtomModel.to_state`), written atomically
  with its revision;
* ``NAME.session.json``: the layer name, session id, process and start time;
* ``NAME.lock``: held (``flock``) while the session is live; the kernel drops it when the
  process ends, even by SIGKILL, so a live session's files are never touched by another.

:meth:`Journal.start` gives every session its own ``NAME`` (``<layer>.<time>-<pid>-<random>``),
so two sessions on layers of the same name never share files. :func:`restore_session` loads
the snapshot and replays the journal lines with a higher revision; it stops at the first line
that is cut, not JSON or does not replay, and reports the lines it skipped. A journal that
cannot be written (read-only folder, full disk) refuses further edits (a model guard) until
the unwritten lines are written.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_aet.core.curation import AtomModel
from napari_aet.io.atomic import atomic_write

JOURNAL_SUFFIX = ".journal.jsonl"
SNAPSHOT_SUFFIX = ".snapshot.npz"
SESSION_SUFFIX = ".session.json"
LOCK_SUFFIX = ".lock"


class JournalError(RuntimeError):
    """The autosave cannot be written or read: the message names the file and the cause."""


def default_folder() -> Path:
    """Autosave folder when none is given: ``$NAPARI_AET_AUTOSAVE``, else
    ``~/.napari-aet/autosave``."""
    env = os.environ.get("NAPARI_AET_AUTOSAVE", "").strip()
    return Path(env) if env else Path.home() / ".napari-aet" / "autosave"


def safe_name(name: str) -> str:
    """A layer name as a file name (spaces and symbols as ``_``)."""
    return re.sub(r"[^\w.-]+", "_", str(name))


def _paths(path) -> tuple[Path, Path]:
    path = Path(path)
    name = path.name
    for suffix in (JOURNAL_SUFFIX, SNAPSHOT_SUFFIX, SESSION_SUFFIX, LOCK_SUFFIX):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return path.with_name(name + JOURNAL_SUFFIX), path.with_name(name + SNAPSHOT_SUFFIX)


def journal_paths(path) -> tuple[Path, Path]:
    """``(journal, snapshot)`` paths for a journal name (with or without its suffix)."""
    return _paths(path)


def _stem(path) -> Path:
    journal, _ = _paths(path)
    return journal.with_name(journal.name[: -len(JOURNAL_SUFFIX)])


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to the journal")


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on an open file without waiting; False when another holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def is_live(path) -> bool:
    """True when the session of ``path`` is held open by a process (its lock is taken)."""
    lock = _stem(path).with_name(_stem(path).name + LOCK_SUFFIX)
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        return not _try_lock(fd)
    finally:
        os.close(fd)  # closing the descriptor drops a lock taken just now


def _write_all(fd: int, data: bytes) -> None:
    """Append ``data`` and fsync; on failure cut the file back to where it was."""
    start = os.lseek(fd, 0, os.SEEK_END)
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError:
        try:
            os.ftruncate(fd, start)
        except OSError:
            pass
        raise


class Journal:
    """Autosave of an :class:`AtomModel` to ``path`` (see the module docstring).

    Parameters
    ----------
    path : journal file name; ``.journal.jsonl`` is added when missing.
    model : the model to follow; a snapshot is written at once and every later edit is
        appended to the journal.
    snapshot_every : write a fresh snapshot (and start an empty journal) after this many
        journal lines, so restoring stays fast in long sessions.
    layer : name of the layer curated (listed by :func:`list_sessions`; default the file name).
    on_error : called with a :class:`JournalError` when an edit could not be written.

    Raises :class:`JournalError` when the files cannot be created (nothing is followed then)
    or when another live session holds ``path``. The files of an earlier session that ended
    at ``path`` are renamed to ``NAME.<time>.*`` first and listed in :attr:`archived`.
    """

    def __init__(self, path, model: AtomModel, snapshot_every: int = 500, layer: str = "",
                 on_error=None):
        self.journal_path, self.snapshot_path = _paths(path)
        stem = _stem(path)
        self.info_path = stem.with_name(stem.name + SESSION_SUFFIX)
        self.lock_path = stem.with_name(stem.name + LOCK_SUFFIX)
        folder = self.journal_path.parent
        if not folder.is_dir():
            raise FileNotFoundError(f"autosave folder {folder} does not exist")
        self.model = model
        self.snapshot_every = int(snapshot_every)
        self.on_error = on_error
        self.error: JournalError | None = None
        self._pending: list[bytes] = []
        self._lines = 0
        self._fd = None
        self._lock_fd = None
        try:
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(self._lock_fd):
                os.close(self._lock_fd)
                self._lock_fd = None
                raise JournalError(f"autosave {stem} is in use by another live session; "
                                   "its files are left alone")
            os.ftruncate(self._lock_fd, 0)
            os.write(self._lock_fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            self.archived = self._archive_existing()
            info = {"layer": str(layer or stem.name), "session": stem.name, "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime())}
            with atomic_write(self.info_path) as tmp:
                tmp.write_text(json.dumps(info))
            self.save_snapshot()
        except OSError as exc:
            self._release()
            raise JournalError(f"cannot autosave to {folder}: {exc.strerror or exc}; choose a "
                               "writable autosave folder (no editing without autosave)") from exc
        except JournalError:
            self._release()
            raise
        model.listeners.append(self._on_event)
        model.guards.append(self._guard)

    @classmethod
    def start(cls, folder, layer: str, model: AtomModel, **kwargs) -> Journal:
        """A journal of a new session in ``folder`` under a name of its own
        (``<layer>.<YYYYmmdd-HHMMSS>-<pid>-<random>``)."""
        session = (f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-"
                   f"{secrets.token_hex(3)}")
        return cls(Path(folder) / f"{safe_name(layer)}.{session}", model, layer=layer, **kwargs)

    def _archive_existing(self) -> list[Path]:
        stem = self.journal_path.name[: -len(JOURNAL_SUFFIX)]
        files = [(p, s) for p, s in ((self.journal_path, JOURNAL_SUFFIX),
                                     (self.snapshot_path, SNAPSHOT_SUFFIX),
                                     (self.info_path, SESSION_SUFFIX)) if p.exists()]
        if not files:
            return []
        stamp = time.strftime("%Y%m%d-%H%M%S",
                              time.localtime(max(p.stat().st_mtime for p, _ in files)))
        k, tag = 1, stamp
        while any((p.parent / f"{stem}.{tag}{s}").exists() for p, s in files):
            k += 1
            tag = f"{stamp}-{k}"
        moved = []
        for path, suffix in files:
            target = path.with_name(f"{stem}.{tag}{suffix}")
            os.replace(path, target)
            moved.append(target)
        return moved

    def save_snapshot(self) -> None:
        """Write the whole model atomically, then start an empty journal."""
        state = self.model.to_state()
        with atomic_write(self.snapshot_path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **state)
        # lines older than the snapshot are skipped on restore, so truncating after the
        # snapshot is safe even if a crash happens in between
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        os.fsync(fd)
        self._lines = 0
        self._pending.clear()  # the snapshot holds them
        self.error = None

    def _flush(self) -> None:
        while self._pending:
            _write_all(self._fd, self._pending[0])
            self._pending.pop(0)
            self._lines += 1
        self.error = None

    def _failure(self, exc: OSError) -> JournalError:
        return JournalError(f"autosave {self.journal_path} cannot be written "
                            f"({exc.strerror or exc}); edits are refused until it can (free "
                            "space or fix the folder, then edit again)")

    def _on_event(self, event: dict) -> None:
        record = {"revision": event["revision"], "action": event["action"]}
        if event["action"] == "do":
            record["label"] = event["label"]
            record["edits"] = event["edits"]
        self._pending.append((json.dumps(record, default=_json_default) + "\n").encode())
        try:
            self._flush()
            if self.snapshot_every and self._lines >= self.snapshot_every:
                self.save_snapshot()
        except OSError as exc:
            self.error = self._failure(exc)
            if self.on_error is not None:
                self.on_error(self.error)

    def _guard(self) -> None:
        """Refuse an edit while journal lines are unwritten (after trying once more)."""
        if not self._pending:
            return
        try:
            self._flush()
        except OSError as exc:
            self.error = self._failure(exc)
            raise self.error from None

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            try:
                self.lock_path.unlink()
            except OSError:
                pass
            os.close(self._lock_fd)
            self._lock_fd = None

    def close(self) -> None:
        """Stop following the model (the files stay for a later restore)."""
        if self._on_event in self.model.listeners:
            self.model.listeners.remove(self._on_event)
        if self._guard in self.model.guards:
            self.model.guards.remove(self._guard)
        self._release()


@dataclass
class Restored:
    """A restored model and the journal lines that were not replayed (``"line k: why"``)."""

    model: AtomModel
    skipped: list = field(default_factory=list)


def _replay(model: AtomModel, lines: list[str], journal_path: Path) -> tuple[int, str]:
    """Replay lines into ``model``; returns (index of the first bad line or len, reason)."""
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("revision"), int):
                return k, "not a journal record"
        except json.JSONDecodeError:
            cut = k == len(lines) - 1 or not any(x.strip() for x in lines[k + 1:])
            return k, "cut by a crash while it was written" if cut else "not valid JSON"
        if record["revision"] <= model.revision:
            continue
        if record["revision"] != model.revision + 1:
            return k, f"revision {record['revision']} does not follow {model.revision}"
        try:
            model.replay(record)
        except (KeyError, IndexError, ValueError, TypeError, RuntimeError) as exc:
            return k, f"does not replay ({type(exc).__name__}: {exc})"
    return len(lines), ""


def _load_snapshot(snapshot_path: Path) -> AtomModel:
    try:
        with np.load(snapshot_path, allow_pickle=False) as data:
            return AtomModel.from_state({k: data[k] for k in data.files})
    except Exception as exc:  # a damaged zip raises many kinds (BadZipFile, EOFError, ...)
        raise JournalError(f"{snapshot_path}: autosave snapshot is damaged "
                           f"({type(exc).__name__}: {exc})") from None


def restore_session(path) -> Restored:
    """Rebuild a model from its snapshot and journal, up to the last good journal line."""
    journal_path, snapshot_path = _paths(path)
    if not snapshot_path.is_file():
        raise FileNotFoundError(f"{snapshot_path}: no autosave snapshot")
    model = _load_snapshot(snapshot_path)
    if not journal_path.is_file():
        return Restored(model)
    with open(journal_path, encoding="utf-8", errors="replace") as fh:
        lines = fh.read().split("\n")
    bad, reason = _replay(model, lines, journal_path)
    if bad == len(lines):
        return Restored(model)
    # a failed replay may have applied part of its record: replay the good lines afresh
    model = _load_snapshot(snapshot_path)
    _replay(model, lines[:bad], journal_path)
    rest = sum(1 for x in lines[bad + 1:] if x.strip())
    skipped = [f"{journal_path.name} line {bad + 1}: {reason}"]
    if rest:
        skipped.append(f"{journal_path.name} lines {bad + 2}-{len(lines)}: {rest} line(s) "
                       "after it, not replayed")
    return Restored(model, skipped)


def restore(path) -> AtomModel:
    """The model of :func:`restore_session` (a warning lists any journal lines skipped)."""
    result = restore_session(path)
    if result.skipped:
        warnings.warn("autosave restored up to the last good line; skipped: "
                      + "; ".join(result.skipped), stacklevel=2)
    return result.model


@dataclass
class AutosaveSession:
    """One autosave found in a folder (:func:`list_sessions`).

    ``path``: the session name to pass to :func:`restore_session`; ``layer``: the layer it
    curated; ``modified``: time of the last write (seconds since the epoch); ``atoms`` and
    ``revision`` of the restored model (None with ``error`` when it cannot be restored);
    ``live``: another process still edits it; ``skipped``: journal lines a restore skips.
    """

    path: Path
    layer: str
    modified: float
    atoms: int | None
    revision: int | None
    live: bool
    skipped: list = field(default_factory=list)
    error: str = ""

    def describe(self) -> str:
        """One line: layer, time, atoms, revision and state."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.modified))
        what = (f"{self.atoms} atoms, revision {self.revision}" if self.error == ""
                else f"unrestorable: {self.error}")
        notes = (" (live in another session)" if self.live else "") + (
            f" ({len(self.skipped)} journal problem(s))" if self.skipped else "")
        return f"{self.layer}  {when}  {what}{notes}  [{self.path.name}]"


def _base_layer(name: str) -> str:
    return safe_name(re.sub(r" \[\d+\]$", "", str(name)))


def list_sessions(folder, layer: str | None = None) -> list[AutosaveSession]:
    """Autosaves in ``folder``, newest first; only those of ``layer`` when given (the same
    layer name, numbered copies such as ``atoms curated [2]`` included)."""
    folder = Path(folder)
    found = []
    for snapshot in folder.glob(f"*{SNAPSHOT_SUFFIX}"):
        stem = _stem(snapshot)
        info_path = stem.with_name(stem.name + SESSION_SUFFIX)
        try:
            name = json.loads(info_path.read_text())["layer"]
        except (OSError, ValueError, KeyError, TypeError):
            name = re.sub(r"\.\d{8}-\d{6}(-\d+)*(-[0-9a-f]+)?$", "", stem.name)
        if layer is not None and _base_layer(name) != _base_layer(layer):
            continue
        journal, _ = _paths(stem)
        times = [p.stat().st_mtime for p in (snapshot, journal) if p.exists()]
        try:
            restored = restore_session(stem)
            entry = AutosaveSession(stem, name, max(times), len(restored.model),
                                    restored.model.revision, is_live(stem), restored.skipped)
        except (OSError, JournalError) as exc:
            entry = AutosaveSession(stem, name, max(times), None, None, is_live(stem),
                                    error=str(exc))
        found.append(entry)
    return sorted(found, key=lambda s: s.modified, reverse=True)
