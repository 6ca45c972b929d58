"""A curation session: the atom model, snapping against the volume and the review cursor.

What a curating hand does, without Qt: where a click adds an atom (snapped to the sub-voxel
maximum; an atom already within the minimum distance is picked instead), which element a
new atom gets, which atom a click or a view ray picks, the element cycle of the E key, and
the review queue with its cursor (next / previous, accept, reject, insert). The Curate widget
maps mouse and key events to these methods and redraws.

Two frames, both in Angstrom: the model's (positions as :class:`AtomModel` stores them, the
atoms layer's data) and the volume's (voxel ``i`` at ``i * pixel_size_A``); ``frame`` is the
affine map from the first to the second.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from napari_aet.core.atoms import Atoms, normalize_symbol
from napari_aet.core.curation.model import AtomModel
from napari_aet.core.curation.review import ReviewItem, ReviewParameters, review_queue
from napari_aet.core.curation.snapping import (
    brightest_along_ray,
    check_volume,
    nearest_atom,
    nearest_to_ray,
    sample_volume,
    snap_to_maximum,
)


class NoEditError(Exception):
    """An action that changed nothing; the message says why (for a status line).

    ``row``: the atom the action picked instead (to select it), or None.
    """

    def __init__(self, message: str, row: int | None = None):
        super().__init__(message)
        self.row = row


class CurationSession:
    """One curation of an atom model against the volume it was traced from.

    Parameters
    ----------
    model : AtomModel
        The atoms being edited (model frame, Angstrom).
    volume : (nz, ny, nx) array
        The reconstruction, for snapping and intensities.
    pixel_size_A : float
        Voxel size of ``volume`` (Angstrom).
    d_min_A : float
        Minimum distance between atoms (Angstrom): a new atom or a move whose peak lies
        nearer an atom than this picks that atom instead.
    snap_radius_A : float
        Search radius around a click (Angstrom).
    new_element : str
        Element of new atoms; ``"auto"``: the element whose median intensity is nearest the
        volume at the new atom.
    frame : (matrix (3, 3), offset (3,)), optional
        Volume-frame position = ``matrix @ model position + offset`` (default identity).

    Attributes
    ----------
    items : list of ReviewItem, the review queue; ``item_index`` the current item (-1: none).
    class_centres : element -> median volume intensity at its atoms (elements with >= 3 atoms).
    """

    def __init__(self, model: AtomModel, volume, pixel_size_A: float, *, d_min_A: float,
                 snap_radius_A: float = 1.0, new_element: str = "auto", frame=None):
        self.model = model
        self.volume = check_volume(volume, pixel_size_A)
        self.pixel_size_A = float(pixel_size_A)
        self.d_min_A = float(d_min_A)
        self.snap_radius_A = float(snap_radius_A)
        self.new_element = new_element
        self.frame = frame if frame is not None else (np.eye(3), np.zeros(3))
        self.items: list[ReviewItem] = []
        self.item_index = -1
        self.class_centres: dict[str, float] = {}
        if len(model):
            intensity = sample_volume(self.volume, self.to_volume_A(model.positions),
                                      self.pixel_size_A)
            for e in self.elements():
                sel = model.elements == e
                if sel.sum() >= 3:
                    self.class_centres[e] = float(np.median(intensity[sel]))

    # --- frames -----------------------------------------------------------------------------
    @property
    def frame(self) -> tuple[np.ndarray, np.ndarray]:
        """(matrix, offset): volume-frame position = matrix @ model position + offset."""
        return self._matrix, self._offset

    @frame.setter
    def frame(self, frame):
        matrix, offset = frame
        self._matrix = np.asarray(matrix, float).reshape(3, 3)
        self._offset = np.asarray(offset, float).reshape(3)
        self._inverse = np.linalg.inv(self._matrix)

    def to_volume_A(self, positions) -> np.ndarray:
        """Model-frame positions (..., 3) -> volume frame (Angstrom)."""
        return np.asarray(positions, float) @ self._matrix.T + self._offset

    def from_volume_A(self, positions_A) -> np.ndarray:
        """Volume-frame positions (..., 3) Angstrom -> model frame."""
        return (np.asarray(positions_A, float) - self._offset) @ self._inverse.T

    def elements(self) -> list[str]:
        """The elements of the model, sorted, without the unknown ``X``."""
        return sorted(set(self.model.elements.tolist()) - {"X"})

    # --- adding and moving atoms ----------------------------------------------------------------
    def element_for(self, pos_volume_A=None) -> str:
        """Element of a new atom at ``pos_volume_A`` (volume frame, Angstrom; None: unknown)."""
        choice = (self.new_element or "").strip()
        if choice and choice.lower() != "auto":
            return normalize_symbol(choice)
        centres = self.class_centres
        if centres and pos_volume_A is not None:
            v = float(sample_volume(self.volume, np.asarray(pos_volume_A)[None],
                                    self.pixel_size_A)[0])
            return min(centres, key=lambda e: abs(np.log(max(v, 1e-30))
                                                  - np.log(max(centres[e], 1e-30))))
        present = self.elements()
        return present[0] if present else "X"

    def snap(self, position) -> np.ndarray:
        """The sub-voxel maximum near a model-frame position, in the volume frame (Angstrom)."""
        return snap_to_maximum(self.volume, self.to_volume_A(position), self.pixel_size_A,
                               radius_A=self.snap_radius_A)

    def atom_within_d_min(self, pos_volume_A, exclude_row: int | None = None) -> int | None:
        """Row of the atom nearest a volume-frame position when it is nearer than d_min."""
        if len(self.model) == 0:
            return None
        pos = self.to_volume_A(self.model.positions)
        if exclude_row is not None:
            pos[exclude_row] = np.inf
        return nearest_atom(pos, pos_volume_A, self.d_min_A)

    def add_snapped(self, pos_volume_A, element: str | None = None) -> int:
        """Add an atom at a snapped position (volume frame, Angstrom); returns its id.

        Raises :class:`NoEditError` (with the row) when an atom is within d_min of it.
        """
        row = self.atom_within_d_min(pos_volume_A)
        if row is not None:
            dist = np.linalg.norm(self.to_volume_A(self.model.positions[row]) - pos_volume_A)
            raise NoEditError(f"an atom ({self.model.elements[row]}) is {dist:.2f} A from that "
                              f"peak, within the minimum distance {self.d_min_A:.2f} A: "
                              "selected it, added nothing", row=row)
        return self.model.add(self.from_volume_A(pos_volume_A),
                              element or self.element_for(pos_volume_A))

    def add_at(self, position) -> int:
        """Add an atom at the maximum near a click (model frame, 2D); returns its id."""
        return self.add_snapped(self.snap(position))

    def add_on_ray(self, start_A, end_A) -> int:
        """Add an atom at the brightest point of a view ray (ends in the volume frame,
        Angstrom; a 3D click), refined; returns its id."""
        pos, _ = brightest_along_ray(self.volume, self.pixel_size_A, start_A, end_A,
                                     radius_A=self.snap_radius_A)
        if pos is None:
            raise NoEditError("nothing bright along that ray: no atom added")
        return self.add_snapped(pos)

    def move(self, atom_id: int, position) -> None:
        """Move an atom to the maximum near a drop (model frame); refused (:class:`NoEditError`)
        when another atom is within d_min of that peak."""
        pos_volume_A = self.snap(position)
        row = self.model.row_of(atom_id)
        if self.atom_within_d_min(pos_volume_A, exclude_row=row) is not None:
            raise NoEditError("another atom is within the minimum distance "
                              f"{self.d_min_A:.2f} A of that peak: not moved")
        self.model.move(atom_id, self.from_volume_A(pos_volume_A))

    def remove(self, rows, reason: str = "deleted by hand") -> None:
        """Remove the atoms of ``rows`` (one undo step)."""
        rows = [int(r) for r in rows]
        if rows:
            self.model.remove(self.model.ids[rows], reason=reason)

    def cycle_element(self, rows) -> None:
        """Give each atom of ``rows`` the next element of the model (one undo step)."""
        rows = sorted(rows)
        elements = self.elements() or ["X"]
        if not rows:
            raise NoEditError("E: select atoms first")
        if len(elements) < 2:
            raise NoEditError(f"E: only one element ({elements[0]}) in the model: "
                              "nothing relabelled")
        model = self.model
        with model.group("relabel"):
            for atom_id in model.ids[rows].tolist():
                cur = str(model.elements[model.row_of(atom_id)])
                nxt = (elements[(elements.index(cur) + 1) % len(elements)] if cur in elements
                       else elements[0])
                model.relabel(atom_id, nxt)

    # --- picking atoms ------------------------------------------------------------------------------
    def nearest_in_slab(self, position, dims_displayed, half_slab_A: float,
                        max_distance_A: float = np.inf) -> int | None:
        """Row of the atom nearest a 2D click (model frame) in the displayed plane, among
        atoms within ``half_slab_A`` of the slice along the other axes; None if none is
        within ``max_distance_A``."""
        pos = self.model.positions
        if len(pos) == 0:
            return None
        disp = list(dims_displayed)
        hidden = [a for a in range(3) if a not in disp]
        position = np.asarray(position, float)
        ok = np.all(np.abs(pos[:, hidden] - position[hidden]) <= half_slab_A, axis=1)
        if not ok.any():
            return None
        d = np.linalg.norm(pos[:, disp] - position[disp], axis=1)
        d[~ok] = np.inf
        row = int(np.argmin(d))
        return row if d[row] <= max_distance_A else None

    def nearest_to_ray(self, origin, direction, max_distance_A: float = np.inf) -> int | None:
        """Row of the atom nearest a view ray (model frame), or None (see
        :func:`~napari_aet.core.curation.snapping.nearest_to_ray`)."""
        return nearest_to_ray(self.model.positions, origin, direction, max_distance_A)

    # --- the review queue ---------------------------------------------------------------------------
    def review_atoms(self) -> Atoms:
        """A snapshot of the model for :meth:`review_queue`: volume-frame positions, elements,
        numeric features."""
        model = self.model
        return Atoms(self.to_volume_A(model.positions), model.elements.copy(),
                     {k: v.copy() for k, v in model.features.items() if v.dtype.kind in "fiub"})

    def review_queue(self, atoms: Atoms | None = None,
                     params: ReviewParameters | None = None) -> list[ReviewItem]:
        """Rank what deserves a look (:func:`~napari_aet.core.curation.review.review_queue`)
        in ``atoms`` (a :meth:`review_atoms` snapshot; default the model now) with the
        settings ``params`` (default :class:`ReviewParameters`); d_min is the session's."""
        settings = asdict(params if params is not None else ReviewParameters())
        settings["d_min_A"] = self.d_min_A
        return review_queue(atoms if atoms is not None else self.review_atoms(), self.volume,
                            self.pixel_size_A, ids=self.model.ids.copy(),
                            reviewed=set(self.model.reviewed), **settings)

    def set_queue(self, items, item_index: int = -1) -> None:
        """Take a review queue; ``item_index`` the current item (-1: none yet)."""
        self.items = list(items)
        self.item_index = int(item_index)

    def open_items(self) -> list[int]:
        """Indices of the items not yet dealt with."""
        return [k for k, it in enumerate(self.items) if it.key not in self.model.reviewed]

    def current_item(self) -> ReviewItem | None:
        if 0 <= self.item_index < len(self.items):
            return self.items[self.item_index]
        return None

    def goto(self, step: int = 1) -> ReviewItem | None:
        """Go to the next (step > 0) or previous open item, wrapping round; None (and the
        cursor unchanged) when none is open."""
        open_idx = self.open_items()
        if not open_idx:
            return None
        if step > 0:
            after = [k for k in open_idx if k > self.item_index]
            self.item_index = after[0] if after else open_idx[0]
        else:
            before = [k for k in open_idx if k < self.item_index]
            self.item_index = before[-1] if before else open_idx[-1]
        return self.items[self.item_index]

    def open_item(self) -> ReviewItem:
        """The current item while it is open; else :class:`NoEditError` (a stray key)."""
        item = self.current_item()
        if item is None or item.key in self.model.reviewed:
            raise NoEditError("no open review item shown (N / Next): nothing changed")
        return item

    def accept(self) -> ReviewItem | None:
        """The current item looks right: mark it reviewed, go to the next."""
        self.model.mark_reviewed(self.open_item().key)
        return self.goto(+1)

    def reject(self) -> ReviewItem | None:
        """Remove the atom of the current item (one step with marking it), go to the next."""
        item = self.open_item()
        with self.model.group("review: delete"):
            if item.atom_id is not None and item.atom_id in self.model.ids:
                self.model.remove(item.atom_id, reason=f"review: {item.kind}")
            self.model.mark_reviewed(item.key)
        return self.goto(+1)

    def insert(self) -> ReviewItem | None:
        """Add an atom at the current item, snapped (element: the item's guess when the new
        element is ``auto``), mark it reviewed, go to the next. An atom within d_min of the
        peak is picked instead (:class:`NoEditError`) and the item stays open."""
        item = self.open_item()
        snapped = snap_to_maximum(self.volume, item.position, self.pixel_size_A,
                                  radius_A=self.snap_radius_A)
        element = None
        if item.suggested_action.startswith("add ") and self.new_element == "auto":
            element = item.suggested_action.split()[1]
        with self.model.group("review: insert"):
            self.add_snapped(snapped, element)
            self.model.mark_reviewed(item.key)
        return self.goto(+1)

    def counts(self) -> dict[str, int]:
        """:meth:`AtomModel.counts` plus ``open``: review items not yet dealt with."""
        counts = self.model.counts()
        counts["open"] = len(self.open_items())
        return counts
