"""Manual correction of traced atoms: an editable atom model, snapping and a review queue.

The model (:class:`AtomModel`) keeps one row per atom in numpy arrays (positions (z, y, x)
in Angstrom, element symbols, features, provenance) and a stable integer ``id`` per atom.
Every edit (add, remove, move, relabel, mark-reviewed) is a small JSON-friendly record that
can be applied forwards or backwards, so undo and redo are unlimited, grouped edits undo as
one, and an autosave journal (:mod:`napari_aet.io.journal`) can replay them after a crash.

Row order is the order of a napari Points layer that mirrors the model: new atoms and
atoms brought back by an undo are appended at the end (appending is what a Points layer
does cheaply). :meth:`AtomModel.to_atoms` returns the atoms sorted by id, so an exported
file does not depend on the order of undo and redo.

Snapping (:func:`snap_to_maximum`, :func:`brightest_along_ray`) refines a click to the
sub-voxel intensity maximum with a local quadratic fit (:func:`refine_positions`), and
:func:`review_queue` ranks the atoms and places that deserve a human look.

Positions are in Angstrom in the frame of the volume: voxel ``i`` sits at ``i * pixel_size_A``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from napari_aet.core.atoms import Atoms, normalize_symbol

#: Provenance labels of an atom.
PROVENANCE = ("auto", "added", "moved", "relabelled")

#: Feature names recognised as a classification margin or confidence (0 = ambiguous, 1 = sure).
MARGIN_FEATURES = ("class_margin", "margin", "class_confidence", "confidence")
#: Feature names recognised as a fit residual (larger = worse).
RESIDUAL_FEATURES = ("fit_residual", "residual", "fit_error")


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


def _as_position(position) -> np.ndarray:
    p = np.asarray(position, dtype=float).reshape(-1)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise ValueError(f"a position must be 3 finite numbers (z, y, x) in Angstrom; got {position!r}")
    return p


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
        self._group_label = ""
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
        self._group, self._group_label, self._group_changes = [], label, []
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
        p = _as_position(position)
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
        p = _as_position(position)
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


# --- sampling, snapping and refinement ------------------------------------------------------

def _offsets27() -> np.ndarray:
    g = np.arange(-1, 2)
    return np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)


_OFF27 = _offsets27()
_DESIGN = np.column_stack([
    np.ones(27), _OFF27[:, 0], _OFF27[:, 1], _OFF27[:, 2],
    _OFF27[:, 0] ** 2, _OFF27[:, 1] ** 2, _OFF27[:, 2] ** 2,
    _OFF27[:, 0] * _OFF27[:, 1], _OFF27[:, 0] * _OFF27[:, 2], _OFF27[:, 1] * _OFF27[:, 2],
])
# centre-weighted least squares (Gaussian weight, sigma 1 voxel): neighbours' tails in the
# corners of the 3 x 3 x 3 box matter less
_WEIGHT = np.exp(-0.5 * np.sum(_OFF27**2, axis=1))
_PINV = np.linalg.pinv(_DESIGN * _WEIGHT[:, None]) * _WEIGHT[None, :]  # (10, 27)


def _check_volume(volume, pixel_size_A):
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"a volume must be (nz, ny, nx); got shape {volume.shape}")
    if pixel_size_A is None or not np.isfinite(pixel_size_A) or pixel_size_A <= 0:
        raise ValueError(f"pixel size must be a positive number of Angstrom; got {pixel_size_A}")
    return volume


def _quadratic_step(volume, centre):
    """Newton step (voxels) to the maximum of a quadratic fitted around integer ``centre``.

    Returns (step (n, 3), ok (n,)); ``ok`` is False where the fit is not concave.
    """
    idx = centre[:, None, :] + _OFF27[None]
    vals = volume[idx[..., 0], idx[..., 1], idx[..., 2]].astype(float)  # (n, 27)
    vmax = vals.max(axis=1, keepdims=True)
    vmin = vals.min(axis=1, keepdims=True)
    use_log = (vmin > 0.05 * vmax) & (vmax > 0)
    fit_vals = np.where(use_log, np.log(np.where(use_log, vals, 1.0)), vals)
    c = fit_vals @ _PINV.T  # (n, 10)
    grad = c[:, 1:4]
    hess = np.empty((len(c), 3, 3))
    hess[:, 0, 0], hess[:, 1, 1], hess[:, 2, 2] = 2 * c[:, 4], 2 * c[:, 5], 2 * c[:, 6]
    hess[:, 0, 1] = hess[:, 1, 0] = c[:, 7]
    hess[:, 0, 2] = hess[:, 2, 0] = c[:, 8]
    hess[:, 1, 2] = hess[:, 2, 1] = c[:, 9]
    ok = np.all(np.linalg.eigvalsh(hess) < -1e-12, axis=1)
    step = np.zeros_like(grad)
    if ok.any():
        step[ok] = -np.linalg.solve(hess[ok], grad[ok][..., None])[..., 0]
    return step, ok


def refine_positions(volume, positions_A, pixel_size_A: float, iterations: int = 12,
                     window_vox: int = 2) -> np.ndarray:
    """Refine positions to the sub-voxel intensity maximum of ``volume``.

    Two stages, vectorised over all positions:

    1. mean shift: each position moves to the centroid of the (positive) intensity in a
       ``(2 w + 1)^3`` window weighted by a Gaussian of one voxel around it, ``iterations``
       times; for a Gaussian atom the fixed point is the atom centre, and neighbours'
       tails pull it far less than a plain window maximum;
    2. polish: a 10-term quadratic fitted by centre-weighted least squares to the 3 x 3 x 3
       neighbourhood (to the logarithm of the intensity when positive there, exact for a
       Gaussian atom); its maximum replaces the mean-shift estimate when the fit is concave
       and the maximum lies within half a voxel of the fitted centre.

    Parameters
    ----------
    volume : (nz, ny, nx) array.
    positions_A : (n, 3) starting positions (z, y, x), Angstrom.
    pixel_size_A : voxel size, Angstrom.

    Returns
    -------
    (n, 3) refined positions, Angstrom.
    """
    volume = _check_volume(volume, pixel_size_A)
    pos = np.asarray(positions_A, float).reshape(-1, 3) / pixel_size_A
    shape = np.array(volume.shape)
    w = int(window_vox)
    if np.any(shape < 2 * w + 1):
        raise ValueError(f"volume {volume.shape} is too small to refine positions")
    g = np.arange(-w, w + 1)
    offs = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    for _ in range(iterations):
        centre = np.clip(np.round(pos).astype(int), w, shape - 1 - w)
        idx = centre[:, None, :] + offs[None]
        vals = np.maximum(volume[idx[..., 0], idx[..., 1], idx[..., 2]].astype(float), 0)
        d2 = np.sum((idx - pos[:, None, :]) ** 2, axis=-1)
        wts = vals * np.exp(-0.5 * d2)
        total = wts.sum(axis=1)
        good = total > 0
        new = pos.copy()
        new[good] = np.einsum("nk,nkd->nd", wts[good], idx[good]) / total[good, None]
        moved = np.max(np.abs(new - pos))
        pos = np.clip(new, 0, shape - 1)
        if moved < 1e-4:
            break
    centre = np.clip(np.round(pos).astype(int), 1, shape - 2)
    step, ok = _quadratic_step(volume, centre)
    ok &= np.all(np.abs(step) <= 0.5 + 1e-9, axis=1)
    pos[ok] = centre[ok] + step[ok]
    return pos * pixel_size_A


def sample_volume(volume, positions_A, pixel_size_A: float, smooth: bool = True) -> np.ndarray:
    """Local intensity at positions (Angstrom): trilinear value, averaged with the six
    points half a voxel away along each axis when ``smooth`` (a light low-pass)."""
    volume = _check_volume(volume, pixel_size_A)
    pos = np.asarray(positions_A, float).reshape(-1, 3) / pixel_size_A
    if len(pos) == 0:
        return np.zeros(0)
    offsets = [np.zeros(3)]
    if smooth:
        for axis in range(3):
            for s in (-0.5, 0.5):
                o = np.zeros(3)
                o[axis] = s
                offsets.append(o)
    pts = np.concatenate([pos + o for o in offsets])
    vals = ndimage.map_coordinates(np.asarray(volume, np.float32), pts.T, order=1,
                                   mode="nearest")
    return vals.reshape(len(offsets), len(pos)).mean(axis=0)


def snap_to_maximum(volume, position_A, pixel_size_A: float, radius_A: float = 1.0) -> np.ndarray:
    """The sub-voxel intensity maximum near ``position_A`` (a click), in Angstrom.

    The brightest voxel within ``radius_A`` of the click is found first; from there the
    search climbs voxel by voxel to the local maximum of the volume (so a click on the
    slope of an atom, or a voxel of the slope, reaches its peak), and the quadratic fit of
    :func:`refine_positions` gives the sub-voxel position of that maximum. Where the fit
    fails (flat or noisy neighbourhood), the mean-shift refinement is used instead.
    """
    volume = _check_volume(volume, pixel_size_A)
    shape = np.array(volume.shape)
    if np.any(shape < 3):
        raise ValueError(f"volume {volume.shape} is too small to snap to a maximum")
    p = _as_position(position_A) / pixel_size_A
    r = max(radius_A / pixel_size_A, 0.5)
    lo = np.maximum(np.floor(p - r).astype(int), 0)
    hi = np.minimum(np.ceil(p + r).astype(int) + 1, volume.shape)
    if np.any(hi <= lo):
        raise ValueError(f"position {tuple(np.round(position_A, 2))} A is outside the volume")
    block = np.asarray(volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], float)
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
    d2 = np.sum((grid - p) ** 2, axis=-1)
    inside = d2 <= r * r
    if not inside.any():
        inside = np.ones(block.shape, bool)
    # brightest voxel, mildly favouring those nearest the click
    masked = np.where(inside, block * np.exp(-0.5 * d2 / (r * r)), -np.inf)
    voxel = np.array(np.unravel_index(np.argmax(masked), block.shape)) + lo
    # climb to the local maximum (interior voxels, so the 3 x 3 x 3 fit has its neighbours)
    voxel = np.clip(voxel, 1, shape - 2)
    for _ in range(int(np.ceil(2 * r)) + 4):
        idx = voxel[None] + _OFF27
        idx = idx[np.all((idx >= 1) & (idx <= shape - 2), axis=1)]
        vals = np.asarray(volume[idx[:, 0], idx[:, 1], idx[:, 2]], float)
        top = idx[int(np.argmax(vals))]
        if np.array_equal(top, voxel) or vals.max() <= float(volume[tuple(voxel)]):
            break
        voxel = top
    step, ok = _quadratic_step(volume, voxel[None])
    if ok[0] and np.all(np.abs(step[0]) <= 0.5 + 1e-9):
        return (voxel + step[0]) * pixel_size_A
    return refine_positions(volume, (voxel * pixel_size_A)[None], pixel_size_A)[0]


def brightest_along_ray(volume, pixel_size_A: float, start_A, end_A, step_A: float | None = None,
                        radius_A: float = 1.0):
    """The brightest point along a view ray through the volume, refined (Angstrom).

    Parameters
    ----------
    start_A, end_A : (3,) ends of the ray inside the volume (z, y, x), Angstrom.
    step_A : sampling step along the ray (default a quarter voxel).

    Returns
    -------
    (position (3,) Angstrom, intensity) or ``(None, None)`` when the ray sees nothing.
    """
    volume = _check_volume(volume, pixel_size_A)
    a, b = _as_position(start_A), _as_position(end_A)
    step = step_A or pixel_size_A / 4
    n = max(int(np.ceil(np.linalg.norm(b - a) / step)) + 1, 2)
    pts = a[None] + np.linspace(0, 1, n)[:, None] * (b - a)[None]
    vals = sample_volume(volume, pts, pixel_size_A, smooth=False)
    if not np.any(vals > 0):
        return None, None
    k = int(np.argmax(vals))
    pos = snap_to_maximum(volume, pts[k], pixel_size_A, radius_A=min(radius_A, 2 * pixel_size_A))
    return pos, float(sample_volume(volume, pos[None], pixel_size_A, smooth=False)[0])


def nearest_atom(positions_A, point_A, max_distance_A: float = np.inf):
    """Row of the atom nearest to ``point_A`` within ``max_distance_A``, or None."""
    positions_A = np.asarray(positions_A, float).reshape(-1, 3)
    if len(positions_A) == 0:
        return None
    d2 = np.sum((positions_A - _as_position(point_A)) ** 2, axis=1)
    row = int(np.argmin(d2))
    return row if d2[row] <= max_distance_A**2 else None


def nearest_to_ray(positions_A, origin_A, direction, max_distance_A: float = np.inf):
    """Row of the atom nearest to the line ``origin + t * direction``, or None.

    Distance is the perpendicular distance to the ray (Angstrom); ties go to the atom
    nearest the viewer (smallest ``t``).
    """
    positions_A = np.asarray(positions_A, float).reshape(-1, 3)
    if len(positions_A) == 0:
        return None
    d = np.asarray(direction, float).reshape(3)
    norm = np.linalg.norm(d)
    if norm == 0:
        raise ValueError("view direction is zero")
    d = d / norm
    rel = positions_A - _as_position(origin_A)
    t = rel @ d
    perp = np.sum(rel**2, axis=1) - t**2
    perp = np.sqrt(np.maximum(perp, 0))
    best = np.lexsort((t, np.round(perp, 6)))[0]
    return int(best) if perp[best] <= max_distance_A else None


# --- review queue ---------------------------------------------------------------------------

@dataclass
class ReviewItem:
    """A place that deserves a human look.

    ``kind``: ``close_pair``, ``weak_atom``, ``wrong_class``, ``ambiguous_class``,
    ``poor_fit``, ``isolated`` or ``missed_atom``; ``position`` (z, y, x) Angstrom;
    ``atom_index``: row in the atoms given (None for a place without an atom);
    ``score`` in [0, 1], higher = more suspicious; ``suggested_action`` such as
    ``"remove"``, ``"add O"``, ``"relabel to Si"``, ``"check"``.
    """

    kind: str
    position: np.ndarray
    atom_index: int | None
    score: float
    suggested_action: str
    detail: str = ""
    atom_id: int | None = None
    partner_index: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A stable key for marking the item reviewed."""
        if self.atom_id is not None:
            return f"{self.kind}:atom{self.atom_id}"
        if self.atom_index is not None:
            return f"{self.kind}:row{self.atom_index}"
        z, y, x = np.round(np.asarray(self.position, float), 1)
        return f"{self.kind}:{z:.1f},{y:.1f},{x:.1f}"


def local_maxima(volume, level: float, pixel_size_A: float) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima (3 x 3 x 3) of ``volume`` above ``level``, refined; (positions_A, values)."""
    volume = _check_volume(volume, pixel_size_A)
    vol = np.asarray(volume, np.float32)
    above = vol > level
    if not above.any():
        return np.zeros((0, 3)), np.zeros(0)
    # only look inside the bounding box of voxels above the level
    box = ndimage.find_objects(above.astype(np.int8))[0]
    lo = [max(s.start - 1, 0) for s in box]
    sub = vol[tuple(slice(a, min(s.stop + 1, n)) for a, s, n in zip(lo, box, vol.shape))]
    peaks = (sub == ndimage.maximum_filter(sub, size=3, mode="nearest")) & (sub > level)
    idx = np.argwhere(peaks) + np.array(lo)
    # cheap sub-voxel offsets (per-axis parabola through the peak and its two neighbours)
    pos = idx.astype(float)
    inner = np.all((idx > 0) & (idx < np.array(vol.shape) - 1), axis=1)
    for axis in range(3):
        e = np.zeros(3, int)
        e[axis] = 1
        a = vol[tuple((idx[inner] - e).T)].astype(float)
        b = vol[tuple(idx[inner].T)].astype(float)
        c = vol[tuple((idx[inner] + e).T)].astype(float)
        den = a - 2 * b + c
        off = np.where(den < 0, 0.5 * (a - c) / np.where(den < 0, den, -1), 0.0)
        pos[inner, axis] += np.clip(off, -0.5, 0.5)
    pos = pos * pixel_size_A
    return pos, vol[tuple(idx.T)].astype(float)


def review_queue(atoms: Atoms, volume=None, pixel_size_A: float | None = None, *,
                 d_min_A: float = 1.0, non_atom_level: float | None = None,
                 isolation_A: float | None = None, margin_feature: str | None = None,
                 residual_feature: str | None = None, ids=None,
                 reviewed=(), smooth_sigma_A: float = 0.35, border_A: float = 2.0,
                 support_A: float | None = None) -> list[ReviewItem]:
    """Rank the atoms and places of a model that deserve a human look, most suspicious first.

    Parameters
    ----------
    atoms : the model (positions (z, y, x) Angstrom in the volume's frame).
    volume : (nz, ny, nx) reconstruction, optional; enables weak-atom, class and
        missed-atom checks.
    pixel_size_A : voxel size of ``volume`` (Angstrom).
    d_min_A : minimum distance between atoms (Angstrom); closer pairs are flagged and a
        bright local maximum with no atom within ``d_min_A`` is a missed-atom candidate.
    non_atom_level : volume value below which nothing is an atom (default half the median
        intensity at atoms of the weakest element).
    isolation_A : an atom with no neighbour within this distance is isolated (default
        twice the median nearest-neighbour distance).
    margin_feature, residual_feature : feature names holding a class margin/confidence
        (0 ambiguous .. 1 sure) and a fit residual; found among
        :data:`MARGIN_FEATURES` / :data:`RESIDUAL_FEATURES` when not given.
    ids : stable atom ids per row (filled into :attr:`ReviewItem.atom_id`).
    reviewed : keys of items already dealt with; they are left out.
    smooth_sigma_A : the volume is smoothed by a Gaussian of this width (Angstrom) before
        intensities and maxima are read: voxel-scale noise of a low-dose reconstruction
        makes neither weak atoms nor missed ones (0: as it is).
    border_A : places within this distance of a face of the volume (reconstruction edge
        artefacts) are never missed-atom candidates.
    support_A : a missed-atom candidate must lie within this distance of an atom of the
        model (out-of-support noise is not an atom; default 1.25 x the median
        nearest-neighbour distance; with no atoms, everywhere).

    Scores are in [0, 1]: ``close_pair`` 0.6-1 (closer = higher), ``weak_atom`` 1 - I/I_ref,
    ``wrong_class`` 0.5-1 and ``ambiguous_class`` 0.25-0.5 from the log-intensity margin
    between the atom's element and the nearest other element, ``missed_atom``
    (I - level) / (I_ref - level), ``poor_fit`` from the robust z-score of the residual,
    ``isolated`` 0.35-0.7. One item per atom (the highest score).
    """
    if d_min_A <= 0:
        raise ValueError(f"minimum distance must be positive (Angstrom); got {d_min_A}")
    pos = np.asarray(atoms.positions, float)
    n = len(pos)
    items: list[ReviewItem] = []
    best_for_atom: dict[int, ReviewItem] = {}

    def push(item: ReviewItem):
        if item.atom_index is None:
            items.append(item)
            return
        old = best_for_atom.get(item.atom_index)
        if old is None or item.score > old.score:
            best_for_atom[item.atom_index] = item

    tree = cKDTree(pos) if n else None
    intensity = None
    if volume is not None:
        volume = _check_volume(volume, pixel_size_A)
        if smooth_sigma_A < 0 or border_A < 0:
            raise ValueError("smooth_sigma_A and border_A must be >= 0 Angstrom")
        if smooth_sigma_A > 0:
            volume = ndimage.gaussian_filter(np.asarray(volume, np.float32),
                                             smooth_sigma_A / pixel_size_A, mode="nearest")
        intensity = sample_volume(volume, pos, pixel_size_A) if n else np.zeros(0)

    # close pairs: flag the weaker atom of each pair
    if n > 1:
        pairs = tree.query_pairs(d_min_A, output_type="ndarray")
        if len(pairs):
            dist = np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=1)
            if intensity is not None:
                weak_first = intensity[pairs[:, 0]] < intensity[pairs[:, 1]]
            elif "intensity" in atoms.features:
                f = np.asarray(atoms.features["intensity"], float)
                weak_first = f[pairs[:, 0]] < f[pairs[:, 1]]
            else:
                weak_first = np.zeros(len(pairs), bool)  # the later row
            weak = np.where(weak_first, pairs[:, 0], pairs[:, 1])
            other = np.where(weak_first, pairs[:, 1], pairs[:, 0])
            score = 0.6 + 0.4 * (1 - dist / d_min_A)
            for w, o, d, s in zip(weak.tolist(), other.tolist(), dist.tolist(), score.tolist()):
                push(ReviewItem("close_pair", pos[w].copy(), w, s, "remove",
                                f"{d:.2f} A from atom {o} (d_min {d_min_A:g} A)",
                                partner_index=o))

    # intensity: weak atoms (nothing there) and class checks
    elements = np.asarray(atoms.elements).astype(str)
    level = non_atom_level
    centres = {}
    if intensity is not None and n:
        uniq, counts = np.unique(elements, return_counts=True)
        for e, c in zip(uniq, counts):
            if c >= 3:
                centres[e] = float(np.median(intensity[elements == e]))
        ref = min(centres.values()) if centres else float(np.median(intensity))
        if level is None:
            level = 0.5 * ref
        ref = max(ref, level * 1.0001) if ref > 0 else level + 1e-12
        weak = np.flatnonzero(intensity < level)
        for i in weak.tolist():
            s = float(np.clip(1 - intensity[i] / ref, 0.5, 1.0))
            push(ReviewItem("weak_atom", pos[i].copy(), i, s, "remove",
                            f"intensity {intensity[i]:.3g} below the non-atom level {level:.3g}"))
        good = {e: c for e, c in centres.items() if c > 0}
        if len(good) >= 2:
            names = list(good)
            logc = np.log(np.array([good[e] for e in names]))
            logi = np.log(np.maximum(intensity, 1e-12 * max(good.values())))
            dist = np.abs(logi[:, None] - logc[None, :])  # (n, k)
            known = np.isin(elements, names)
            own_k = np.array([names.index(e) if e in good else 0 for e in elements])
            d_own = dist[np.arange(n), own_k]
            d_other = np.where(np.arange(len(names))[None] == own_k[:, None], np.inf, dist)
            k_other = np.argmin(d_other, axis=1)
            d_oth = d_other[np.arange(n), k_other]
            margin = (d_oth - d_own) / np.maximum(d_oth + d_own, 1e-12)
            flag = known & (margin < 0.5) & (intensity >= level)
            for i in np.flatnonzero(flag).tolist():
                m = float(margin[i])
                if m < 0:
                    push(ReviewItem("wrong_class", pos[i].copy(), i, 0.5 - 0.5 * m,
                                    f"relabel to {names[k_other[i]]}",
                                    f"intensity {intensity[i]:.3g} is nearer {names[k_other[i]]} "
                                    f"({good[names[k_other[i]]]:.3g}) than {elements[i]}"))
                else:
                    push(ReviewItem("ambiguous_class", pos[i].copy(), i, 0.5 - 0.5 * m,
                                    "check class", f"class margin {m:.2f}"))

    # features: class margin / confidence and fit residual
    feats = atoms.features
    mf = margin_feature or next((f for f in MARGIN_FEATURES if f in feats), None)
    if mf is not None:
        if mf not in feats:
            raise ValueError(f"no feature {mf!r} in the atoms (have {sorted(feats)})")
        m = np.asarray(feats[mf], float)
        ok = np.isfinite(m)
        for i in np.flatnonzero(ok & (m < 0.5)).tolist():
            push(ReviewItem("ambiguous_class", pos[i].copy(), i, float(1 - np.clip(m[i], 0, 1)),
                            "check class", f"{mf} {m[i]:.2f}"))
    rf = residual_feature or next((f for f in RESIDUAL_FEATURES if f in feats), None)
    if rf is not None:
        if rf not in feats:
            raise ValueError(f"no feature {rf!r} in the atoms (have {sorted(feats)})")
        r = np.asarray(feats[rf], float)
        ok = np.isfinite(r)
        if ok.sum() >= 5:
            med = np.median(r[ok])
            mad = 1.4826 * np.median(np.abs(r[ok] - med)) or 1e-12
            z = (r - med) / mad
            for i in np.flatnonzero(ok & (z > 3)).tolist():
                push(ReviewItem("poor_fit", pos[i].copy(), i, float(np.clip(0.4 + z[i] / 20, 0.4, 0.9)),
                                "check position", f"{rf} {r[i]:.3g} (robust z {z[i]:.1f})"))

    # isolated atoms
    if n > 2:
        dnn, _ = tree.query(pos, k=2)
        dnn = dnn[:, 1]
        thr = isolation_A or 2.0 * float(np.median(dnn))
        for i in np.flatnonzero(dnn > thr).tolist():
            s = 0.35 + 0.35 * float(np.clip(dnn[i] / thr - 1, 0, 1))
            push(ReviewItem("isolated", pos[i].copy(), i, s, "remove",
                            f"nearest neighbour {dnn[i]:.2f} A (> {thr:.2f} A)"))

    # missed atoms: bright local maxima with no atom within d_min
    if volume is not None and level is not None:
        peaks, _ = local_maxima(volume, level, pixel_size_A)
        if len(peaks):
            pk_int = sample_volume(volume, peaks, pixel_size_A)
            edge = np.asarray(volume.shape) - 1
            inside = np.all((peaks >= border_A) & (peaks <= edge * pixel_size_A - border_A), 1)
            if n:
                dist, _ = tree.query(peaks, k=1)
                if support_A is None and n > 1:
                    support_A = 1.25 * float(np.median(tree.query(pos, k=2)[0][:, 1]))
                near = dist <= support_A if support_A is not None else True
                keep = (dist > d_min_A) & (pk_int > level) & inside & near
            else:
                keep = (pk_int > level) & inside
            peaks, pk_int = peaks[keep], pk_int[keep]
            # one candidate per blob: drop the weaker of candidates closer than d_min
            if len(peaks) > 1:
                pairs = cKDTree(peaks).query_pairs(d_min_A, output_type="ndarray")
                if len(pairs):
                    drop = np.where(pk_int[pairs[:, 0]] < pk_int[pairs[:, 1]],
                                    pairs[:, 0], pairs[:, 1])
                    keep = np.ones(len(peaks), bool)
                    keep[drop] = False
                    peaks, pk_int = peaks[keep], pk_int[keep]
            if len(peaks):
                peaks = refine_positions(volume, peaks, pixel_size_A)
            ref_hi = min(centres.values()) if centres else max(pk_int.max(initial=level), level)
            for p, v in zip(peaks, pk_int.tolist()):
                s = float(np.clip((v - level) / max(ref_hi - level, 1e-12), 0.05, 1.0))
                guess = (min(centres, key=lambda e: abs(np.log(max(v, 1e-30)) - np.log(centres[e])))
                         if centres and all(c > 0 for c in centres.values()) else None)
                action = f"add {guess}" if guess else "add"
                items.append(ReviewItem("missed_atom", p.copy(), None, s, action,
                                        f"peak {v:.3g} with no atom within {d_min_A:g} A"))

    items.extend(best_for_atom.values())
    if ids is not None:
        ids = np.asarray(ids)
        for it in items:
            if it.atom_index is not None:
                it.atom_id = int(ids[it.atom_index])
    reviewed = set(reviewed)
    if reviewed:
        items = [it for it in items if it.key not in reviewed]
    items.sort(key=lambda it: (-it.score, it.kind, tuple(np.round(it.position, 3))))
    return items


def review_table(items: list[ReviewItem]) -> list[dict]:
    """Rows for a table: rank, kind, x, y, z (Angstrom), atom_index, score, suggested_action."""
    rows = []
    for rank, it in enumerate(items, start=1):
        z, y, x = (float(v) for v in it.position)
        rows.append({"rank": rank, "kind": it.kind, "x": x, "y": y, "z": z,
                     "atom_index": "" if it.atom_index is None else int(it.atom_index),
                     "score": round(float(it.score), 6), "suggested_action": it.suggested_action})
    return rows
