"""The editable atom model: one row per atom, every edit a record that undoes and redoes.

:class:`AtomModel` keeps one row per atom in numpy arrays (positions (z, y, x) in Angstrom,
element symbols, features, provenance) and a stable integer ``id`` per atom. Every edit (add,
remove, move, relabel, mark-reviewed) is a small JSON-friendly record that can be applied
forwards or backwards, so undo and redo are unlimited, grouped edits undo as one, and an
autosave journal (:mod:`napari_aet.io.journal`) can replay them after a crash.

Row order is the order of a napari Points layer that mirrors the model: new atoms and
atoms brought back by an undo are appended at the end (appending is what a Points layer
does cheaply). :meth:`AtomModel.to_atoms` returns the atoms sorted by id, so an exported
file does not depend on the order of undo and redo.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

import numpy as np

from napari_aet.core.atoms import Atoms, normalize_symbol
from napari_aet.core.curation.snapping import as_position

#: Provenance labels of an atom.
PROVENANCE = ("auto", "added", "moved", "relabelled")


def _jsonable(value):
    """A numpy scalar/array as plain Python (for the journal)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _fill_value(dtype: np.dtype):
    """Value given to a feature of an added atom when none is supplied."""
    if dtype.kind == "f":
        return np.nan
    if dtype.kind in "iu":
        return -1
    if dtype.kind == "b":
        return False
    if dtype.kind in "US":
        return ""
    return None


class AtomModel:
    """An editable atom model with unlimited undo/redo.

    Parameters
    ----------
    atoms : Atoms
        Starting atoms (positions (z, y, x) Angstrom, elements, features).
    provenance : array of str, optional
        One of :data:`PROVENANCE` per atom (default ``'auto'``). A ``provenance`` feature of
        ``atoms`` is used when present.

    Attributes
    ----------
    positions : (n, 3) float array, Angstrom.
    elements : (n,) str array.
    features : dict of name -> (n,) array.
    provenance : (n,) str array.
    ids : (n,) int64 array, stable atom ids (rows move, ids do not).
    removed : list of dict, every removed atom (id, position, element, features,
        provenance, reason), in removal order.
    reviewed : set of str, keys of review items accepted or dealt with.
    listeners : callables ``f(event)`` called after every do/undo/redo with a dict
        ``{"action", "label", "edits", "changes", "revision"}``; ``changes`` are row-level
        updates in order (``{"type": "add", "row", "position", "element", "features"}``,
        ``{"type": "remove", "row"}``, ``{"type": "move", "row", "position", "provenance"}``,
        ``{"type": "relabel", "row", "element", "provenance"}``, ``{"type": "review", "key"}``).
    guards : callables ``f()`` called before every do/undo/redo; one that raises refuses the
        edit and leaves the model unchanged (the autosave journal refuses edits it cannot write).
    """

    def __init__(self, atoms: Atoms, provenance=None):
        features = {k: np.asarray(v).copy() for k, v in atoms.features.items()}
        if provenance is None:
            provenance = features.pop("provenance", None)
        else:
            features.pop("provenance", None)
        n = len(atoms)
        self.positions = np.array(atoms.positions, dtype=float).reshape(n, 3)
        self.elements = np.array(atoms.elements, dtype="<U3")
        self.features = features
        if provenance is None:
            self.provenance = np.full(n, "auto", dtype="<U10")
        else:
            self.provenance = np.asarray(provenance, dtype="<U10").copy()
            bad = set(np.unique(self.provenance)) - set(PROVENANCE)
            if bad or len(self.provenance) != n:
                raise ValueError(f"provenance must be one of {PROVENANCE} per atom")
        self.ids = np.arange(n, dtype=np.int64)
        self.next_id = n
        self.removed: list[dict] = []
        self.reviewed: set[str] = set()
        self.revision = 0
        self.listeners: list[Callable[[dict], None]] = []
        self.guards: list[Callable[[], None]] = []
        self._undo: list[dict] = []
        self._redo: list[dict] = []
        self._group: list[dict] | None = None
        self._group_changes: list[dict] = []

    # --- reading ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.positions)

    def row_of(self, atom_id: int) -> int:
        """Row of the atom with ``atom_id``; raises ``KeyError`` when there is none."""
        rows = np.flatnonzero(self.ids == int(atom_id))
        if len(rows) == 0:
            raise KeyError(f"no atom with id {atom_id} in the model")
        return int(rows[0])

    def rows_of(self, atom_ids) -> np.ndarray:
        """Rows of several atom ids (vectorised; raises ``KeyError`` for a missing id)."""
        atom_ids = np.asarray(atom_ids, dtype=np.int64).reshape(-1)
        order = np.argsort(self.ids, kind="stable")
        pos = np.searchsorted(self.ids, atom_ids, sorter=order)
        pos = np.clip(pos, 0, max(len(order) - 1, 0))
        rows = order[pos] if len(order) else np.zeros(0, int)
        if len(atom_ids) and (len(order) == 0 or np.any(self.ids[rows] != atom_ids)):
            raise KeyError("some atom ids are not in the model")
        return rows

    def to_atoms(self, order: str = "id") -> Atoms:
        """The current atoms as :class:`Atoms` (``order='id'``: sorted by id; ``'row'``: as stored).

        The ``provenance`` is included as a feature.
        """
        idx = np.argsort(self.ids, kind="stable") if order == "id" else np.arange(len(self))
        feats = {k: v[idx].copy() for k, v in self.features.items()}
        feats["provenance"] = self.provenance[idx].copy()
        return Atoms(self.positions[idx].copy(), self.elements[idx].copy(), feats)

    def counts(self) -> dict[str, int]:
        """Number of atoms by provenance plus ``removed`` (atoms of the input taken out; an
        atom added by hand and deleted again counts in neither)."""
        out = {p: int(np.count_nonzero(self.provenance == p)) for p in PROVENANCE}
        out["removed"] = sum(r["provenance"] != "added" for r in self.removed)
        out["total"] = len(self)
        return out

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    # --- edits --------------------------------------------------------------------------
    @contextlib.contextmanager
    def group(self, label: str = "edit"):
        """Collect the edits made inside the ``with`` block into one undo step."""
        if self._group is not None:  # nested: join the outer group
            yield
            return
        self._check_guards()
        self._group, self._group_changes = [], []
        try:
            yield
        finally:
            edits, changes = self._group, self._group_changes
            self._group, self._group_changes = None, []
            if edits:
                entry = {"label": label, "edits": edits}
                self._undo.append(entry)
                self._redo.clear()
                self._notify("do", entry, changes)

    def _record(self, edit: dict, label: str):
        """Apply ``edit`` and push it as (part of) an undo step."""
        with self.group(label):
            self._group_changes.append(self._apply(edit, forward=True))
            self._group.append(edit)

    def add(self, position, element: str, features: dict | None = None,
            provenance: str = "added") -> int:
        """Add an atom at ``position`` (z, y, x) Angstrom; returns its new id."""
        p = as_position(position)
        element = normalize_symbol(element) if element != "X" else "X"
        features = dict(features or {})
        unknown = set(features) - set(self.features)
        if unknown:
            raise ValueError(f"unknown feature(s) {sorted(unknown)}; the model has "
                             f"{sorted(self.features)}")
        full = {}
        for name, col in self.features.items():
            full[name] = _jsonable(features.get(name, _fill_value(col.dtype)))
        if provenance not in PROVENANCE:
            raise ValueError(f"provenance must be one of {PROVENANCE}; got {provenance!r}")
        atom_id = self.next_id
        edit = {"op": "add", "id": atom_id, "position": p.tolist(), "element": element,
                "features": full, "provenance": provenance}
        self._record(edit, "add")
        return atom_id

    def remove(self, atom_ids, reason: str = "") -> None:
        """Remove one or several atoms (by id); all of them undo as one step."""
        atom_ids = np.atleast_1d(np.asarray(atom_ids, dtype=np.int64))
        if len(np.unique(atom_ids)) != len(atom_ids):
            raise ValueError("the same atom id is given twice")
        rows = self.rows_of(atom_ids)
        with self.group("remove"):
            for atom_id, row in zip(atom_ids.tolist(), rows.tolist()):
                row = self.row_of(atom_id) if len(atom_ids) > 1 else row
                edit = {"op": "remove", "id": atom_id, "reason": str(reason),
                        "position": self.positions[row].tolist(),
                        "element": str(self.elements[row]),
                        "features": {k: _jsonable(v[row]) for k, v in self.features.items()},
                        "provenance": str(self.provenance[row])}
                self._record(edit, "remove")

    def move(self, atom_id: int, position) -> None:
        """Move an atom to ``position`` (z, y, x) Angstrom."""
        p = as_position(position)
        row = self.row_of(atom_id)
        old_prov = str(self.provenance[row])
        edit = {"op": "move", "id": int(atom_id), "old": self.positions[row].tolist(),
                "new": p.tolist(), "old_provenance": old_prov,
                "new_provenance": "added" if old_prov == "added" else "moved"}
        self._record(edit, "move")

    def relabel(self, atom_id: int, element: str) -> None:
        """Change the element of an atom (the same element records nothing)."""
        element = normalize_symbol(element)
        row = self.row_of(atom_id)
        if str(self.elements[row]) == element:  # a no-op is not an edit: nothing recorded
            return
        old_prov = str(self.provenance[row])
        edit = {"op": "relabel", "id": int(atom_id), "old": str(self.elements[row]),
                "new": element, "old_provenance": old_prov,
                "new_provenance": "added" if old_prov == "added" else "relabelled"}
        self._record(edit, "relabel")

    def mark_reviewed(self, key: str) -> None:
        """Mark a review item (its :attr:`ReviewItem.key`) as dealt with (undoable)."""
        if key in self.reviewed:
            return
        self._record({"op": "review", "key": str(key)}, "review")

    def undo(self) -> bool:
        """Undo the last step; returns False when there is nothing to undo."""
        if self._group is not None:
            raise RuntimeError("cannot undo inside an edit group")
        if not self._undo:
            return False
        self._check_guards()
        entry = self._undo.pop()
        changes = [self._apply(e, forward=False) for e in reversed(entry["edits"])]
        self._redo.append(entry)
        self._notify("undo", entry, changes)
        return True

    def redo(self) -> bool:
        """Redo the last undone step; returns False when there is nothing to redo."""
        if self._group is not None:
            raise RuntimeError("cannot redo inside an edit group")
        if not self._redo:
            return False
        self._check_guards()
        entry = self._redo.pop()
        changes = [self._apply(e, forward=True) for e in entry["edits"]]
        self._undo.append(entry)
        self._notify("redo", entry, changes)
        return True

    def replay(self, record: dict) -> None:
        """Apply a journal record (``{"action": "do"|"undo"|"redo", ...}``)."""
        action = record.get("action")
        if action == "do":
            entry = {"label": record.get("label", "edit"), "edits": record["edits"]}
            changes = [self._apply(e, forward=True) for e in entry["edits"]]
            self._undo.append(entry)
            self._redo.clear()
            self._notify("do", entry, changes)
        elif action == "undo":
            self.undo()
        elif action == "redo":
            self.redo()
        else:
            raise ValueError(f"unknown journal action {action!r}")

    def _check_guards(self):
        for guard in list(self.guards):
            guard()

    def _notify(self, action: str, entry: dict, changes: list[dict]):
        self.revision += 1
        event = {"action": action, "label": entry["label"], "edits": entry["edits"],
                 "changes": changes, "revision": self.revision}
        for listener in list(self.listeners):
            listener(event)

    # --- the primitive edits --------------------------------------------------------------
    def _append_row(self, atom_id, position, element, features, provenance) -> int:
        self.positions = np.concatenate([self.positions, np.asarray(position, float)[None]])
        self.elements = np.append(self.elements, np.array([element], dtype="<U3"))
        for name, col in self.features.items():
            value = features.get(name, _fill_value(col.dtype))
            try:
                new = np.array([value], dtype=col.dtype)
            except (TypeError, ValueError):
                new = np.array([value], dtype=object)
            self.features[name] = np.concatenate([col, new])
        self.provenance = np.append(self.provenance, np.array([provenance], dtype="<U10"))
        self.ids = np.append(self.ids, np.int64(atom_id))
        self.next_id = max(self.next_id, int(atom_id) + 1)
        return len(self.positions) - 1

    def _delete_row(self, row: int):
        self.positions = np.delete(self.positions, row, axis=0)
        self.elements = np.delete(self.elements, row)
        for name in self.features:
            self.features[name] = np.delete(self.features[name], row)
        self.provenance = np.delete(self.provenance, row)
        self.ids = np.delete(self.ids, row)

    def _apply(self, edit: dict, forward: bool) -> dict:
        op = edit["op"]
        if op == "review":
            if forward:
                self.reviewed.add(edit["key"])
            else:
                self.reviewed.discard(edit["key"])
            return {"type": "review", "key": edit["key"]}
        inserting = (op == "add") == forward
        if op in ("add", "remove") and inserting:
            if op == "remove":  # undo of a removal: take it off the removed list
                for k in range(len(self.removed) - 1, -1, -1):
                    if self.removed[k]["id"] == edit["id"]:
                        del self.removed[k]
                        break
            row = self._append_row(edit["id"], edit["position"], edit["element"],
                                   edit["features"], edit["provenance"])
            return {"type": "add", "row": row, "id": edit["id"],
                    "position": np.asarray(edit["position"], float),
                    "element": edit["element"], "features": edit["features"],
                    "provenance": edit["provenance"]}
        if op in ("add", "remove"):
            row = self.row_of(edit["id"])
            self._delete_row(row)
            if op == "remove":
                self.removed.append({k: edit[k] for k in
                                     ("id", "position", "element", "features", "provenance",
                                      "reason")})
            return {"type": "remove", "row": row, "id": edit["id"]}
        row = self.row_of(edit["id"])
        value = edit["new"] if forward else edit["old"]
        self.provenance[row] = edit["new_provenance"] if forward else edit["old_provenance"]
        prov = str(self.provenance[row])
        if op == "move":
            self.positions[row] = value
            return {"type": "move", "row": row, "id": edit["id"],
                    "position": np.asarray(value, float), "provenance": prov}
        if op == "relabel":
            self.elements[row] = value
            return {"type": "relabel", "row": row, "id": edit["id"], "element": value,
                    "provenance": prov}
        raise ValueError(f"unknown edit {op!r}")

    # --- saving ---------------------------------------------------------------------------
    def to_state(self) -> dict:
        """Everything needed to rebuild the model exactly: arrays plus a JSON string."""
        state = {"positions": self.positions.copy(), "elements": self.elements.copy(),
                 "provenance": self.provenance.copy(), "ids": self.ids.copy()}
        feature_meta = {}
        for name, col in self.features.items():
            if col.dtype.kind == "O":
                feature_meta[name] = {"json": [_jsonable(v) for v in col]}
            else:
                state[f"feature:{name}"] = col.copy()
                feature_meta[name] = {"dtype": col.dtype.str}
        meta = {"next_id": self.next_id, "removed": self.removed,
                "reviewed": sorted(self.reviewed), "undo": self._undo, "redo": self._redo,
                "revision": self.revision, "features": feature_meta}
        state["meta"] = np.array(json.dumps(meta))
        return state

    @classmethod
    def from_state(cls, state) -> AtomModel:
        """Rebuild a model written by :meth:`to_state` (also from a loaded ``.npz``)."""
        meta = json.loads(str(np.asarray(state["meta"])))
        features = {}
        for name, info in meta["features"].items():
            if "json" in info:
                features[name] = np.array(info["json"], dtype=object)
            else:
                features[name] = np.asarray(state[f"feature:{name}"]).astype(info["dtype"])
        model = cls(Atoms(np.asarray(state["positions"], float),
                          np.asarray(state["elements"]).astype("<U3"), features),
                    provenance=np.asarray(state["provenance"]).astype("<U10"))
        model.ids = np.asarray(state["ids"], dtype=np.int64).copy()
        model.next_id = int(meta["next_id"])
        model.removed = list(meta["removed"])
        model.reviewed = set(meta["reviewed"])
        model._undo = list(meta["undo"])
        model._redo = list(meta["redo"])
        model.revision = int(meta["revision"])
        return model

    def equals(self, other: AtomModel) -> bool:
        """True when both models hold exactly the same atoms, rows, ids, removed list."""
        if len(self) != len(other) or set(self.features) != set(other.features):
            return False
        same = (np.array_equal(self.positions, other.positions)
                and np.array_equal(self.elements, other.elements)
                and np.array_equal(self.provenance, other.provenance)
                and np.array_equal(self.ids, other.ids)
                and self.next_id == other.next_id and self.reviewed == other.reviewed
                and json.dumps(self.removed) == json.dumps(other.removed))
        if not same:
            return False
        for name, col in self.features.items():
            a, b = col, other.features[name]
            if a.dtype.kind == "f" and b.dtype.kind == "f":
                if not np.array_equal(a, b, equal_nan=True):
                    return False
            elif [_jsonable(v) for v in a] != [_jsonable(v) for v in b]:
                return False
        return True


