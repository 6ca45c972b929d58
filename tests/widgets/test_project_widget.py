"""The "Project" widget: save a curation session in one viewer, resume it in a fresh one."""

import numpy as np

from napari_aet.core.curation import ReviewItem
from napari_aet.widgets.project import ProjectWidget
from napari_aet.widgets.trace import TraceWidget
from tests.io.test_project import _states_equal
from tests.widgets.test_curate_widget import (
    PX,
    assert_in_sync,
    press_key,
    silica,
    start,
)

__all__ = ["silica"]  # the module fixture, re-used


def test_save_and_resume_in_a_fresh_viewer(make_napari_viewer, silica, tmp_path):
    viewer = make_napari_viewer()
    w, source = start(viewer, silica, tmp_path / "a")
    trace = TraceWidget(viewer)
    viewer.window.add_dock_widget(trace)
    trace.set_form_values({"min_distance_A": 1.7})
    model = w.model
    # hand edits: an added atom, a deletion, a relabel, and one undone edit to redo later
    model.add(np.array([8.0, 8.0, 8.0]), "O")
    model.remove(model.ids[:2], reason="ghost")
    model.relabel(int(model.ids[5]), "Si" if model.elements[5] == "O" else "O")
    model.move(int(model.ids[6]), model.positions[6] + 0.2)
    model.undo()
    items = [ReviewItem("close_pair", model.positions[3], 3, 0.8, "remove", atom_id=int(model.ids[3])),
             ReviewItem("missed_atom", np.array([5.0, 6.0, 7.0]), None, 0.4, "add O")]
    w.set_queue(items)
    model.mark_reviewed(items[0].key)
    project_widget = ProjectWidget(viewer)
    viewer.window.add_dock_widget(project_widget)
    written = project_widget.save(tmp_path / "session")
    assert project_widget.last_error is None, project_widget.last_error
    assert written.name == "session.aet.h5"

    fresh = make_napari_viewer()
    opener = ProjectWidget(fresh)
    fresh.window.add_dock_widget(opener)
    trace2 = TraceWidget(fresh)
    fresh.window.add_dock_widget(trace2)
    project = opener.open(written)
    assert opener.last_error is None, opener.last_error
    assert [layer.name for layer in fresh.layers] == [layer.name for layer in viewer.layers]
    for old, new in zip(viewer.layers, fresh.layers):
        _states_equal(old, new)  # data bit for bit, features, scale, colours, metadata
    assert fresh.layers["silica volume"].scale[0] == PX
    assert trace2.form_values()["min_distance_A"] == 1.7
    assert "atoms curated" in project.curation
    # the curation session continues where it was: same model, history, queue position
    from napari_aet.widgets.curate import CurateWidget

    resumed = [x for x in CurateWidget.instances(fresh)][0]
    assert resumed.model.equals(model) and resumed.model.revision == model.revision
    assert resumed.layer is fresh.layers["atoms curated"]
    assert_in_sync(resumed)
    assert [it.key for it in resumed.items] == [it.key for it in items]
    assert resumed.item_index == w.item_index
    assert items[0].key in resumed.model.reviewed
    n = len(resumed.model)
    press_key(resumed.layer, "Control-Shift-Z")  # redo the undone move
    model.redo()
    assert resumed.model.equals(model) and len(resumed.model) == n
    press_key(resumed.layer, "Control-Z")
    press_key(resumed.layer, "Control-Z")  # undo the relabel made before the save
    assert_in_sync(resumed)
    assert resumed.model.revision == model.revision + 2
    # the resumed session autosaves; the first session's autosave folder is untouched
    assert resumed.journal is not None and resumed.journal.journal_path.exists()


def test_reader_hook_opens_layers_and_errors_are_shown(make_napari_viewer, silica, tmp_path):
    viewer = make_napari_viewer()
    start(viewer, silica, tmp_path)
    widget = ProjectWidget(viewer)
    path = widget.save(tmp_path / "p.aet.h5")
    fresh = make_napari_viewer()
    fresh.open(str(path), plugin="napari-aet")
    assert [layer.name for layer in fresh.layers] == [layer.name for layer in viewer.layers]
    for old, new in zip(viewer.layers, fresh.layers):
        _states_equal(old, new)
    bad = ProjectWidget(fresh)
    assert bad.open(tmp_path / "missing.aet.h5") is None
    assert "does not exist" in bad.last_error
    assert len(fresh.layers) == len(viewer.layers)  # nothing added by the failed open
    empty = ProjectWidget(make_napari_viewer())
    assert empty.save(tmp_path / "e.aet.h5") is None and "no layers" in empty.last_error


def test_file_menu_entries(make_napari_viewer, silica, tmp_path, monkeypatch):
    from qtpy.QtWidgets import QFileDialog

    from napari_aet.widgets.project import open_project_menu, save_project_menu

    viewer = make_napari_viewer()
    start(viewer, silica, tmp_path)
    target = str(tmp_path / "menu.aet.h5")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (target, ""))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (target, ""))
    save_project_menu(viewer)
    fresh = make_napari_viewer()
    open_project_menu(fresh)
    assert [layer.name for layer in fresh.layers] == [layer.name for layer in viewer.layers]
    from napari_aet.widgets.curate import CurateWidget

    assert CurateWidget.instances(fresh)[0].model.equals(CurateWidget.instances(viewer)[0].model)
