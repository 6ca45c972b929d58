"""The "Curate atoms" dock widget, driven by mock mouse events and its key bindings.

Mouse events are small mock objects (``position``, ``view_direction``, ``dims_displayed``,
``modifiers``, ``type``) run through the curated layer's ``mouse_drag_callbacks`` with the
generator protocol of napari drags (press, moves, release), as napari-threedee's tests do.
The volume is the noise-free voxelized truth of a small silica crop, so the true atom
positions are the known answer for every snap.
"""

from __future__ import annotations

import contextlib
import inspect
import re

import numpy as np
import pytest

from napari_aet.core.geometry import grid_center
from napari_aet.core.simulate import phantom, voxelize_atoms
from napari_aet.layers import atom_colors, atoms_tuple, volume_tuple
from napari_aet.widgets.curate import CurateWidget

PX = 0.35
SHAPE = (48, 48, 48)


@pytest.fixture(scope="module")
def silica():
    """A 16.8 A cube of silica glass: (volume (nz, ny, nx), true atoms in the volume frame)."""
    atoms = phantom("silica").atoms
    inner = atoms.select(np.all(np.abs(atoms.positions) < 6.0, axis=1))
    truth = inner.shifted(grid_center(SHAPE) * PX)
    return voxelize_atoms(truth, SHAPE, PX, 0.40).astype(np.float32), truth


# --- mock mouse events --------------------------------------------------------------------

class MockEvent:
    """The fields of a napari mouse event that the curate callbacks read."""

    def __init__(self, position, view_direction=(1.0, 0.0, 0.0), dims_displayed=(1, 2),
                 modifiers=(), type="mouse_press"):
        self.position = tuple(float(v) for v in position)
        self.view_direction = tuple(float(v) for v in view_direction)
        self.dims_displayed = list(dims_displayed)
        self.modifiers = tuple(modifiers)
        self.type = type
        self.button = 1
        self.is_dragging = False


def mouse(layer, position, drag=(), **kwargs):
    """Press at ``position`` (world, Angstrom), move through ``drag``, release.

    Runs every drag callback of ``layer`` as napari does: call, advance the generator to
    its first ``yield`` (press), once per move, and once more on release. Returns the
    event, whose fields the test can inspect.
    """
    event = MockEvent(position, **kwargs)
    gens = []
    for callback in list(layer.mouse_drag_callbacks):
        gen = callback(layer, event)
        if inspect.isgenerator(gen):
            with contextlib.suppress(StopIteration):
                next(gen)
                gens.append(gen)
    for p in drag:
        event.type, event.position, event.is_dragging = "mouse_move", tuple(p), True
        for gen in list(gens):
            try:
                next(gen)
            except StopIteration:
                gens.remove(gen)
        if drag_hook is not None:
            drag_hook(event)
    event.type, event.is_dragging = "mouse_release", False
    for gen in gens:
        with contextlib.suppress(StopIteration):
            next(gen)
    return event


drag_hook = None  # set by a test to look at the layer in the middle of a drag


def press_key(layer, key):
    """Run the handler bound to ``key`` on ``layer`` (as napari's keymap handler does)."""
    from napari.utils.key_bindings import coerce_keybinding

    wanted = coerce_keybinding(key)
    for binding, handler in layer.keymap.items():
        if binding == wanted:
            return handler(layer)
    raise KeyError(f"no key binding {key!r} on layer {layer.name!r}")


# --- set-up and checks ----------------------------------------------------------------------

def start(viewer, silica, tmp_path, drop=(), extra=None, name="atoms"):
    """Add the volume and an atoms layer (truth without rows ``drop``, plus ``extra``);
    dock the widget and start curating. Returns (widget, source layer)."""
    vol, truth = silica
    data, kwargs, _ = volume_tuple(vol, PX, name="silica volume")
    viewer.add_image(data, **kwargs)
    atoms = truth.select(np.setdiff1d(np.arange(len(truth)), list(drop)))
    if extra is not None:
        from napari_aet.core.atoms import Atoms

        atoms = Atoms.concatenate([atoms, extra])
    data, kwargs, _ = atoms_tuple(atoms, PX, name=name)
    source = viewer.add_points(data, **kwargs)
    w = CurateWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.atoms_chooser.set_layer(source)
    w.volume_chooser.set_layer(viewer.layers["silica volume"])
    w.autosave_dir.setText(str(tmp_path))
    w.run_button.click()
    assert w.last_error is None, w.last_error
    assert w.layer is not None and w.layer is not source
    return w, source


def assert_in_sync(w):
    """The curated Points layer shows exactly the model: count, positions, elements, styles."""
    layer, model = w.layer, w.model
    assert len(layer.data) == len(model)
    np.testing.assert_array_equal(np.asarray(layer.data), model.positions)
    assert layer.features["element"].astype(str).tolist() == model.elements.tolist()
    assert layer.features["provenance"].astype(str).tolist() == model.provenance.tolist()
    np.testing.assert_allclose(layer.face_color, atom_colors(model.elements), atol=1e-6)


def nearest(positions, p):
    d = np.linalg.norm(np.asarray(positions) - np.asarray(p), axis=1)
    return int(np.argmin(d)), float(d.min())


def clear_in_plane(truth, row, min_in_plane=1.0, slab=1.0, margin=3.0):
    """True for an atom away from the edges with no other atom of its slab nearby in (y, x)."""
    p = truth.positions[row]
    if np.any(p < margin) or np.any(p > (np.array(SHAPE) - 1) * PX - margin):
        return False
    others = np.delete(truth.positions, row, axis=0)
    in_slab = np.abs(others[:, 0] - p[0]) <= slab
    return bool(np.all(np.linalg.norm(others[in_slab, 1:] - p[1:], axis=1) > min_in_plane))


def on_slice(viewer, z):
    """Move the slice to ``z`` (Angstrom); returns the slice napari actually shows."""
    viewer.dims.set_point(0, z)
    return float(viewer.dims.point[0])


def counters(w) -> dict[str, int]:
    return {k.strip().replace(" ", "_"): int(v)
            for k, v in re.findall(r"([a-z ]+?) (\d+)(?: \||$)", w.counters.text())}


# --- tests --------------------------------------------------------------------------------------

def test_2d_click_add_delete_move_undo_redo(make_napari_viewer, silica, tmp_path):
    global drag_hook
    _, truth = silica
    si = [r for r in np.flatnonzero(truth.elements == "Si") if clear_in_plane(truth, r)]
    missing, moved = si[0], si[1]
    # the traced model lacks one Si atom and has another 0.6 A off its true place
    off = truth.positions[moved] + [0.0, 0.6, 0.0]
    viewer = make_napari_viewer()
    w, _ = start(viewer, silica, tmp_path, drop=[missing, moved],
                 extra=truth.select([moved]).shifted([0.0, 0.6, 0.0]))
    layer, model = w.layer, w.model
    n0 = len(model)
    assert_in_sync(w)

    # click 0.3 A from the missing atom (in the plane, on the nearest slice): snapped to it
    target = truth.positions[missing]
    z = on_slice(viewer, target[0])
    assert abs(z - target[0]) <= PX / 2
    mouse(layer, [z, target[1] + 0.3 * np.cos(0.7), target[2] + 0.3 * np.sin(0.7)])
    assert w.last_error is None, w.last_error
    assert len(model) == n0 + 1
    new_row, err = nearest(model.positions, target)
    assert new_row == len(model) - 1 and err < 0.2, f"added {err:.3f} A from the true atom"
    assert model.provenance[new_row] == "added" and model.elements[new_row] == "Si"
    assert_in_sync(w)

    # Ctrl+click deletes the nearest atom (here an O atom seen on another slice)
    o = next(r for r in np.flatnonzero(truth.elements == "O") if clear_in_plane(truth, r))
    victim = truth.positions[o]
    z = on_slice(viewer, victim[0])
    mouse(layer, [z, victim[1] + 0.25, victim[2] - 0.1], modifiers=["Control"])
    assert len(model) == n0
    assert nearest(model.positions, victim)[1] > 1.0  # gone
    assert model.removed[-1]["reason"] == "deleted by hand"
    assert np.allclose(model.removed[-1]["position"], victim)
    assert_in_sync(w)
    # a Ctrl+click far from every atom of the slab deletes nothing
    mouse(layer, [z, -40.0, -40.0], modifiers=["Control"])
    assert len(model) == n0 and "no atom within" in w.status.text()
    assert_in_sync(w)

    # drag the misplaced atom towards its true place: the layer follows during the drag,
    # the model changes once, on release, and the drop is re-snapped to the maximum
    true_moved = truth.positions[moved]
    z = on_slice(viewer, off[0])
    moved_row, _ = nearest(model.positions, off)
    moved_id = int(model.ids[moved_row])
    path = [[z, off[1] - 0.15 * k, off[2] + 0.05 * k] for k in range(1, 6)]  # ends 0.76 A away
    seen = []

    def look(event):
        seen.append((np.asarray(layer.data)[moved_row].copy(), model.positions[moved_row].copy()))

    drag_hook = look
    try:
        mouse(layer, [z, off[1], off[2]], drag=path)
    finally:
        drag_hook = None
    assert w.last_error is None, w.last_error
    np.testing.assert_allclose(seen[-1][0][1:], path[-1][1:])  # preview under the cursor
    np.testing.assert_array_equal(seen[-1][1], off)  # model untouched until release
    row = model.row_of(moved_id)
    err = np.linalg.norm(model.positions[row] - true_moved)
    assert err < 0.2, f"moved atom {err:.3f} A from its true place"
    assert model.provenance[row] == "moved" and len(model) == n0
    assert_in_sync(w)
    after_all = model.positions.copy()

    # three undos: move, delete, add
    w.undo()
    np.testing.assert_allclose(model.positions[model.row_of(moved_id)], off)
    assert_in_sync(w)
    press_key(layer, "Control-Z")
    assert len(model) == n0 + 1 and nearest(model.positions, victim)[1] < 1e-9
    assert_in_sync(w)
    w.undo_button.click()
    assert len(model) == n0 and nearest(model.positions, target)[1] > 1.0
    assert set(model.provenance) == {"auto"}
    assert_in_sync(w)
    # three redos
    w.redo()
    assert len(model) == n0 + 1 and nearest(model.positions, target)[1] < 0.2
    assert_in_sync(w)
    press_key(layer, "Control-Shift-Z")
    assert len(model) == n0 and nearest(model.positions, victim)[1] > 1.0
    assert_in_sync(w)
    press_key(layer, "Control-Y")
    assert_in_sync(w)
    assert sorted(map(tuple, model.positions)) == sorted(map(tuple, after_all))
    w.redo()
    assert "nothing to redo" in w.status.text()


def test_3d_ray_add_and_delete(make_napari_viewer, silica, tmp_path):
    _, truth = silica
    pos = truth.positions
    si_all = np.flatnonzero(truth.elements == "Si")
    rng = np.random.default_rng(3)

    def clear_ray(row, direction, others):
        rel = pos[others] - pos[row]
        t = rel @ direction
        perp = np.linalg.norm(rel - t[:, None] * direction, axis=1)
        return np.all(perp > 1.2)

    choice = None
    for row in si_all:
        if np.any(pos[row] < 4) or np.any(pos[row] > (SHAPE[0] - 1) * PX - 4):
            continue
        for _ in range(20):
            d = np.array([1.0, 0, 0]) + rng.normal(0, 0.35, 3)
            d /= np.linalg.norm(d)
            if clear_ray(row, d, np.setdiff1d(si_all, [row])):
                choice = row, d
                break
        if choice:
            break
    assert choice is not None
    missing, direction = choice
    target = pos[missing]
    viewer = make_napari_viewer()
    w, _ = start(viewer, silica, tmp_path, drop=[missing])
    layer, model = w.layer, w.model
    n0 = len(model)
    viewer.dims.ndisplay = 3
    assert layer.mode == "pan_zoom"  # napari's own point adding (arbitrary depth) is off

    # a click whose view ray passes through the missing atom: the brightest point on the ray
    ray = dict(view_direction=direction, dims_displayed=[0, 1, 2])
    mouse(layer, target - 20 * direction, **ray)
    assert w.last_error is None, w.last_error
    assert len(model) == n0 + 1
    err = np.linalg.norm(model.positions[-1] - target)
    assert err < 0.2, f"3D add {err:.3f} A from the true atom"
    assert model.elements[-1] == "Si"
    assert_in_sync(w)

    # a ray that misses the volume adds nothing
    mouse(layer, [-50.0, -50.0, -50.0], view_direction=[0, 1.0, 0], dims_displayed=[0, 1, 2])
    assert len(model) == n0 + 1

    # Ctrl+click: the atom nearest to the ray is deleted (even one deep behind others)
    o = np.flatnonzero(truth.elements == "O")
    victim = pos[o[len(o) // 2]]
    d2 = np.array([0.3, 1.0, -0.2]) / np.linalg.norm([0.3, 1.0, -0.2])
    mouse(layer, victim - 25 * d2 + [0.0, 0.0, 0.15], modifiers=["Control"],
          view_direction=d2, dims_displayed=[0, 1, 2])
    assert len(model) == n0
    assert nearest(model.positions, victim)[1] > 1.0
    assert_in_sync(w)
    w.undo()
    assert len(model) == n0 + 1 and nearest(model.positions, victim)[1] == 0.0
    assert_in_sync(w)
    # Shift+click selects the atom nearest the ray, without editing
    mouse(layer, victim - 25 * d2, modifiers=["Shift"], view_direction=d2, dims_displayed=[0, 1, 2])
    assert layer.selected_data == {nearest(model.positions, victim)[0]}
    assert len(model) == n0 + 1


def test_keys_relabel_and_napari_native_delete(make_napari_viewer, silica, tmp_path):
    _, truth = silica
    viewer = make_napari_viewer()
    w, _ = start(viewer, silica, tmp_path)
    layer, model = w.layer, w.model
    n0 = len(model)
    si_row = int(np.flatnonzero(model.elements == "Si")[0])
    o_row = int(np.flatnonzero(model.elements == "O")[0])

    # the element key cycles the element of the selected atoms (Si <-> O here), as one step
    layer.selected_data = {si_row, o_row}
    press_key(layer, "E")
    assert model.elements[si_row] == "O" and model.elements[o_row] == "Si"
    assert model.provenance[si_row] == "relabelled"
    assert layer.size[si_row] == pytest.approx(0.9) and layer.size[o_row] == pytest.approx(1.1)
    assert_in_sync(w)
    press_key(layer, "Control-Z")
    assert model.elements[si_row] == "Si" and model.elements[o_row] == "O"
    assert_in_sync(w)
    # a fixed element from the combo box relabels new atoms
    w.element_combo.setCurrentText("O")
    assert w._live().element_for(None) == "O"

    # deleting with napari's own tools is recorded in the model (and undone as one step)
    rows = [3, 10, 42]
    gone = truth.positions[rows]
    layer.selected_data = set(rows)
    layer.remove_selected()
    assert len(model) == n0 - 3
    assert [r["reason"] for r in model.removed] == ["deleted in napari"] * 3
    np.testing.assert_array_equal(np.array([r["position"] for r in model.removed]), gone)
    assert_in_sync(w)
    w.undo()
    assert len(model) == n0 and not model.removed
    assert_in_sync(w)
    # the Delete key removes the selection through the model
    layer.selected_data = {0}
    press_key(layer, "Delete")
    assert len(model) == n0 - 1 and nearest(model.positions, truth.positions[0])[1] > 1.0
    assert_in_sync(w)
    # a point added with napari's own tool becomes a model atom (element from the combo)
    layer.add(np.array([[8.0, 8.0, 8.0]]))
    assert len(model) == n0 and model.elements[-1] == "O" and model.provenance[-1] == "added"
    assert_in_sync(w)


def test_review_queue_navigation_and_actions(make_napari_viewer, qtbot, silica, tmp_path):
    from napari_aet.core.atoms import Atoms

    _, truth = silica
    si = [r for r in np.flatnonzero(truth.elements == "Si") if clear_in_plane(truth, r)]
    missing = si[0]
    # a false atom in an empty place (nothing bright there)
    grid = np.stack(np.meshgrid(*[np.linspace(3, 13.5, 22)] * 3, indexing="ij"), -1).reshape(-1, 3)
    dist = np.min(np.linalg.norm(grid[:, None] - truth.positions[None], axis=-1), axis=1)
    false_pos = grid[np.argmax(dist)]
    assert dist.max() > 1.8
    double = truth.positions[si[1]] + [0.0, 0.0, 0.5]  # a duplicate 0.5 A from a true atom
    viewer = make_napari_viewer()
    w, _ = start(viewer, silica, tmp_path, drop=[missing],
                 extra=Atoms([false_pos, double], ["O", "O"]))
    layer, model = w.layer, w.model
    n0 = len(model)
    false_id = int(model.ids[nearest(model.positions, false_pos)[0]])

    w.queue_button.click()
    qtbot.waitUntil(lambda: w.worker is None, timeout=30000)
    assert w.last_error is None, w.last_error
    items = w.items
    assert len(items) >= 3
    kinds = {it.kind for it in items}
    assert {"missed_atom", "close_pair"} <= kinds
    assert any(it.atom_id == false_id for it in items)
    open0 = counters(w)["left_to_review"]
    assert open0 == len(items)

    def check_centred():
        it = w.current_item()
        z, y, x = it.position
        assert abs(viewer.dims.point[0] - z) <= PX / 2 + 1e-9  # the slice holds the item
        np.testing.assert_allclose(viewer.camera.center[-2:], (y, x), atol=1e-6)
        assert len(w.inset.images) == 3 and all(im.size for im in w.inset.images)
        np.testing.assert_allclose(viewer.layers["review item"].data[0], it.position, atol=1e-9)
        assert viewer.layers.selection.active is layer  # keys stay with the curated layer

    assert w.item_index == 0  # the first item is shown at once
    check_centred()
    press_key(layer, "N")
    assert w.item_index == 1
    check_centred()
    press_key(layer, "P")
    assert w.item_index == 0
    check_centred()

    def go_to(pred):
        for _ in range(len(items) + 1):
            if pred(w.current_item()):
                return
            press_key(layer, "N")
        raise AssertionError("item not reached with N")

    # insert at the missed atom: snapped onto the true atom, element from the queue's guess
    go_to(lambda it: it.kind == "missed_atom" and np.linalg.norm(
        it.position - truth.positions[missing]) < 0.5)
    press_key(layer, "I")
    assert len(model) == n0 + 1
    assert np.linalg.norm(model.positions[-1] - truth.positions[missing]) < 0.2
    assert model.elements[-1] == "Si"
    c = counters(w)
    assert c["added"] == 1 and c["left_to_review"] == open0 - 1
    assert_in_sync(w)

    # delete the false atom from its item
    go_to(lambda it: it.atom_id == false_id)
    press_key(layer, "X")
    assert len(model) == n0
    assert false_id not in model.ids.tolist()
    c = counters(w)
    assert c["removed"] == 1 and c["left_to_review"] == open0 - 2
    assert_in_sync(w)

    # accept the current item: nothing changes but the count left
    assert c["left_to_review"] >= 1
    key = w.current_item().key
    w.accept_button.click()
    assert key in model.reviewed and len(model) == n0
    assert counters(w)["left_to_review"] == open0 - 3
    # undo brings the last review action back into the queue
    w.undo()
    assert key not in model.reviewed
    assert counters(w)["left_to_review"] == open0 - 2


def test_thin_slab(make_napari_viewer, silica, tmp_path):
    _, truth = silica
    viewer = make_napari_viewer()
    w, _ = start(viewer, silica, tmp_path)
    layer = w.layer
    z = on_slice(viewer, 8.0)

    def shown():
        layer.refresh()
        return set(np.asarray(layer._view_indices).tolist())

    dz = np.abs(w.model.positions[:, 0] - z)
    assert w.slab_on.isChecked() and w.slab.value() == pytest.approx(1.0)
    visible = shown()
    assert set(np.flatnonzero(dz < 0.99)) <= visible  # every atom within +-1 A
    assert not visible & set(np.flatnonzero(dz > 1.01))  # and none further away
    assert 5 < len(visible) < len(truth) // 2
    # a thicker slab shows more
    w.slab.setValue(2.0)
    visible2 = shown()
    assert set(np.flatnonzero(dz < 1.99)) <= visible2
    assert not visible2 & set(np.flatnonzero(dz > 2.01))
    w.slab.setValue(1.0)
    # slab off (T key): only atoms cut by the slice plane itself
    press_key(layer, "T")
    assert not w.slab_on.isChecked()
    thin = shown()
    assert thin < visible and not thin & set(np.flatnonzero(dz > 0.51))
    press_key(layer, "T")
    assert shown() == visible
    # in 3D every atom is shown
    viewer.dims.ndisplay = 3
    assert shown() == set(range(len(truth)))
    viewer.dims.ndisplay = 2
    assert shown() == visible


def test_input_layer_untouched_and_autosave_restore(make_napari_viewer, silica, tmp_path):
    _, truth = silica
    viewer = make_napari_viewer()
    w, source = start(viewer, silica, tmp_path, name="traced")
    before = (np.asarray(source.data).copy(), source.features.copy(), source.size.copy())
    layer, model = w.layer, w.model
    assert layer.name == "traced curated"
    assert layer.metadata["aet"]["kind"] == "atoms"
    assert layer.metadata["aet"]["provenance"][-1]["step"] == "curate"
    # a session of edits
    p = truth.positions[5]
    z = on_slice(viewer, p[0])
    mouse(layer, [z, p[1], p[2]], modifiers=["Control"])
    mouse(layer, [z, p[1] + 0.2, p[2]])  # add it back, snapped
    layer.selected_data = {7}
    press_key(layer, "E")
    layer.selected_data = {1, 2}
    layer.remove_selected()
    w.undo()
    w.redo()
    assert w.last_error is None, w.last_error
    assert len(model) == len(truth) - 2
    # the input layer never changed
    np.testing.assert_array_equal(source.data, before[0])
    assert source.features.equals(before[1])
    np.testing.assert_array_equal(source.size, before[2])
    assert len(list(tmp_path.glob("traced_curated.*.journal.jsonl"))) == 1

    # "crash": the session is gone; restoring the autosave rebuilds the same model
    w.close_session()
    viewer.layers.remove(layer)
    w.restore_button.click()
    assert w.last_error is None, w.last_error
    assert w.model is not model and w.model.equals(model)
    assert w.layer.name == "traced curated"
    assert_in_sync(w)
    # and editing goes on: undo and redo history came back too
    assert w.model.can_undo and w.model.can_redo is False
    w.undo()
    assert len(w.model) == len(truth)
    assert_in_sync(w)
    # starting again from a curated layer does not stack "curated curated"
    w.atoms_chooser.set_layer(w.layer)
    w.run_button.click()
    assert w.layer.name.startswith("traced curated") and "curated curated" not in w.layer.name


def test_clicks_never_duplicate_and_source_hidden(make_napari_viewer, qtbot, silica, tmp_path):
    """Issue 15: a click whose peak is within d_min of an atom selects that atom (2D with
    the atom outside the drawn slab, 3D on a visible atom); a drag does not land on another
    atom; the source layer is hidden while curating; counters stay consistent."""
    _, truth = silica
    si = [r for r in np.flatnonzero(truth.elements == "Si") if clear_in_plane(truth, r)]
    viewer = make_napari_viewer()
    w, source = start(viewer, silica, tmp_path, drop=[si[2]])
    layer, model = w.layer, w.model
    n0 = len(model)
    assert not source.visible and layer.visible  # deletions show: nothing beneath
    assert w.d_min.value() == 1.2  # untraced atoms: the generic preset's d_min

    # 2D: the atom is 0.5 A below the drawn slab (+-0.3 A); the click snaps onto it
    w.slab.setValue(0.3)
    p = truth.positions[si[0]]
    z = on_slice(viewer, p[0] + 0.8)
    mouse(layer, [z, p[1] + 0.2, p[2] - 0.2])
    assert w.last_error is None, w.last_error
    assert len(model) == n0, "a duplicate atom was added"
    assert layer.selected_data == {nearest(model.positions, p)[0]}
    assert "selected it, added nothing" in w.status.text()

    # 3D: a click on a visible atom (its ray through the atom) selects it
    viewer.dims.ndisplay = 3
    q = truth.positions[si[1]]
    direction = np.array([1.0, 0.0, 0.0])
    mouse(layer, q - 20 * direction, view_direction=direction, dims_displayed=[0, 1, 2])
    assert len(model) == n0, "a duplicate atom was added in 3D"
    assert layer.selected_data == {nearest(model.positions, q)[0]}
    viewer.dims.ndisplay = 2

    # add the missing atom, then delete it: it counts neither as added nor as removed
    m = truth.positions[si[2]]
    z = on_slice(viewer, m[0])
    mouse(layer, [z, m[1] + 0.2, m[2]])
    assert len(model) == n0 + 1 and counters(w)["added"] == 1
    mouse(layer, [z, m[1], m[2] + 0.1], modifiers=["Control"])
    assert len(model) == n0
    assert counters(w)["added"] == 0 and counters(w)["removed"] == 0

    # a drag that ends on another atom's peak does not move the atom onto it
    a, b = truth.positions[si[0]], truth.positions[si[3]]
    z = on_slice(viewer, a[0])
    row = nearest(model.positions, a)[0]
    mouse(layer, [z, a[1], a[2]], drag=[[z, (a[1] + b[1]) / 2, (a[2] + b[2]) / 2],
                                         [z, b[1] + 0.1, b[2]]])
    assert len(model) == n0 and model.provenance[row] == "auto"
    np.testing.assert_array_equal(model.positions[row], a)
    assert "not moved" in w.status.text()
    assert_in_sync(w)

    # the review item's open count and the counters agree after accept and undo
    w.queue_button.click()
    qtbot.waitUntil(lambda: w.worker is None, timeout=30000)
    press_key(layer, "A")
    press_key(layer, "Control-Z")
    shown = int(re.search(r"(\d+) open", w.item_label.text()).group(1))
    assert shown == counters(w)["left_to_review"] == len(w.items)
    # ... and after a delete from the queue, its undo and its redo
    def shown_open():
        text = w.item_label.text()
        found = re.search(r"(\d+) open", text)
        return int(found.group(1)) if found else 0 if text.startswith("review done") else None

    n_items = len(w.items)
    for key, left, removed in (("X", n_items - 1, None), ("Control-Z", n_items, 0),
                               ("Control-Shift-Z", n_items - 1, None)):
        press_key(layer, key)
        assert shown_open() == counters(w)["left_to_review"] == left
        if removed is not None:
            assert counters(w)["removed"] == removed

    w.stop_button.click()
    assert source.visible and w.model is None


def test_no_op_keys_and_defaults_from_the_trace(make_napari_viewer, silica, tmp_path):
    """Issue 15: E with one element records nothing; d_min follows the traced layer's
    preset; the newest atoms layer is the one chosen."""
    from napari_aet.layers import provenance_step

    _, truth = silica
    viewer = make_napari_viewer()
    o_rows = np.flatnonzero(truth.elements == "O")
    w, _ = start(viewer, silica, tmp_path, drop=o_rows)
    layer, model = w.layer, w.model
    layer.selected_data = {0, 1}
    press_key(layer, "E")
    assert not model.can_undo and set(model.provenance) == {"auto"}
    assert "nothing relabelled" in w.status.text()
    for key in ("A", "X", "I"):  # stray review keys with no review item shown change nothing
        press_key(layer, key)
        assert not model.can_undo and len(model) == len(layer.data)
        assert "nothing changed" in w.status.text()
    w.close_session()

    data, kwargs, _ = atoms_tuple(truth, PX, name="atoms (ZrO2 trace)", provenance=[
        provenance_step("trace", {"preset": "ZrO2"}, "volume")])
    viewer.add_points(data, **kwargs)
    assert w.atoms_chooser.currentText() == "atoms (ZrO2 trace)"
    assert w.d_min.value() == 2.0  # resources/presets/ZrO2.toml [trace] min_distance_A
    assert "atoms (ZrO2 trace)" in w.atoms_chooser.toolTip()


def test_keys_never_edit_from_a_text_field_or_a_stopped_layer(make_napari_viewer, qtbot, silica,
                                                              tmp_path):
    """Issue 15: Ctrl+Y typed in a text field of the dock (a key the field ignores, which Qt
    passes on to napari's canvas) redoes nothing, while on the canvas it redoes; the keys of
    a stopped session's layer leave the new session alone and say so."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer(show=True)
    w, source = start(viewer, silica, tmp_path)
    model = w.model
    window = viewer.window._qt_window
    window.activateWindow()
    QApplication.setActiveWindow(window)
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    model.add([8.0, 8.0, 8.0], "O")
    model.undo()
    n0, revision = len(model), model.revision
    for field in (w.autosave_dir, w.snap_radius, w.element_combo):
        field.setFocus()
        qtbot.waitUntil(lambda field=field: QApplication.focusWidget() is field)
        qtbot.keyClick(field, Qt.Key_Y, Qt.ControlModifier)
        assert model.revision == revision and model.can_redo and len(model) == n0
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is canvas)
    qtbot.keyClick(canvas, Qt.Key_Y, Qt.ControlModifier)
    assert model.revision == revision + 1 and len(model) == n0 + 1

    old = w.layer
    w.close_session()
    w.atoms_chooser.set_layer(source)
    w.run_button.click()
    assert w.last_error is None, w.last_error
    assert w.layer is not old
    w.layer.selected_data = {0, 1}
    n1 = len(w.model)
    for key in ("Delete", "E", "Control-Z"):
        press_key(old, key)
        assert len(w.model) == n1 and not w.model.can_undo
        assert "is not being curated" in w.status.text()
    assert_in_sync(w)


def test_translated_volume_and_atoms(make_napari_viewer, silica, tmp_path):
    """A volume layer with an origin (translate) and atoms in the same world frame: clicks,
    snapping and the review marker go through napari's world <-> data transforms."""
    vol, truth = silica
    shift = np.array([7.0, -4.0, 2.5])
    viewer = make_napari_viewer()
    data, kwargs, _ = volume_tuple(vol, PX, name="silica volume")
    kwargs["translate"] = tuple(shift)
    volume = viewer.add_image(data, **kwargs)
    si = [r for r in np.flatnonzero(truth.elements == "Si") if clear_in_plane(truth, r)]
    missing = si[0]
    atoms = truth.select(np.delete(np.arange(len(truth)), missing)).shifted(shift)
    data, kwargs, _ = atoms_tuple(atoms, PX, name="atoms")
    source = viewer.add_points(data, **kwargs)
    w = CurateWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.atoms_chooser.set_layer(source)
    w.volume_chooser.set_layer(volume)
    w.autosave_dir.setText(str(tmp_path))
    w.run_button.click()
    assert w.last_error is None, w.last_error
    model = w.model
    target = truth.positions[missing] + shift
    z = on_slice(viewer, target[0])
    mouse(w.layer, [z, target[1] + 0.3, target[2] - 0.1])
    assert w.last_error is None, w.last_error
    assert len(model) == len(truth)
    assert np.linalg.norm(model.positions[-1] - target) < 0.2
    assert model.elements[-1] == "Si"
    # the volume moved after the start: a click on the atom where it is drawn now adds it
    # there (the frame follows the layers)
    w.undo()
    extra = np.array([0.0, 1.5, -2.0])
    volume.translate = tuple(shift + extra)
    mouse(w.layer, [z, target[1] + extra[1] + 0.3, target[2] + extra[2] - 0.1])
    assert len(model) == len(truth)
    assert np.linalg.norm(model.positions[-1] - (target + extra)) < 0.2
    assert_in_sync(w)


def test_review_settings_change_the_queue(make_napari_viewer, qtbot, silica, tmp_path):
    """Issue 17: the "review settings" section (collapsed until opened) feeds Build review
    queue: an atom missing 2.1 A from a face is a missed-atom candidate with the border at
    1 A and none at 3 A."""
    _, truth = silica
    extent = (np.array(SHAPE) - 1) * PX
    d_face = np.minimum(truth.positions, extent - truth.positions).min(axis=1)
    si = np.flatnonzero(truth.elements == "Si")
    missing = int(si[np.argmin(d_face[si])])
    assert 1.5 < d_face[missing] < 2.5
    viewer = make_napari_viewer()
    w, _ = start(viewer, silica, tmp_path, drop=[missing])
    border = w.review_params["border_A"]
    assert not border.isVisibleTo(w) and border.value() == pytest.approx(2.0)
    w.sections["review settings"].setChecked(True)
    assert border.isVisibleTo(w)

    def missed_there(border_A):
        border.setValue(border_A)
        w.queue_button.click()
        qtbot.waitUntil(lambda: w.worker is None, timeout=30000)
        assert w.last_error is None, w.last_error
        return [it for it in w.items if it.kind == "missed_atom"
                and np.linalg.norm(it.position - truth.positions[missing]) < 0.5]

    assert not missed_there(3.0)
    assert len(missed_there(1.0)) == 1
    assert not missed_there(3.0)
