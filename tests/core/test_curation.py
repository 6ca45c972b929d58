"""Atom model edits, undo/redo, snapping, review queue on the simulator, journal restore."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from scipy.spatial import cKDTree

from napari_aet.core import curation as C
from napari_aet.core.atoms import Atoms
from napari_aet.core.simulate import simulate


@pytest.fixture(scope="module")
def silica():
    sim = simulate("silica", dose_e_per_A2=None, n_angles=3)
    return sim, sim.truth_volume().astype(np.float32)


def small_atoms(n=6):
    rng = np.random.default_rng(0)
    return Atoms(rng.uniform(0, 20, (n, 3)), np.array(["Si", "O"] * (n // 2)),
                 {"intensity": rng.random(n), "phase": np.array(["metal"] * n)})


def test_edits_undo_redo_and_groups():
    model = C.AtomModel(small_atoms())
    start = model.to_atoms()
    new = model.add([1, 2, 3], "O", {"intensity": 0.5})
    assert len(model) == 7 and model.provenance[model.row_of(new)] == "added"
    assert np.isnan(C.AtomModel(small_atoms()).features["intensity"]).sum() == 0
    model.move(0, [5, 5, 5])
    assert model.provenance[model.row_of(0)] == "moved"
    model.relabel(1, "si")
    assert model.elements[model.row_of(1)] == "Si" and model.provenance[model.row_of(1)] == "relabelled"
    with model.group("clean up"):
        model.remove([2, 3], reason="too close")
        model.remove(new)
    assert len(model) == 4 and len(model.removed) == 3
    assert model.removed[0]["reason"] == "too close"
    assert model.undo()  # the whole group at once
    assert len(model) == 7 and len(model.removed) == 0
    for _ in range(3):
        model.undo()
    after = model.to_atoms()
    assert np.array_equal(after.positions, start.positions)
    assert np.array_equal(after.elements, start.elements)
    assert set(model.provenance) == {"auto"}
    assert not model.undo()
    for _ in range(4):
        assert model.redo()
    assert not model.redo()
    assert len(model) == 4 and len(model.removed) == 3
    # the atom added and deleted again counts in neither (issue 15: "added 0 | removed 1")
    assert model.counts()["removed"] == 2 and model.counts()["added"] == 0
    # relabelling to the same element is not an edit
    steps = len(model._undo)
    model.relabel(0, str(model.elements[model.row_of(0)]))
    assert len(model._undo) == steps
    # a new edit clears the redo stack
    model.undo()
    model.add([0, 0, 0], "Si")
    assert not model.can_redo


def test_listener_changes_replay_rows():
    """Row-level changes let a mirror (a Points layer) follow the model exactly."""
    model = C.AtomModel(small_atoms(40))
    mirror = {"pos": model.positions.copy(), "el": list(model.elements)}

    def follow(event):
        for ch in event["changes"]:
            if ch["type"] == "add":
                assert ch["row"] == len(mirror["pos"])
                mirror["pos"] = np.vstack([mirror["pos"], ch["position"]])
                mirror["el"].append(ch["element"])
            elif ch["type"] == "remove":
                mirror["pos"] = np.delete(mirror["pos"], ch["row"], axis=0)
                del mirror["el"][ch["row"]]
            elif ch["type"] == "move":
                mirror["pos"][ch["row"]] = ch["position"]
            elif ch["type"] == "relabel":
                mirror["el"][ch["row"]] = ch["element"]

    model.listeners.append(follow)
    rng = np.random.default_rng(3)
    for _ in range(200):
        r = rng.random()
        if r < 0.3:
            model.add(rng.uniform(0, 20, 3), "O")
        elif r < 0.5 and len(model):
            model.remove(model.ids[rng.integers(len(model))])
        elif r < 0.6 and len(model):
            model.move(model.ids[rng.integers(len(model))], rng.uniform(0, 20, 3))
        elif r < 0.7 and len(model):
            model.relabel(model.ids[rng.integers(len(model))], "Zr")
        elif r < 0.85:
            model.undo()
        else:
            model.redo()
        assert np.array_equal(mirror["pos"], model.positions)
        assert mirror["el"] == list(model.elements)


def test_bad_input_messages():
    model = C.AtomModel(small_atoms())
    with pytest.raises(ValueError, match="3 finite numbers"):
        model.add([1, 2], "O")
    with pytest.raises(ValueError, match="not an element"):
        model.add([1, 2, 3], "Qq")
    with pytest.raises(KeyError, match="no atom with id 99"):
        model.move(99, [0, 0, 0])
    with pytest.raises(ValueError, match="unknown feature"):
        model.add([1, 2, 3], "O", {"nonsense": 1})
    with pytest.raises(ValueError, match="minimum distance must be positive"):
        C.review_queue(small_atoms(), d_min_A=0)


def test_state_round_trip_is_exact():
    model = C.AtomModel(small_atoms())
    model.add([1, 2, 3], "O")
    model.remove(0, reason="x")
    model.mark_reviewed("weak_atom:atom3")
    model.undo()
    copy = C.AtomModel.from_state(model.to_state())
    assert copy.equals(model)
    assert copy.can_redo and copy.redo() and model.redo()
    assert copy.equals(model)


def test_snap_and_refine_on_truth_volume(silica):
    sim, vol = silica
    px = sim.pixel_size_A
    truth = sim.atoms.positions
    rng = np.random.default_rng(1)
    rows = rng.choice(len(truth), 40, replace=False)
    clicks = truth[rows] + rng.uniform(-0.3, 0.3, (40, 3))
    snapped = np.array([C.snap_to_maximum(vol, c, px, radius_A=0.8) for c in clicks])
    err = np.linalg.norm(snapped - truth[rows], axis=1)
    assert np.median(err) < 0.02 and np.percentile(err, 90) < 0.1
    refined = C.refine_positions(vol, truth + rng.normal(0, 0.1, truth.shape), px)
    err = np.linalg.norm(refined - truth, axis=1)
    assert np.median(err) < 0.02 and np.mean(err < 0.2) > 0.98


def test_snap_converges_to_the_peak_from_the_slope(silica):
    """Starts 0-1.5 A from an atom (the slope, where a drag in 2D ends) snap to a peak
    within 0.05 A, never to a voxel-grid point: issue 15."""
    sim, vol = silica
    px = sim.pixel_size_A
    truth = sim.atoms.positions
    inner = np.all((truth > 3.0) & (truth < np.array(vol.shape) * px - 3.0), axis=1)
    rng = np.random.default_rng(7)
    rows = rng.choice(np.flatnonzero(inner), 80, replace=False)
    v = rng.normal(size=(80, 3))
    starts = truth[rows] + v / np.linalg.norm(v, axis=1, keepdims=True) * \
        rng.uniform(0.0, 1.5, (80, 1))
    snapped = np.array([C.snap_to_maximum(vol, s, px, radius_A=1.5) for s in starts])
    err, _ = cKDTree(truth).query(snapped)
    assert err.max() < 0.05, np.sort(err)[-5:]
    # starts exactly on voxels of the slope, 1.2 A from the atom, away from its neighbours
    axes = np.concatenate([np.eye(3), -np.eye(3)])
    tested = 0
    for row in rows:
        others = cKDTree(np.delete(truth, row, axis=0))
        away = max(axes, key=lambda a: others.query(truth[row] + 1.2 * a)[0])
        start = np.round((truth[row] + 1.2 * away) / px) * px
        if others.query(start)[0] < 2.0:  # another atom as near: either peak is right
            continue
        snapped = C.snap_to_maximum(vol, start, px, radius_A=1.0)
        assert np.linalg.norm(snapped - truth[row]) < 0.05
        tested += 1
    assert tested >= 5


def test_brightest_along_ray_and_nearest_to_ray(silica):
    sim, vol = silica
    px = sim.pixel_size_A
    truth = sim.atoms.positions
    si = np.flatnonzero(sim.atoms.elements == "Si")
    target = truth[si[10]]
    direction = np.array([1.0, 0.3, -0.2])
    direction /= np.linalg.norm(direction)
    start, end = target - 30 * direction, target + 30 * direction
    hi = (np.array(vol.shape) - 1) * px
    t = np.linspace(0, 1, 2000)[:, None]
    seg = start + t * (end - start)
    inside = np.all((seg >= 0) & (seg <= hi), axis=1)
    pos, value = C.brightest_along_ray(vol, px, seg[inside][0], seg[inside][-1])
    # the brightest point on that ray is an atom (usually the aimed one), found to < 0.2 A
    assert np.min(np.linalg.norm(truth - pos, axis=1)) < 0.2
    row = C.nearest_to_ray(truth, target - 5 * direction, direction)
    assert row == si[10]
    assert C.nearest_to_ray(truth, target + [0, 50, 0], direction, max_distance_A=1.0) is None


def plant_errors(atoms: Atoms, rng, frac_removed=0.01, frac_false=0.01, frac_class=0.005,
                 d_false=(1.6, 2.6), min_gap=1.4):
    """Remove, add and relabel atoms; return the damaged model and what was planted."""
    n = len(atoms)
    n_rem, n_false, n_cls = (max(1, int(round(f * n))) for f in (frac_removed, frac_false, frac_class))
    perm = rng.permutation(n)
    removed, relabelled = perm[:n_rem], perm[n_rem:n_rem + n_cls]
    keep = np.setdiff1d(np.arange(n), removed)
    elements = atoms.elements.copy()
    species = np.unique(atoms.elements)
    for r in relabelled:
        elements[r] = species[(list(species).index(elements[r]) + 1) % len(species)]
    tree = cKDTree(atoms.positions)
    false = []
    while len(false) < n_false:
        d = rng.normal(size=3)
        p = atoms.positions[rng.integers(n)] + d / np.linalg.norm(d) * rng.uniform(*d_false)
        if tree.query(p)[0] >= min_gap and all(np.linalg.norm(p - q) >= min_gap for q in false):
            false.append(p)
    damaged = Atoms(np.concatenate([atoms.positions[keep], false]),
                    np.concatenate([elements[keep], rng.choice(species, n_false)]))
    relabel_rows = np.searchsorted(keep, relabelled)
    false_rows = np.arange(len(keep), len(keep) + n_false)
    return damaged, atoms.positions[removed], relabel_rows, false_rows


def count_found(queue, n_top, removed_pos, relabel_rows, false_rows):
    top = queue[:n_top]
    rows = {it.atom_index for it in top if it.atom_index is not None}
    places = np.array([it.position for it in top if it.atom_index is None]).reshape(-1, 3)
    found = sum(int(r in rows) for r in relabel_rows) + sum(int(r in rows) for r in false_rows)
    for p in removed_pos:
        found += int(len(places) > 0 and np.min(np.linalg.norm(places - p, axis=1)) < 0.5)
    return found


def test_review_queue_finds_planted_errors_silica(silica):
    sim, vol = silica
    damaged, removed_pos, relabel_rows, false_rows = plant_errors(sim.atoms, np.random.default_rng(7))
    n_planted = len(removed_pos) + len(relabel_rows) + len(false_rows)
    queue = C.review_queue(damaged, vol, sim.pixel_size_A, d_min_A=1.0)
    found = count_found(queue, 3 * n_planted, removed_pos, relabel_rows, false_rows)
    assert found >= 0.9 * n_planted, f"{found} of {n_planted} planted errors in the top {3 * n_planted}"
    kinds = {it.kind for it in queue[:3 * n_planted]}
    assert {"missed_atom", "weak_atom", "wrong_class"} <= kinds
    # suggested actions name the element to add / relabel to
    assert any(it.suggested_action.startswith("add ") for it in queue)
    assert any(it.suggested_action.startswith("relabel to ") for it in queue)


def test_review_queue_close_pair_isolated_and_features():
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(5) * 2.5] * 3, indexing="ij"), -1).reshape(-1, 3)
    pos = np.vstack([grid, grid[7] + [0.4, 0, 0], [[40.0, 40, 40]]])
    n = len(pos)
    margin = np.ones(n)
    margin[20] = 0.05
    residual = rng.normal(1, 0.05, n)
    residual[30] = 5.0
    atoms = Atoms(pos, np.full(n, "Zr"), {"class_margin": margin, "fit_residual": residual})
    queue = C.review_queue(atoms, d_min_A=2.0, ids=np.arange(n) + 100)
    by_kind = {it.kind: it for it in queue}
    assert by_kind["close_pair"].atom_index in (7, n - 2)
    assert by_kind["close_pair"].suggested_action == "remove"
    assert by_kind["isolated"].atom_index == n - 1
    assert by_kind["ambiguous_class"].atom_index == 20
    # one species (Zr): the margin is to the atom / non-atom boundary, not between classes
    assert by_kind["ambiguous_class"].suggested_action == "check it is an atom"
    assert "non-atom" in by_kind["ambiguous_class"].detail
    two = Atoms(pos, np.where(np.arange(n) % 2, "Zr", "O"), dict(atoms.features))
    ambiguous = [it for it in C.review_queue(two, d_min_A=2.0) if it.kind == "ambiguous_class"]
    assert [it.suggested_action for it in ambiguous] == ["check class"]
    assert by_kind["poor_fit"].atom_index == 30
    assert by_kind["isolated"].atom_id == n - 1 + 100
    order = [it.kind for it in queue]
    assert order.index("close_pair") < order.index("poor_fit") < order.index("isolated") + 1
    keys = {queue[0].key}
    assert queue[0].key not in {it.key for it in C.review_queue(atoms, d_min_A=2.0, reviewed=keys)}
    table = C.review_table(queue)
    assert table[0]["rank"] == 1 and set(table[0]) == {
        "rank", "kind", "x", "y", "z", "atom_index", "score", "suggested_action"}


CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from napari_aet.core.atoms import Atoms
    from napari_aet.core.curation import AtomModel
    from napari_aet.io.journal import Journal
    rng = np.random.default_rng(5)
    atoms = Atoms(rng.uniform(0, 30, (300, 3)), rng.choice(["Si", "O"], 300),
                  {"intensity": rng.random(300), "phase": rng.choice(["a", "b c"], 300)})
    model = AtomModel(atoms)
    journal = Journal(sys.argv[1], model, snapshot_every=25)
    k = 0
    while True:
        r = rng.random()
        if r < 0.3:
            model.add(rng.uniform(0, 30, 3), "O", {"intensity": float(rng.random())})
        elif r < 0.5:
            with model.group("pair"):
                model.remove(model.ids[rng.integers(len(model))], reason="close pair")
                model.move(model.ids[rng.integers(len(model))], rng.uniform(0, 30, 3))
        elif r < 0.6:
            model.relabel(model.ids[rng.integers(len(model))], "Zr")
        elif r < 0.7:
            model.mark_reviewed(f"item{k}")
        elif r < 0.85:
            model.undo()
        else:
            model.redo()
        k += 1
        np.save(sys.argv[2] + ".tmp.npy", model.positions)  # the child's own view, for the test
        import os; os.replace(sys.argv[2] + ".tmp.npy", sys.argv[2])
        with open(sys.argv[3] + ".tmp", "w") as fh:
            fh.write(str(model.revision))
        os.replace(sys.argv[3] + ".tmp", sys.argv[3])  # never an empty file when killed
        if k == 150:
            print("ready", flush=True)
""")


def test_journal_restore_after_kill(tmp_path):
    """A child process edits with an autosave journal and is killed with SIGKILL mid-session;
    the restored model equals the last model the child reached (all but at most the edit it
    was writing)."""
    from napari_aet.io.journal import restore

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    journal = tmp_path / "session"
    positions_file = tmp_path / "positions.npy"
    revision_file = tmp_path / "revision.txt"
    proc = subprocess.Popen([sys.executable, str(script), str(journal), str(positions_file),
                             str(revision_file)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30  # killed mid-session, after some more edits
        while int(revision_file.read_text()) <= 160 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    restored = restore(journal)
    child_revision = int(revision_file.read_text())
    # the journal line is fsync'ed before the child saves its view, so the restored model
    # is at the child's last saved revision or one edit later
    assert restored.revision in (child_revision, child_revision + 1)
    assert restored.revision > 150
    # replay the same deterministic script in-process up to that revision: exact equality
    ns = {}
    code = CHILD.replace("journal = Journal(sys.argv[1], model, snapshot_every=25)", "")
    code = code.replace("while True:", "while model.revision < TARGET:")
    # keep only the edits: the child's file writes must not run here
    head, sep, _ = code.partition("\n    np.save")
    assert sep, "replay must stop before the child's own file writes"
    exec(compile(head, "replay", "exec"), {"TARGET": restored.revision}, ns)
    assert ns["model"].equals(restored)
    if restored.revision == child_revision:
        assert np.array_equal(np.load(positions_file), restored.positions)
    # the journal is valid JSON lines with increasing revisions
    lines = (tmp_path / "session.journal.jsonl").read_text().splitlines()
    revs = [json.loads(ln)["revision"] for ln in lines[:-1] if ln.strip()]
    assert revs == sorted(revs)


def test_review_checks_are_a_registry(monkeypatch):
    """review_queue runs the registered checks in order; a new check is one function."""
    assert list(C.REVIEW_CHECKS) == ["close_pairs", "weak_atoms", "class_from_intensity",
                                     "class_margin", "poor_fit", "isolated_atoms",
                                     "missed_atoms"]
    atoms = small_atoms(8)
    before = C.review_queue(atoms, d_min_A=5.0)

    limit = np.sort(np.linalg.norm(atoms.positions, axis=1))[-3]  # the 3 farthest atoms

    def far_from_origin(ctx):
        for i in np.flatnonzero(np.linalg.norm(ctx.positions, axis=1) >= limit).tolist():
            yield C.ReviewItem("far", ctx.positions[i].copy(), i, 0.99, "check")

    monkeypatch.setitem(C.REVIEW_CHECKS, "far_from_origin", far_from_origin)
    after = C.review_queue(atoms, d_min_A=5.0)
    far = np.flatnonzero(np.linalg.norm(atoms.positions, axis=1) >= limit)
    assert len(far) == 3 and {it.atom_index for it in after if it.kind == "far"} == set(far.tolist())
    assert [it.key for it in after if it.kind != "far"] == [
        it.key for it in before if it.atom_index not in far]
