"""Curate widget autosave: no session without a journal, restore offers the sessions found,
a full disk refuses edits."""

import os

import numpy as np
import pytest

from napari_aet.core.atoms import Atoms
from napari_aet.core.curation import AtomModel
from napari_aet.io.journal import Journal, restore
from tests.widgets.test_curate_widget import assert_in_sync, press_key, silica, start

__all__ = ["silica"]  # the module fixture, re-used


def test_restore_offers_sessions_of_the_layer_and_restores_the_one_chosen(
        make_napari_viewer, silica, tmp_path, monkeypatch):
    viewer = make_napari_viewer()
    w, source = start(viewer, silica, tmp_path, name="Pt")
    w.model.add(np.array([8.0, 8.0, 8.0]), "O")
    first = w.model
    w.close_session()
    viewer.layers.remove("Pt curated")
    w.atoms_chooser.set_layer(source)
    w.run_button.click()
    w.model.remove(w.model.ids[:3], reason="ghost")
    second = w.model
    w.close_session()
    viewer.layers.remove("Pt curated")
    # an autosave whose name only starts like the layer's is never offered
    Journal(tmp_path / "Pt_curated_2023", AtomModel(Atoms(np.zeros((2, 3)), ["Pt", "Pt"]))).close()
    offered = []

    def choose(sessions):
        offered.extend(sessions)
        return next(s for s in sessions if s.atoms == len(first))

    monkeypatch.setattr(w, "_choose_session", choose)
    w.atoms_chooser.set_layer(source)
    w.restore_button.click()
    assert w.last_error is None, w.last_error
    assert sorted(s.atoms for s in offered) == sorted([len(first), len(second)])
    assert {s.layer for s in offered} == {"Pt curated"}
    assert w.model.equals(first) and w.model.revision == first.revision
    assert_in_sync(w)
    # cancelling the question restores nothing
    w.close_session()
    monkeypatch.setattr(w, "_choose_session", lambda sessions: None)
    w.restore_button.click()
    assert w.model is None and w.last_error is None


def test_no_session_without_a_journal(make_napari_viewer, silica, tmp_path):
    """An autosave folder where nothing can be written: the session does not start (no
    curated layer, no key or mouse bindings) and the message says why."""
    if not os.path.isdir("/proc/self"):
        pytest.skip("needs /proc")
    viewer = make_napari_viewer()
    w, source = start(viewer, silica, tmp_path)
    w.close_session()
    names = [layer.name for layer in viewer.layers]
    w.autosave_dir.setText("/proc/self")
    w.atoms_chooser.set_layer(source)
    w.run_button.click()
    assert "cannot autosave to /proc/self" in w.last_error
    assert w.model is None and w.journal is None and w.layer is None
    assert [layer.name for layer in viewer.layers] == names
    assert w._on_mouse not in source.mouse_drag_callbacks
    assert not w.undo_button.isEnabled()


def test_full_disk_refuses_edits_in_the_widget(make_napari_viewer, silica, tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    viewer = make_napari_viewer()
    w, _ = start(viewer, silica, tmp_path)
    saved = os.dup(w.journal._fd)
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, w.journal._fd)
    try:
        w.layer.selected_data = {0}
        press_key(w.layer, "Delete")  # done in memory, reported as not autosaved
        assert "No space left on device" in w.last_error
        assert not w.layer.editable  # napari's own tools cannot change the layer meanwhile
        n = len(w.model)
        w.layer.selected_data = {0}
        press_key(w.layer, "Delete")
        assert "edits are refused" in w.last_error and len(w.model) == n
        assert_in_sync(w)
    finally:
        os.dup2(saved, w.journal._fd)
        os.close(saved)
        os.close(full)
    press_key(w.layer, "Control-Z")  # space again: the pending line is written, then the undo
    assert len(w.model) == n + 1 and w.layer.editable
    model, path = w.model, w.journal.journal_path
    w.close_session()
    assert restore(path).equals(model)  # nothing accepted was lost
