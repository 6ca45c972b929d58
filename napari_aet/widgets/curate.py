"""Dock widget "Curate atoms": add, remove, move and relabel atoms by hand, with a review queue.

The widget copies the chosen atoms layer into a new "<name> curated" layer and edits that
one through a :class:`~napari_aet.core.curation.CurationSession` (the input layer is never
changed): the widget maps mouse and key events to the session and redraws. Every edit is
journalled to an autosave file next to the project, undoable without limit, and mirrored
row by row into the layer. The mouse and keys are bound on the curated layer, so they act
while it is the selected layer, and never while a text field has the keyboard.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from napari_aet import layers as L
from napari_aet.core import curation as C
from napari_aet.core.parameters import parameter_map
from napari_aet.widgets._base import StepWidget

#: Keyboard and mouse shortcuts (also shown in the widget and the README).
SHORTCUTS = (
    ("click", "add an atom: 2D snapped to the sub-voxel maximum near the click; "
              "3D at the brightest point along the view ray, refined; a peak within the "
              "minimum distance of an atom selects that atom instead"),
    ("drag an atom (2D)", "move it; re-snapped on release"),
    ("Shift+click", "select the nearest atom (3D: nearest to the view ray)"),
    ("Ctrl+click", "delete the nearest atom (3D: nearest to the view ray)"),
    ("Delete / Backspace", "delete the selected atoms"),
    ("E", "next element for the selected atoms"),
    ("N / P", "next / previous review item (centres the view and the slice on it)"),
    ("A", "accept the review item (looks right) and go to the next"),
    ("X", "delete the atom of the review item and go to the next"),
    ("I", "insert an atom at the review item (snapped) and go to the next"),
    ("T", "thin slab on/off (atoms within +-slab of the slice)"),
    ("Ctrl+Z / Ctrl+Shift+Z (Ctrl+Y)", "undo / redo"),
)

#: The review settings in the widget's "review settings" section; the non-atom level is in
#: the volume's own units, which no spin box fits (``curate-check --non-atom-level``,
#: ``review_queue(non_atom_level=)``), as the trace's absolute threshold.
REVIEW_ROWS = tuple(name for name in C.REVIEW_SETTINGS if name != "non_atom_level")


def _help_html() -> str:
    rows = "".join(f"<tr><td><b>{k}</b>&nbsp;</td><td>{v}</td></tr>" for k, v in SHORTCUTS)
    return f"<table>{rows}</table>"


def _has(modifiers, name: str) -> bool:
    return any(str(getattr(m, "name", m)).lower() in (name.lower(), {"control": "meta"}.get(
        name.lower(), name.lower())) for m in (modifiers or ()))


def _typing() -> bool:
    """True while a text field (line edit, spin box, editable combo box) has the keyboard."""
    from qtpy.QtWidgets import QAbstractSpinBox, QApplication, QPlainTextEdit, QTextEdit

    focus = QApplication.focusWidget()
    return isinstance(focus, (QLineEdit, QAbstractSpinBox, QTextEdit, QPlainTextEdit)) or (
        isinstance(focus, QComboBox) and focus.isEditable())


def _affine(transform) -> tuple[np.ndarray, np.ndarray]:
    """(matrix, offset) of an affine map of 3D points given as a function of one point."""
    offset = np.asarray(transform(np.zeros(3)), float)
    matrix = np.column_stack([np.asarray(transform(e), float) - offset for e in np.eye(3)])
    return matrix, offset


def min_distance_of(layer) -> float:
    """d_min (Angstrom) an atoms layer was traced with: the trace step's value in its
    provenance, else its preset's, else the ``generic`` preset's."""
    from napari_aet.core.presets import load_preset

    steps = [s for s in L.aet_meta(layer).get("provenance", []) if s.get("step") == "trace"] \
        if layer is not None else []
    params = steps[-1].get("params", {}) if steps else {}
    if params.get("min_distance_A") is not None:
        return float(params["min_distance_A"])
    try:
        preset = load_preset(params.get("preset") or "generic")
    except ValueError:
        preset = load_preset("generic")
    return float(preset["trace"]["min_distance_A"])


class _Inset(QWidget):
    """Three orthogonal slices (zy, zx, yx) of the volume around a point, with a cross."""

    SIZE = 110

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setLayout(QHBoxLayout())
        self.layout().setContentsMargins(0, 0, 0, 0)
        self.labels = []
        for _ in range(3):
            lab = QLabel()
            lab.setFixedSize(self.SIZE, self.SIZE)
            lab.setStyleSheet("background: black;")
            self.labels.append(lab)
            self.layout().addWidget(lab)
        self.images: list[np.ndarray] = []

    def show_point(self, volume, voxel, half_width: int = 8):
        c = np.clip(np.round(voxel).astype(int), 0, np.array(volume.shape) - 1)
        self.images = []
        for k, axis in enumerate((2, 1, 0)):  # x fixed (zy), y fixed (zx), z fixed (yx)
            sl = [slice(max(ci - half_width, 0), ci + half_width + 1) for ci in c]
            sl[axis] = c[axis]
            img = np.asarray(volume[tuple(sl)], float)
            lo, hi = np.percentile(img, 1), img.max()
            img8 = np.clip((img - lo) / max(hi - lo, 1e-12) * 255, 0, 255).astype(np.uint8)
            rgb = np.repeat(img8[..., None], 3, axis=2)
            others = [a for a in range(3) if a != axis]
            r0 = c[others[0]] - max(c[others[0]] - half_width, 0)
            c0 = c[others[1]] - max(c[others[1]] - half_width, 0)
            rgb[r0, :, :] = (rgb[r0, :, :] * 0.5 + np.array([255, 200, 0]) * 0.5).astype(np.uint8)
            rgb[:, c0, :] = (rgb[:, c0, :] * 0.5 + np.array([255, 200, 0]) * 0.5).astype(np.uint8)
            self.images.append(rgb)
            rgb = np.ascontiguousarray(rgb)
            qimg = QImage(rgb.data, rgb.shape[1], rgb.shape[0], 3 * rgb.shape[1],
                          QImage.Format_RGB888).copy()
            self.labels[k].setPixmap(QPixmap.fromImage(qimg).scaled(
                self.SIZE, self.SIZE, Qt.KeepAspectRatio, Qt.FastTransformation))


class CurateWidget(StepWidget):
    """Curate atoms: edit a traced model by hand, with snapping, review queue and autosave."""

    def __init__(self, napari_viewer, parent=None):
        viewer = napari_viewer  # napari passes the viewer by this name
        from napari.layers import Image, Points

        super().__init__(viewer, "Curate atoms", run_text="Start curating", parent=parent)
        self.atoms_chooser = self.add_layer_chooser("atoms", kinds=("atoms",), layer_types=(Points,))
        self.atoms_chooser.own_step = "curate"
        self.volume_chooser = self.add_layer_chooser("volume (snapping)", kinds=("volume",),
                                                     layer_types=(Image,))
        self.element_combo = QComboBox()
        self.element_combo.setEditable(True)
        self.element_combo.addItem("auto")
        self.element_combo.setToolTip("element of new atoms; 'auto' picks the element whose "
                                      "intensity is nearest the snapped peak")
        self.form.addRow("new atom element", self.element_combo)
        self.snap_radius = self._spin(1.0, 0.1, 5.0, "Å", "search radius around a click (Angstrom)")
        self.form.addRow("snap radius", self.snap_radius)
        self.slab = self._spin(1.0, 0.1, 20.0, "Å", "atoms within ± this of the slice are shown")
        self.slab.valueChanged.connect(lambda *_: self._apply_slab())
        self.form.addRow("slab ±", self.slab)
        self.slab_on = QCheckBox("thin slab in 2D")
        self.slab_on.setChecked(True)
        self.slab_on.toggled.connect(lambda *_: self._apply_slab())
        self.form.addRow("", self.slab_on)
        d_min = parameter_map(C.ReviewParameters)["d_min_A"]
        self.d_min = self._spin(min_distance_of(None), d_min.min, d_min.max, "Å",
                                "minimum distance between atoms (Angstrom): a click nearer an "
                                "atom selects it; default: the trace's value (its preset)")
        self.form.addRow(d_min.label, self.d_min)
        review = self.add_section("review settings", "settings of Build review queue; the "
                                  "defaults suit most reconstructions")
        self.review_params = self.add_parameters(C.ReviewParameters, REVIEW_ROWS, layout=review)
        self.atoms_chooser.currentTextChanged.connect(self._default_d_min)
        self._default_d_min()
        self.autosave_dir = QLineEdit("")
        self.autosave_dir.setPlaceholderText("next to the atoms file, else ~/.napari-aet/autosave")
        self.form.addRow("autosave folder", self.autosave_dir)
        self.run_button.clicked.connect(self.start_session)

        row = QHBoxLayout()
        self.queue_button = QPushButton("Build review queue")
        self.queue_button.clicked.connect(self.build_queue)
        self.prev_button = QPushButton("< Prev")
        self.prev_button.clicked.connect(lambda: self.goto_item(-1))
        self.next_button = QPushButton("Next >")
        self.next_button.clicked.connect(lambda: self.goto_item(+1))
        for b in (self.queue_button, self.prev_button, self.next_button):
            row.addWidget(b)
        self.layout().addLayout(row)
        row2 = QHBoxLayout()
        self.accept_button = QPushButton("Accept (A)")
        self.accept_button.clicked.connect(self.accept_item)
        self.delete_button = QPushButton("Delete (X)")
        self.delete_button.clicked.connect(self.delete_item)
        self.insert_button = QPushButton("Insert (I)")
        self.insert_button.clicked.connect(self.insert_item)
        self.undo_button = QPushButton("Undo")
        self.undo_button.clicked.connect(self.undo)
        self.redo_button = QPushButton("Redo")
        self.redo_button.clicked.connect(self.redo)
        for b in (self.accept_button, self.delete_button, self.insert_button, self.undo_button,
                  self.redo_button):
            row2.addWidget(b)
        self.layout().addLayout(row2)
        row3 = QHBoxLayout()
        self.restore_button = QPushButton("Restore autosave")
        self.restore_button.clicked.connect(lambda: self.restore_autosave())
        self.stop_button = QPushButton("Stop curating")
        self.stop_button.setToolTip("close the session: the curated layer and its autosave stay, "
                                    "the source layer is shown again")
        self.stop_button.clicked.connect(self.close_session)
        row3.addWidget(self.restore_button)
        row3.addWidget(self.stop_button)
        self.layout().addLayout(row3)
        self.item_label = QLabel("")
        self.item_label.setWordWrap(True)
        self.layout().addWidget(self.item_label)
        self.inset = _Inset()
        self.layout().addWidget(self.inset)
        self.counters = QLabel("")
        self.layout().addWidget(self.counters)
        help_label = QLabel(_help_html())
        help_label.setWordWrap(True)
        help_label.setStyleSheet("font-size: 10px;")
        self.layout().addWidget(help_label)
        self.add_stretch()

        self.session: C.CurationSession | None = None
        self.layer = None
        self.hidden_source = None  # the source layer, hidden while its curated copy is edited
        self._item_text = ""
        self.volume_layer = None
        self.journal = None
        self._syncing = False
        self._pending_remove = None
        self._set_enabled(False)

    @property
    def model(self) -> C.AtomModel | None:
        """The atom model being curated (None outside a session)."""
        return self.session.model if getattr(self, "session", None) is not None else None

    @property
    def items(self) -> list[C.ReviewItem]:
        """The review queue."""
        return self.session.items if self.session is not None else []

    @property
    def item_index(self) -> int:
        """Index of the current review item (-1: none)."""
        return self.session.item_index if self.session is not None else -1

    def _live(self) -> C.CurationSession:
        """The session with the form's current minimum distance, snap radius and element,
        and the layers' current frame."""
        session = self.session
        session.frame = self._frame(session.pixel_size_A)
        session.d_min_A = self.d_min.value()
        session.snap_radius_A = self.snap_radius.value()
        session.new_element = self.element_combo.currentText()
        return session

    def _attempt(self, action, *args):
        """Run a session action; one that changes nothing says why in the status line and
        selects the atom it picked instead. Returns the action's result (None if nothing)."""
        try:
            return action(*args)
        except C.NoEditError as why:
            self._refused(why)
            return None

    def _refused(self, why: C.NoEditError):
        """Say why an action changed nothing; select the atom it picked instead, if any."""
        if why.row is not None:
            self.layer.selected_data = {why.row}
        self.set_status(str(why))

    def _default_d_min(self, *_):
        if getattr(self, "model", None) is None:  # a running session keeps its value
            self.d_min.setValue(min_distance_of(self.atoms_chooser.layer()))

    def _spin(self, value, lo, hi, suffix, tip):
        box = QDoubleSpinBox()
        box.setRange(lo, hi)
        box.setDecimals(2)
        box.setSingleStep(0.1)
        box.setValue(value)
        box.setSuffix(f" {suffix}")
        box.setToolTip(tip)
        return box

    def _set_enabled(self, on: bool):
        for b in (self.queue_button, self.prev_button, self.next_button, self.accept_button,
                  self.delete_button, self.insert_button, self.undo_button, self.redo_button,
                  self.stop_button):
            b.setEnabled(on)

    # --- session ---------------------------------------------------------------------------
    def start_session(self):
        """Copy the chosen atoms layer into a curated layer and start editing it."""
        try:
            self._start_session()
        except Exception as exc:
            self.report_error(exc)

    def _start_session(self):
        source = self.atoms_chooser.layer()
        volume_layer = self.volume_chooser.layer()
        if source is None:
            raise ValueError("choose an atoms (Points) layer to curate")
        if volume_layer is None:
            raise ValueError("choose the volume the atoms were traced from (used for snapping)")
        atoms = L.atoms_from_layer(source)
        atoms = atoms.select(np.arange(len(atoms)))
        model = C.AtomModel(atoms)
        self._open(model, source, volume_layer)

    def _open(self, model: C.AtomModel, source, volume_layer, layer=None):
        """Start editing ``model``: in a new curated layer copied from ``source``, or in
        ``layer`` when given (a session resumed from a project file)."""
        from napari_aet.io.journal import Journal

        self.close_session()
        if np.ndim(volume_layer.data) != 3:
            raise ValueError(f"layer {volume_layer.name!r} is not a 3D volume")
        if layer is not None and (len(layer.data) != len(model)
                                  or not np.allclose(layer.data, model.positions)):
            raise ValueError(f"layer {layer.name!r} does not hold the curation model's atoms")
        if layer is None:
            name = source.name if source.name.endswith("curated") else f"{source.name} curated"
            name = L.unique_name(self.viewer, name)
        else:
            name = layer.name
        # the autosave opens first: no editing without it
        folder = self._autosave_folder(source)
        folder.mkdir(parents=True, exist_ok=True)
        journal = Journal.start(folder, name, model, on_error=self.report_error)
        self.volume_layer = volume_layer
        pixel_size_A = L.pixel_size_of(volume_layer)
        self.journal = journal
        if layer is None:
            px = L.aet_meta(source).get("pixel_size_A") or pixel_size_A
            prov = list(L.aet_meta(source).get("provenance", [])) + [
                L.provenance_step("curate", {"volume": volume_layer.name}, source=source.name)]
            data, kwargs, _ = L.atoms_tuple(model.to_atoms(order="row"), px, name=name,
                                            provenance=prov)
            kwargs.pop("out_of_slice_display", None)
            self.layer = self.viewer.add_points(data, **kwargs)
            if source.visible:  # else a deleted atom still shows in the source beneath
                source.visible = False
                self.hidden_source = source
        else:
            self.layer = layer
        self.session = C.CurationSession(
            model, np.asarray(volume_layer.data), pixel_size_A, d_min_A=self.d_min.value(),
            snap_radius_A=self.snap_radius.value(), frame=self._frame(pixel_size_A))
        self.layer.mode = "pan_zoom"
        self.layer.mouse_drag_callbacks.append(self._on_mouse)
        self.layer.events.data.connect(self._on_layer_data)
        self._bind_keys(self.layer)
        model.listeners.append(self._mirror)
        model.listeners.append(lambda *_: self._update_counters())
        model.listeners.append(self._follow_autosave)
        self.viewer.layers.selection.active = self.layer
        self.viewer.dims.events.ndisplay.connect(self._apply_slab)
        self.element_combo.clear()
        self.element_combo.addItems(["auto"] + self.session.elements())
        self._apply_slab()
        self._set_enabled(True)
        self._update_counters()
        self.set_status(f"curating {len(model)} atoms in {self.layer.name!r}; autosave "
                        f"{self.journal.journal_path}")

    def resume(self, model: C.AtomModel, layer, volume_layer, items=(), item_index: int = -1):
        """Continue a saved session (project file) in ``layer``: undo history, reviewed items
        and the review queue as they were."""
        self._open(model, layer, volume_layer, layer=layer)
        self.atoms_chooser.set_layer(layer)
        self.volume_chooser.set_layer(volume_layer)
        self.session.set_queue(items, item_index)
        self._update_counters()
        if self.session.current_item() is not None:
            self.show_item(self.session.current_item())
        self.set_status(f"resumed curating {len(model)} atoms in {layer.name!r} "
                        f"(revision {model.revision}); autosave {self.journal.journal_path}")

    def session_state(self):
        """The open session as a project-file :class:`CurationState`, or None."""
        from napari_aet.io.project import CurationState

        if self.model is None or self.layer is None:
            return None
        return CurationState(self.model, list(self.items), self.item_index,
                             self.volume_layer.name if self.volume_layer is not None else "")

    def close_session(self):
        """Stop editing (the curated layer and the autosave files stay)."""
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        if self.hidden_source is not None:
            if self.hidden_source in self.viewer.layers:
                self.hidden_source.visible = True
            self.hidden_source = None
        if self.layer is not None:
            if self._on_mouse in self.layer.mouse_drag_callbacks:
                self.layer.mouse_drag_callbacks.remove(self._on_mouse)
            self.layer.events.data.disconnect(self._on_layer_data)
        try:
            self.viewer.dims.events.ndisplay.disconnect(self._apply_slab)
        except (TypeError, ValueError, RuntimeError):
            pass
        self.session = None
        self.layer = None
        self._set_enabled(False)

    def _follow_autosave(self, _event=None):
        """napari's own Points tools are off while an edit is not autosaved (they would change
        the layer before the model could refuse); the widget's edits are refused by the model."""
        ok = self.journal is None or self.journal.error is None
        if self.layer is not None and self.layer.editable != ok:
            self.layer.editable = ok

    def _autosave_folder(self, source) -> Path:
        """*Autosave folder*, else the folder of the atoms file, else the default folder."""
        from napari_aet.io.journal import default_folder

        if self.autosave_dir.text().strip():
            return Path(self.autosave_dir.text().strip())
        src = getattr(getattr(source, "source", None), "path", None)
        return Path(src).parent if src else default_folder()

    def restore_autosave(self, session=None):
        """Rebuild a model from an autosave of the chosen atoms layer (after a crash): the
        only one found, else the one chosen from the list (``session``: an
        :class:`~napari_aet.io.journal.AutosaveSession`, skips the question)."""
        from napari_aet.io.journal import list_sessions, restore_session

        try:
            source = self.atoms_chooser.layer()
            volume_layer = self.volume_chooser.layer()
            if source is None or volume_layer is None:
                raise ValueError("choose the atoms layer and the volume first")
            if session is None:
                folder = self._autosave_folder(source)
                base = re.sub(r" \[\d+\]$", "", source.name)
                base = base if base.endswith("curated") else f"{base} curated"
                found = [s for s in list_sessions(folder, base) if not s.error and not s.live]
                if not found:
                    raise FileNotFoundError(f"no autosave of {base!r} in {folder}")
                session = found[0] if len(found) == 1 else self._choose_session(found)
                if session is None:
                    return
            restored = restore_session(session.path)
            self._open(restored.model, source, volume_layer)
            skipped = f"; skipped {'; '.join(restored.skipped)}" if restored.skipped else ""
            self.set_status(f"restored {len(restored.model)} atoms (revision "
                            f"{restored.model.revision}) from {session.path.name}{skipped}; "
                            f"autosaving to {self.journal.journal_path.name}")
        except Exception as exc:
            self.report_error(exc)

    def _choose_session(self, sessions):
        """Ask which autosave to restore; None when cancelled."""
        from qtpy.QtWidgets import QInputDialog

        labels = [s.describe() for s in sessions]
        text, ok = QInputDialog.getItem(self, "Restore autosave",
                                        "Autosaves of this layer, newest first:", labels, 0, False)
        return sessions[labels.index(text)] if ok and text in labels else None

    # --- coordinates -----------------------------------------------------------------------
    def _frame(self, pixel_size_A):
        """Curated-layer data -> volume frame (Angstrom, voxel i at i * pixel size), through
        napari's world coordinates: (matrix, offset) for :class:`CurationSession`."""
        return _affine(lambda p: np.asarray(self.volume_layer.world_to_data(
            self.layer.data_to_world(p)), float) * pixel_size_A)

    # --- the mirror: model -> layer -----------------------------------------------------
    def _style(self, element):
        return L.atom_colors([element])[0], float(L.atom_sizes([element])[0])

    def _mirror(self, event):
        layer = self.layer
        if layer is None:
            return
        self._syncing = True
        try:
            for ch in event["changes"]:
                kind = ch["type"]
                if kind == "add":
                    # style the new point through napari's "current" values (with nothing
                    # selected they only apply to new points): no full-array colour update
                    color, size = self._style(ch["element"])
                    layer.selected_data = set()
                    layer.current_face_color = color
                    layer.current_size = size
                    layer.add(np.asarray(ch["position"])[None])
                    row = len(layer.data) - 1
                    feats = layer.features
                    feats.loc[row, "element"] = ch["element"]
                    for k, v in ch["features"].items():
                        if k in feats.columns:
                            feats.loc[row, k] = v
                    if "provenance" in feats.columns:
                        feats.loc[row, "provenance"] = ch["provenance"]
                    if not np.allclose(layer.face_color[row], color):
                        self._style_row(row, ch["element"])
                elif kind == "remove":
                    layer.remove([ch["row"]])
                elif kind == "move":
                    data = layer.data
                    data[ch["row"]] = ch["position"]
                    layer.data = data
                elif kind == "relabel":
                    layer.features.loc[ch["row"], "element"] = ch["element"]
                    self._style_row(ch["row"], ch["element"])
                if kind in ("move", "relabel") and "provenance" in layer.features.columns:
                    layer.features.loc[ch["row"], "provenance"] = ch["provenance"]
        finally:
            self._syncing = False

    def _style_row(self, row, element):
        color, size = self._style(element)
        colors = np.array(self.layer.face_color)
        colors[row] = color
        self.layer.face_color = colors
        sizes = np.array(self.layer.size, float)
        sizes[row] = size
        self.layer.size = sizes

    def _on_layer_data(self, event):
        """Edits made with napari's own Points tools are recorded in the model too."""
        if self._syncing or self.model is None:
            return
        action = str(getattr(event, "action", ""))
        indices = [int(i) for i in (getattr(event, "data_indices", ()) or ())]
        if action.endswith("REMOVING") or action == "removing":
            self._pending_remove = self.model.ids[indices].copy()
            return
        mirror_muted = self._mirror in self.model.listeners
        if mirror_muted:
            self.model.listeners.remove(self._mirror)
        try:
            if action.endswith("REMOVED") or action == "removed":
                if self._pending_remove is not None and len(self._pending_remove):
                    self.model.remove(self._pending_remove, reason="deleted in napari")
                self._pending_remove = None
            elif action.endswith("ADDED") or action == "added":
                data = np.asarray(self.layer.data)
                element = self._live().element_for(None)
                old = len(self.model)
                with self.model.group("add"):
                    for row in range(old, len(data)):
                        self.model.add(data[row], element)
                self._syncing = True
                try:
                    for row in range(old, len(data)):
                        self.layer.features.loc[row, "element"] = self.model.elements[row]
                        if "provenance" in self.layer.features.columns:
                            self.layer.features.loc[row, "provenance"] = "added"
                        self._style_row(row, self.model.elements[row])
                finally:
                    self._syncing = False
            elif action.endswith("CHANGED") or action == "changed":
                data = np.asarray(self.layer.data)
                with self.model.group("move"):
                    for row in indices:
                        if 0 <= row < len(self.model) and not np.allclose(
                                data[row], self.model.positions[row]):
                            self.model.move(self.model.ids[row], data[row])
        finally:
            if mirror_muted:
                self.model.listeners.insert(0, self._mirror)

    # --- editing actions -------------------------------------------------------------------
    def add_at_world(self, world_position):
        """Add an atom snapped near a world position (2D click); returns its id, or None
        when an atom is already there (it is selected)."""
        return self._attempt(self._live().add_at, self.layer.world_to_data(world_position))

    def add_along_ray(self, world_position, view_direction, dims_displayed):
        """Add an atom at the brightest point along a view ray (3D click); returns id or None."""
        start, end = self.volume_layer.get_ray_intersections(
            np.asarray(world_position), np.asarray(view_direction), list(dims_displayed), world=True)
        if start is None or end is None:
            return None
        session = self._live()
        return self._attempt(session.add_on_ray, np.asarray(start, float)[-3:] * session.pixel_size_A,
                             np.asarray(end, float)[-3:] * session.pixel_size_A)

    def _nearest_ray(self, world_position, view_direction, max_distance=np.inf):
        """Row of the atom nearest a view ray given in world coordinates, or None."""
        origin = self.layer.world_to_data(np.asarray(world_position)[-3:])
        ahead = self.layer.world_to_data(np.asarray(world_position)[-3:]
                                         + np.asarray(view_direction)[-3:])
        return self.session.nearest_to_ray(origin, ahead - origin, max_distance)

    def _nearest_2d(self, data_pos, dims_displayed, max_distance=np.inf):
        """Row of the atom nearest a click in the displayed plane, among atoms in the slab."""
        half = self.slab.value() if self.slab_on.isChecked() else 0.5
        return self.session.nearest_in_slab(data_pos, dims_displayed, half, max_distance)

    def delete_rows(self, rows, reason="deleted by hand"):
        self.session.remove(rows, reason=reason)

    def delete_selected(self):
        if self.layer is None or self.session is None:
            return
        rows = sorted(self.layer.selected_data)
        self.layer.selected_data = set()
        self.delete_rows(rows)

    def cycle_element(self):
        if self.session is not None:
            self._attempt(self.session.cycle_element, self.layer.selected_data)

    def undo(self):
        if self.model is not None and not self.model.undo():
            self.set_status("nothing to undo")

    def redo(self):
        if self.model is not None and not self.model.redo():
            self.set_status("nothing to redo")

    # --- mouse ---------------------------------------------------------------------------------
    def _on_mouse(self, layer, event):
        if self.model is None or getattr(event, "button", 1) not in (None, 1):
            return
        dims = list(event.dims_displayed)
        world = np.asarray(event.position, float)
        data_pos = np.asarray(layer.world_to_data(world), float)
        ctrl = _has(event.modifiers, "Control")
        shift = _has(event.modifiers, "Shift")
        try:
            if len(dims) == 3:
                view = np.asarray(event.view_direction, float)
                if ctrl or shift:
                    radius = 2 * float(np.max(layer.size)) if len(layer.size) else 2.0
                    row = self._nearest_ray(world, view, radius)
                    if row is None:
                        return
                    if ctrl:
                        self.delete_rows([row])
                    else:
                        layer.selected_data = {row}
                    return
                yield
                moved = False
                while event.type == "mouse_move":
                    moved = True
                    yield
                if not moved:
                    self.add_along_ray(world, view, dims)
                return
            # 2D
            if ctrl or shift:  # only an atom near the click, as in 3D: never a distant one
                radius = 2 * float(np.max(layer.size)) if len(layer.size) else 2.0
                row = self._nearest_2d(data_pos, dims, radius)
                if row is None:
                    self.set_status(f"no atom within {radius:.1f} A of the click in this slab")
                elif ctrl:
                    self.delete_rows([row])
                else:
                    layer.selected_data = {row}
                return
            row = self._nearest_2d(data_pos, dims)
            size = float(layer.size[row]) if row is not None else 0.0
            hit = row is not None and np.linalg.norm(
                self.model.positions[row, dims] - data_pos[dims]) <= max(size / 2, 0.3)
            if hit:
                layer.selected_data = {row}
                atom_id = int(self.model.ids[row])
                start = self.model.positions[row].copy()
                old_pan = layer.mouse_pan
                layer.mouse_pan = False
                yield
                moved = False
                last = world
                while event.type == "mouse_move":
                    moved = True
                    last = np.asarray(event.position, float)
                    self._syncing = True
                    try:
                        data = layer.data
                        preview = data[row].copy()
                        preview[dims] = np.asarray(layer.world_to_data(last), float)[dims]
                        data[row] = preview
                        layer.data = data
                    finally:
                        self._syncing = False
                    yield
                layer.mouse_pan = old_pan
                if moved:  # the drop: displayed axes from the cursor, depth kept
                    drop = start.copy()
                    drop[dims] = np.asarray(layer.world_to_data(last), float)[dims]
                    try:
                        self._live().move(atom_id, drop)
                    except C.NoEditError as why:
                        self._put_back(self.model.row_of(atom_id))
                        self.set_status(str(why))
                return
            yield
            moved = False
            while event.type == "mouse_move":
                moved = True
                yield
            if not moved:
                self.add_at_world(world[-3:])
        except Exception as exc:
            self.report_error(exc)

    def _put_back(self, row):
        """Show the model's position of ``row`` again (after a drag preview)."""
        self._syncing = True
        try:
            data = self.layer.data
            data[row] = self.model.positions[row]
            self.layer.data = data
        finally:
            self._syncing = False

    # --- review queue ----------------------------------------------------------------------------
    def build_queue(self):
        """Rank what deserves a look (in a worker) with the minimum distance and the review
        settings; the first item is shown when done."""
        if self.session is None:
            return
        session = self._live()
        atoms = session.review_atoms()
        settings = self.review_params.values()

        def job():
            yield {"iteration": 0}
            return session.review_queue(atoms, settings)

        self.start(job, on_finished=self.set_queue, total=1)

    def set_queue(self, items):
        if self.session is None:  # stopped while the queue was built
            return
        self.session.set_queue(items)
        self._update_counters()
        if self.items:
            self.goto_item(+1)
        else:
            self.item_label.setText("nothing to review")

    def goto_item(self, step: int = 1):
        """Go to the next (step > 0) or previous open review item and centre the view on it."""
        if self.session is not None:
            self._show(self.session.goto(step))

    def current_item(self):
        return self.session.current_item() if self.session is not None else None

    def _show(self, item):
        """Show the review item the cursor moved to (None: the review is done)."""
        if item is None:
            self.item_label.setText("review done: no open items")
        else:
            self.show_item(item)

    def show_item(self, item: C.ReviewItem):
        """Set the slice and camera centre on an item, show the inset and its description."""
        voxel = np.asarray(item.position, float) / self.session.pixel_size_A
        world = np.asarray(self.volume_layer.data_to_world(voxel), float)
        dims = self.viewer.dims
        displayed = list(dims.displayed)
        nd = dims.ndim
        for axis in range(nd):
            if axis not in displayed:
                dims.set_point(axis, world[axis - (nd - 3)])
        self.viewer.camera.center = tuple(world[[a - (nd - 3) for a in displayed]]) \
            if dims.ndisplay == 2 else tuple(world)
        if item.atom_id is not None and self.layer is not None:
            try:
                self.layer.selected_data = {self.model.row_of(item.atom_id)}
            except KeyError:
                self.layer.selected_data = set()
        self.inset.show_point(self.session.volume, voxel)
        self._show_marker(world)
        self._item_text = (f"<b>{item.kind}</b> ({item.score:.2f}): {item.suggested_action}"
                           f"<br>{item.detail}")
        self._update_counters()

    def _show_marker(self, world):
        """A yellow ring on the current review item (its own small overlay layer)."""
        name = "review item"
        marker = self.viewer.layers[name] if name in self.viewer.layers else None
        data = np.asarray(world, float)[None]
        if marker is None:
            marker = self.viewer.add_points(
                data, name=name, size=3.0, symbol="ring", face_color="#ffcc00",
                border_width=0, projection_mode="all",
                metadata=L.aet_metadata("overlay", self.session.pixel_size_A))
            self.viewer.layers.selection.active = self.layer  # keys and clicks stay ours
        else:
            marker.data = data

    def _review(self, action):
        """Run a review action of the session and show the item it moved to; a stray key
        (no open item shown) changes nothing and says so."""
        try:
            item = action()
        except C.NoEditError as why:
            self._refused(why)
            return
        self._show(item)

    def accept_item(self):
        """The review item looks right: go to the next (A)."""
        if self.session is not None:
            self._review(self.session.accept)

    def delete_item(self):
        """Delete the atom of the review item and go to the next (X)."""
        if self.session is not None:
            self._review(self.session.reject)

    def insert_item(self):
        """Insert an atom at the review item, snapped, and go to the next (I)."""
        if self.session is not None:
            self._review(self._live().insert)

    # --- display -------------------------------------------------------------------------------
    def _apply_slab(self, *_):
        """Thin slab in 2D: atoms within +-slab of the slice shown, the others hidden."""
        if self.layer is None:
            return
        dims = self.viewer.dims
        thickness = list(dims.thickness)
        if dims.ndisplay == 2 and self.slab_on.isChecked():
            self.layer.projection_mode = "all"
            for axis in dims.not_displayed:
                thickness[axis] = 2 * self.slab.value()
        else:
            self.layer.projection_mode = "none"
            for axis in dims.not_displayed:
                thickness[axis] = 1.0
        dims.thickness = tuple(thickness)

    def _update_counters(self):
        if self.session is None:
            self.counters.setText("")
            return
        c = self.session.counts()
        open_items = c["open"]
        if self.current_item() is not None:  # one count, kept current through undo and redo
            self.item_label.setText(f"{self._item_text}<br>item {self.item_index + 1} of "
                                    f"{len(self.items)}, {open_items} open")
        self.counters.setText(
            f"atoms {c['total']} | added {c['added']} | removed {c['removed']} | moved "
            f"{c['moved']} | relabelled {c['relabelled']} | left to review {open_items}")

    # --- keys ----------------------------------------------------------------------------------
    def _bind_keys(self, layer):
        """Keys on the curated layer: they act while it is the active layer of this session,
        never while a text field has the keyboard (Qt passes on the keys a field ignores,
        such as Ctrl+Y)."""
        def bind(key, fn):
            def handler(_layer):
                if _typing():
                    return
                if _layer is not self.layer:  # the layer of a stopped session
                    self.set_status(f"{_layer.name!r} is not being curated: {key} does nothing")
                    return
                try:
                    fn()
                except Exception as exc:
                    self.report_error(exc)
            layer.bind_key(key, handler, overwrite=True)

        bind("Control-Z", self.undo)
        bind("Control-Shift-Z", self.redo)
        bind("Control-Y", self.redo)
        bind("Delete", self.delete_selected)
        bind("Backspace", self.delete_selected)
        bind("E", self.cycle_element)
        bind("N", lambda: self.goto_item(+1))
        bind("P", lambda: self.goto_item(-1))
        bind("A", self.accept_item)
        bind("X", self.delete_item)
        bind("I", self.insert_item)
        bind("T", lambda: self.slab_on.setChecked(not self.slab_on.isChecked()))
