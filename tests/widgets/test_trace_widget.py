"""The "Trace atoms" dock widget."""

import numpy as np
import pytest

from napari_aet.core.geometry import grid_center
from napari_aet.core.scoring import score_atoms
from napari_aet.core.simulate import phantom, voxelize_atoms
from napari_aet.layers import atoms_from_layer, kind_of, volume_tuple
from napari_aet.widgets.trace import TraceWidget, is_curated

PX = 0.35


@pytest.fixture(scope="module")
def silica_crop():
    shape = (80, 80, 80)
    atoms = phantom("silica").atoms
    inner = atoms.select(np.all(np.abs(atoms.positions) < 7.5, axis=1))
    truth = inner.shifted(grid_center(shape) * PX)
    return voxelize_atoms(truth, shape, PX, 0.40).astype(np.float32), truth


@pytest.fixture
def widget(make_napari_viewer, silica_crop):
    viewer = make_napari_viewer()
    data, kwargs, _ = volume_tuple(silica_crop[0], PX, name="silica volume")
    viewer.add_image(data, **kwargs)
    w = TraceWidget(viewer)
    w.preset.setCurrentText("SiO2")
    return w


def _run(qtbot, w):
    w.run_button.click()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    assert w.last_error is None, w.last_error


def test_preset_fills_parameters(widget):
    assert widget.elements.text() == "Si,O"
    assert widget.params["min_distance_A"].value() == pytest.approx(1.0)
    widget.preset.setCurrentText("ZrO2")
    assert widget.elements.text() == "Zr" and widget.params["min_distance_A"].value() == pytest.approx(2.0)


def test_trace_makes_an_atoms_layer(qtbot, widget, silica_crop):
    _run(qtbot, widget)
    layer = widget.output_layer
    assert kind_of(layer) == "atoms" and layer.name == "atoms (silica volume)"
    assert np.allclose(layer.scale, 1.0)  # Angstrom data
    atoms = atoms_from_layer(layer)
    score = score_atoms(atoms, silica_crop[1])
    assert score.recall == 1.0 and score.precision == 1.0 and score.label_accuracy == 1.0
    for name in ("integrated_intensity", "peak_height", "fit_residual", "blur_sigma_A",
                 "nn_distance_A", "class_margin", "source"):
        assert name in layer.features.columns
    # Coloured and sized by element.
    si = layer.features["element"].to_numpy() == "Si"
    assert not np.allclose(layer.face_color[si][0], layer.face_color[~si][0])
    assert layer.size[si][0] > layer.size[~si][0]
    meta = layer.metadata["aet"]
    assert meta["provenance"][-1]["step"] == "trace"
    assert len(meta["class_boundaries"]) == 2
    assert len(widget.histogram.lines) == 2
    assert "atoms (" in widget.status.text()


def test_dragging_a_boundary_relabels_live(qtbot, widget):
    from matplotlib.backend_bases import MouseEvent

    _run(qtbot, widget)
    layer = widget.output_layer
    n_si = int(np.sum(layer.features["element"] == "Si"))
    hist = widget.histogram
    canvas = hist.canvas
    canvas.draw()
    b_si = hist.boundaries[1]
    top = hist.values.max() * 1.5
    hist.ax.set_xlim(hist.values.min(), top)
    canvas.draw()

    def event(name, x_data):
        x = hist.ax.transData.transform((x_data, 1.0))[0]
        y = hist.ax.bbox.y0 + 0.5 * hist.ax.bbox.height  # mid-height of the axes, pixels
        return MouseEvent(name, canvas, x, y, button=1)

    canvas.callbacks.process("button_press_event", event("button_press_event", b_si))
    assert hist._dragging == 1
    # Drag the O/Si boundary above every candidate: every Si becomes O.
    canvas.callbacks.process("motion_notify_event", event("motion_notify_event", top * 0.99))
    assert set(layer.features["element"]) == {"O"}
    assert len(layer.data) == len(widget.result.atoms)
    canvas.callbacks.process("button_release_event", event("button_release_event", top * 0.99))
    assert hist._dragging is None
    # Back to the k-means boundary: labels return.
    widget.set_boundaries(widget.result.boundaries)
    assert int(np.sum(layer.features["element"] == "Si")) == n_si
    # Colours follow the labels.
    si = layer.features["element"].to_numpy() == "Si"
    assert not np.allclose(layer.face_color[si][0], layer.face_color[~si][0])


def test_rerun_never_overwrites_a_curated_layer(qtbot, widget):
    _run(qtbot, widget)
    first = widget.output_layer
    _run(qtbot, widget)  # not curated: updated in place
    assert widget.output_layer is first
    features = first.features.copy()
    features.loc[0, "source"] = "moved"
    first.features = features
    assert is_curated(first)
    data_before = np.array(first.data)
    _run(qtbot, widget)
    assert widget.output_layer is not first
    assert widget.output_layer.name == "atoms (silica volume) [2]"
    np.testing.assert_array_equal(first.data, data_before)
    # Dragging now only touches the new layer.
    widget.set_boundaries(widget.result.boundaries * np.array([1.0, 0.5]))
    np.testing.assert_array_equal(first.data, data_before)


def test_metadata_curated_flag_and_relabel_refusal(qtbot, widget):
    _run(qtbot, widget)
    layer = widget.output_layer
    layer.metadata["aet"]["curated"] = True
    n = len(layer.data)
    widget.set_boundaries(widget.result.boundaries * np.array([1.0, 0.5]))
    assert len(layer.data) == n
    assert "curated" in widget.status.text()


def test_no_volume_and_bad_volume_errors(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    w = TraceWidget(viewer)
    w.run_button.click()
    assert "choose a volume" in w.last_error
    data, kwargs, _ = volume_tuple(np.ones((20, 20, 20), np.float32), PX, name="flat")
    viewer.add_image(data, **kwargs)
    w.volume_chooser.refresh()
    w.run_button.click()
    assert w.worker is None  # refused before starting
    assert "constant" in w.last_error
    data, kwargs, _ = volume_tuple(np.random.default_rng(0).random((20, 20, 20)), PX, name="ok")
    viewer.add_image(data, **kwargs)
    w.volume_chooser.set_layer(viewer.layers["ok"])
    w.elements.setText("Si,Qq")
    w.run_button.click()
    assert w.worker is None and "not an element symbol" in w.last_error
    assert len(viewer.layers) == 2


def test_cancel_writes_nothing(qtbot, widget):
    n_layers = len(widget.viewer.layers)
    widget.run_button.click()
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    assert len(widget.viewer.layers) == n_layers
    assert "cancelled" in widget.status.text()
