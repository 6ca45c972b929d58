"""Autosave journal for manual curation: a snapshot plus an append-only log of edits.

Files (for a journal path ``NAME.journal.jsonl``):

* ``NAME.journal.jsonl``: one JSON object per line, appended, flushed and fsync'ed after
  every do / undo / redo of an :class:`~napari_aet.core.curation.AtomModel`
  (``{"revision": r, "action": "do", "label": ..., "edits": [...]}``, or
  ``{"revision": r, "action": "undo"}`` / ``"redo"``);
* ``NAME.snapshot.npz``: the whole model (:meth:`AtomModel.to_state`), written atomically
  with its revision.

:func:`restore` loads the snapshot and replays the journal lines with a higher revision,
so a crash at any moment (even halfway through writing a line, which is then ignored)
rebuilds the model exactly as it was after the last complete edit.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from napari_aet.core.curation import AtomModel
from napari_aet.io.atomic import atomic_write

JOURNAL_SUFFIX = ".journal.jsonl"
SNAPSHOT_SUFFIX = ".snapshot.npz"


def _paths(path) -> tuple[Path, Path]:
    path = Path(path)
    name = path.name
    for suffix in (JOURNAL_SUFFIX, SNAPSHOT_SUFFIX):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return path.with_name(name + JOURNAL_SUFFIX), path.with_name(name + SNAPSHOT_SUFFIX)


def journal_paths(path) -> tuple[Path, Path]:
    """``(journal, snapshot)`` paths for a journal name (with or without its suffix)."""
    return _paths(path)


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to the journal")


class Journal:
    """Autosave of an :class:`AtomModel` to ``path`` (see the module docstring).

    Parameters
    ----------
    path : journal file name; ``.journal.jsonl`` is added when missing.
    model : the model to follow; a snapshot is written at once and every later edit is
        appended to the journal.
    snapshot_every : write a fresh snapshot (and start an empty journal) after this many
        journal lines, so restoring stays fast in long sessions.

    An autosave already at ``path`` (say, of a session that crashed and was not restored
    yet) is never overwritten: its files are renamed to ``NAME.<time>.journal.jsonl`` and
    ``NAME.<time>.snapshot.npz`` first and listed in :attr:`archived`.
    """

    def __init__(self, path, model: AtomModel, snapshot_every: int = 500):
        self.journal_path, self.snapshot_path = _paths(path)
        if not self.journal_path.parent.exists():
            raise FileNotFoundError(f"folder {self.journal_path.parent} does not exist")
        self.model = model
        self.snapshot_every = int(snapshot_every)
        self._lines = 0
        self._fh = None
        self.archived = self._archive_existing()
        self.save_snapshot()
        model.listeners.append(self._on_event)

    def _archive_existing(self) -> list[Path]:
        existing = [p for p in (self.journal_path, self.snapshot_path) if p.exists()]
        if not existing:
            return []
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(max(p.stat().st_mtime
                                                                    for p in existing)))
        stem = self.journal_path.name[: -len(JOURNAL_SUFFIX)]
        k, tag = 1, stamp
        while any((p.parent / f"{stem}.{tag}{s}").exists() for p, s in
                  ((self.journal_path, JOURNAL_SUFFIX), (self.snapshot_path, SNAPSHOT_SUFFIX))):
            k += 1
            tag = f"{stamp}-{k}"
        moved = []
        for path, suffix in ((self.journal_path, JOURNAL_SUFFIX), (self.snapshot_path, SNAPSHOT_SUFFIX)):
            if path.exists():
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
        if self._fh is not None:
            self._fh.close()
        # lines older than the snapshot are skipped on restore, so truncating after the
        # snapshot is safe even if a crash happens in between
        self._fh = open(self.journal_path, "w")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._lines = 0

    def _on_event(self, event: dict) -> None:
        record = {"revision": event["revision"], "action": event["action"]}
        if event["action"] == "do":
            record["label"] = event["label"]
            record["edits"] = event["edits"]
        self._fh.write(json.dumps(record, default=_json_default) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._lines += 1
        if self.snapshot_every and self._lines >= self.snapshot_every:
            self.save_snapshot()

    def close(self) -> None:
        """Stop following the model (the files stay for a later restore)."""
        if self._on_event in self.model.listeners:
            self.model.listeners.remove(self._on_event)
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def restore(path) -> AtomModel:
    """Rebuild a model from its snapshot and journal (see the module docstring)."""
    journal_path, snapshot_path = _paths(path)
    if not snapshot_path.is_file():
        raise FileNotFoundError(f"{snapshot_path}: no autosave snapshot")
    with np.load(snapshot_path, allow_pickle=False) as data:
        model = AtomModel.from_state({k: data[k] for k in data.files})
    if not journal_path.is_file():
        return model
    with open(journal_path) as fh:
        lines = fh.read().split("\n")
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if k >= len(lines) - 2:  # the last line, cut by a crash while writing it
                break
            raise ValueError(f"{journal_path}: line {k + 1} is not valid JSON") from None
        if record.get("revision", 0) <= model.revision:
            continue
        model.replay(record)
        if model.revision != record["revision"]:
            raise ValueError(f"{journal_path}: line {k + 1} has revision {record['revision']} "
                             f"but the model reached {model.revision}; journal is out of order")
    return model
