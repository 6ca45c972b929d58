"""CurationSession: clicks to snapped atoms in the model frame, picking, the review cursor."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from napari_aet.core import curation as C
from napari_aet.core.atoms import Atoms
from napari_aet.core.simulate import simulate

SHIFT = np.array([10.0, -5.0, 3.0])  # model frame = volume frame + SHIFT (Angstrom)


@pytest.fixture(scope="module")
def silica():
    sim = simulate("silica", dose_e_per_A2=None, n_angles=3)
    return sim.atoms, sim.truth_volume().astype(np.float32), sim.pixel_size_A


def clear_atoms(truth, vol, px, margin=3.0, alone=1.5):
    """Rows of atoms away from the faces with no other atom within ``alone`` Angstrom."""
    pos = truth.positions
    inner = np.all((pos > margin) & (pos < np.array(vol.shape) * px - margin), axis=1)
    dnn = cKDTree(pos).query(pos, k=2)[0][:, 1]
    return np.flatnonzero(inner & (dnn > alone))


def row_at(model, position):
    """Row of the model atom at ``position`` (model frame)."""
    return int(np.argmin(np.linalg.norm(model.positions - position, axis=1)))


def session_of(atoms, vol, px, d_min_A=1.0):
    model = C.AtomModel(atoms.shifted(SHIFT))
    return C.CurationSession(model, vol, px, d_min_A=d_min_A, frame=(np.eye(3), -SHIFT))


def test_add_move_pick_in_the_model_frame(silica):
    truth, vol, px = silica
    rows = clear_atoms(truth, vol, px)
    missing, other = int(rows[0]), int(rows[1])
    session = session_of(truth.select(np.delete(np.arange(len(truth)), missing)), vol, px)
    model = session.model
    assert set(session.class_centres) == {"O", "Si"}
    np.testing.assert_allclose(session.from_volume_A(session.to_volume_A(model.positions)),
                               model.positions, atol=1e-12)

    # a click 0.35 A off the missing atom adds it on its peak, element by intensity
    click = truth.positions[missing] + SHIFT + [0.0, 0.3, -0.18]
    atom_id = session.add_at(click)
    row = model.row_of(atom_id)
    assert np.linalg.norm(model.positions[row] - truth.positions[missing] - SHIFT) < 0.05
    assert model.elements[row] == truth.elements[missing]
    # a second click there picks that atom and records nothing
    revision = model.revision
    with pytest.raises(C.NoEditError, match="selected it, added nothing") as refused:
        session.add_at(click)
    assert refused.value.row == row and model.revision == revision

    # a drop on another atom's peak is refused; a drop near its own peak re-snaps onto it
    with pytest.raises(C.NoEditError, match="not moved"):
        session.move(atom_id, truth.positions[other] + SHIFT + [0.0, 0.2, 0.0])
    assert model.revision == revision
    session.move(atom_id, model.positions[row] + [0.0, 0.0, 0.3])
    assert np.linalg.norm(model.positions[row] - truth.positions[missing] - SHIFT) < 0.05

    # picking: in the plane of a slab, and along a view ray
    p = truth.positions[other] + SHIFT
    other_row = row_at(model, p)
    assert session.nearest_in_slab(p + [0.4, 0.3, 0.0], (1, 2), 0.5) == other_row
    assert session.nearest_in_slab(p + [0.6, 0.0, 0.0], (1, 2), 0.5, 0.5) is None
    direction = np.array([0.6, 0.8, 0.0])
    assert session.nearest_to_ray(p - 15 * direction, direction, 0.3) == other_row

    # the element key: nothing selected, or a single element, records nothing
    with pytest.raises(C.NoEditError, match="select atoms first"):
        session.cycle_element([])
    session.cycle_element([row])
    assert model.elements[row] != truth.elements[missing] and model.revision == revision + 2
    si_only = session_of(truth.select(np.flatnonzero(truth.elements == "Si")), vol, px)
    with pytest.raises(C.NoEditError, match=r"only one element \(Si\)"):
        si_only.cycle_element([0, 1])
    assert not si_only.model.can_undo


def test_review_cursor_accept_reject_insert(silica):
    truth, vol, px = silica
    rows = clear_atoms(truth, vol, px)
    missing = int(rows[0])
    grid = np.stack(np.meshgrid(*[np.arange(4.0, vol.shape[0] * px - 4.0, 0.5)] * 3,
                                indexing="ij"), -1).reshape(-1, 3)
    empty = grid[np.argmax(cKDTree(truth.positions).query(grid)[0])]
    atoms = Atoms.concatenate([truth.select(np.delete(np.arange(len(truth)), missing)),
                               Atoms(empty[None], ["O"])])
    session = session_of(atoms, vol, px)
    model = session.model
    false_id = len(model) - 1

    # a stray accept before any item is shown changes nothing
    with pytest.raises(C.NoEditError, match="nothing changed"):
        session.accept()
    session.set_queue(session.review_queue())
    # the same queue as ranking the atoms in the volume frame directly
    direct = C.review_queue(atoms, vol, px, d_min_A=1.0, ids=model.ids)
    assert [it.key for it in session.items] == [it.key for it in direct]
    # review settings pass through; the minimum distance stays the session's
    strict = C.ReviewParameters(d_min_A=9.0, isolation_A=0.5, border_A=0.0)
    settled = C.review_queue(atoms, vol, px, d_min_A=1.0, isolation_A=0.5, border_A=0.0,
                             ids=model.ids)
    assert [it.key for it in session.review_queue(params=strict)] == [it.key for it in settled]
    assert [it.key for it in settled] != [it.key for it in direct]
    n_open = session.counts()["open"]
    assert n_open == len(session.items) >= 2 and session.current_item() is None

    def go_to(pred):
        for _ in range(len(session.items)):
            item = session.goto(+1)
            if pred(item):
                return item
        raise AssertionError("item not found")

    go_to(lambda it: it.kind == "missed_atom"
          and np.linalg.norm(it.position - truth.positions[missing]) < 0.5)
    session.insert()
    assert np.linalg.norm(model.positions[-1] - truth.positions[missing] - SHIFT) < 0.05
    assert model.elements[-1] == truth.elements[missing]
    go_to(lambda it: it.atom_id == false_id)
    session.reject()
    assert false_id not in model.ids
    counts = session.counts()
    assert (counts["open"], counts["added"], counts["removed"]) == (n_open - 2, 1, 1)
    assert model.undo() and session.counts()["open"] == n_open - 1
    assert false_id in model.ids

    # an item whose peak already has an atom: insert picks it and the item stays open
    on_atom = C.ReviewItem("missed_atom", truth.positions[rows[1]], None, 1.0, "add Si")
    session.set_queue([on_atom])
    assert session.goto(+1) is on_atom
    revision = model.revision
    with pytest.raises(C.NoEditError, match="added nothing") as refused:
        session.insert()
    assert refused.value.row == row_at(model, truth.positions[rows[1]] + SHIFT)
    assert model.revision == revision
    assert session.counts()["open"] == 1
    assert session.accept() is None and session.counts()["open"] == 0
