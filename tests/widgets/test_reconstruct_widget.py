"""The Reconstruct dock widget: a run adds a volume layer with metadata; cancel adds nothing."""

import numpy as np
import pytest

from napari_aet import layers
from napari_aet.core.geometry import linear_tilt_angles
from napari_aet.core.projectors import make_projector
from napari_aet.widgets.reconstruct import ReconstructWidget


@pytest.fixture()
def phantom_series():
    vol = np.zeros((32, 32, 32), np.float32)
    vol[10:20, 8:24, 12:18] = 1.0
    vol[22:25, 10:14, 20:23] = 3.0
    angles = linear_tilt_angles(25, -70, 70)
    data = make_projector(angles, vol.shape).forward(vol)
    return vol, data, angles


def _wait(qtbot, widget, timeout=60000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def test_reconstruct_widget_run(make_napari_viewer, qtbot, phantom_series):
    vol, data, angles = phantom_series
    viewer = make_napari_viewer()
    layers.add_layer(viewer, layers.tilt_series_tuple(data, angles, 0.4, name="aligned"))
    widget = ReconstructWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.series_chooser.currentText() == "aligned"
    assert widget.params["iterations"].value() == 200 and widget.params["step"].value() == 2.0
    if not widget.params["gpu"].isEnabled():
        assert "GPU unavailable" in widget.params["gpu"].toolTip()
    widget.params["iterations"].setValue(30)
    widget.run()
    _wait(qtbot, widget)
    assert widget.last_error is None
    out = widget.last_layer
    meta = layers.aet_meta(out)
    assert meta["kind"] == "volume" and meta["method"] == "resire"
    assert meta["params"]["iterations"] == 30 and len(meta["r1_history"]) == 30
    assert meta["provenance"][-1]["step"] == "reconstruct"
    assert meta["provenance"][-1]["source"] == "aligned"
    np.testing.assert_allclose(out.scale, (0.4, 0.4, 0.4))
    assert np.corrcoef(out.data.ravel(), vol.ravel())[0, 1] > 0.9
    assert widget._slice_images[0] is not None  # live preview was drawn
    assert meta["r1_history"][-1] < 0.1 * meta["r1_history"][0]

    # WBP
    widget.params["method"].setCurrentText("wbp")
    assert not widget.params["iterations"].isEnabled()
    widget.run()
    _wait(qtbot, widget)
    assert layers.aet_meta(widget.last_layer)["method"] == "wbp"
    assert len(viewer.layers) == 3


def test_reconstruct_widget_cancel_keeps_previous(make_napari_viewer, qtbot, phantom_series):
    vol, data, angles = phantom_series
    viewer = make_napari_viewer()
    layers.add_layer(viewer, layers.tilt_series_tuple(data, angles, 0.4, name="aligned"))
    previous = layers.add_layer(viewer, layers.volume_tuple(vol, 0.4, name="previous"))
    widget = ReconstructWidget(viewer)
    widget.params["iterations"].setValue(5000)
    widget.run()
    qtbot.waitUntil(lambda: len(widget.r1_history) >= 2, timeout=30000)
    widget.cancel()
    _wait(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["aligned", "previous"]
    np.testing.assert_array_equal(previous.data, vol)
    assert "cancelled" in widget.status.text()


def test_reconstruct_widget_bad_input(make_napari_viewer, phantom_series):
    _, data, angles = phantom_series
    viewer = make_napari_viewer()
    bad = data.copy()
    bad[3, 4, 5] = np.nan
    layers.add_layer(viewer, layers.tilt_series_tuple(bad, angles, 0.4, name="nan series"))
    viewer.add_labels(np.zeros((32, 32, 32), np.uint8), name="empty",
                      metadata=layers.aet_metadata("support", 0.4))
    widget = ReconstructWidget(viewer)
    widget.run()
    assert "NaN" in widget.last_error and widget.worker is None
    viewer.layers["nan series"].data = data
    widget.support_chooser.setCurrentText("empty")
    widget.run()
    assert "empty" in widget.last_error
    assert len(viewer.layers) == 2


def test_reconstruct_widget_rectangular_extended_object(make_napari_viewer, qtbot):
    """A rectangular tilt series (ny != nx) with the extended-object checkbox: an (nx, ny, nx)
    volume whose metadata records the mode; the checkbox is off for WBP."""
    rng = np.random.default_rng(2)
    film = np.zeros((24, 10, 72), np.float32)
    film[8:16] = rng.random((8, 10, 72)) > 0.85
    angles = linear_tilt_angles(21, -60, 60)
    data = make_projector(angles, film.shape).forward(film)[:, :, 24:48]
    viewer = make_napari_viewer()
    layers.add_layer(viewer, layers.tilt_series_tuple(data, angles, 0.4, name="film"))
    widget = ReconstructWidget(viewer)
    widget.params["iterations"].setValue(15)
    widget.params["extended_object"].setChecked(True)
    widget.run()
    _wait(qtbot, widget)
    assert widget.last_error is None
    assert widget.last_layer.data.shape == (24, 10, 24)
    assert layers.aet_meta(widget.last_layer)["params"]["extended_object"] is True
    widget.params["method"].setCurrentText("wbp")
    assert not widget.params["extended_object"].isEnabled() and "extended_object" not in widget.parameters()


def test_extended_box_only_editable_for_an_extended_object(make_napari_viewer, qtbot):
    """The box width is greyed out unless 'extended object' is ticked (and never for WBP)."""
    widget = ReconstructWidget(make_napari_viewer())
    form = widget.params
    assert not form["extended_box"].isEnabled()
    form["extended_object"].click()  # as a user ticks it
    assert form["extended_object"].isChecked() and form["extended_box"].isEnabled()
    form["method"].setCurrentText("wbp")
    assert not form["extended_box"].isEnabled()
    form["method"].setCurrentText("resire")
    assert form["extended_box"].isEnabled()


def test_reconstruct_widget_refined_angles_land_in_the_layer(make_napari_viewer, qtbot,
                                                            phantom_series):
    """Angle refinement from the form: the new volume layer holds the refined angles (those
    of the same run in core), the shifts, the starting angles and the settings in its
    provenance."""
    vol, data, angles = phantom_series
    start = np.array(angles, float)
    start[:, 1] += np.random.default_rng(2).normal(0, 0.7, len(start))
    viewer = make_napari_viewer()
    layers.add_layer(viewer, layers.tilt_series_tuple(data, start, 0.4, name="aligned"))
    widget = ReconstructWidget(viewer)
    form = widget.params
    assert not form["refine_angles"].isEnabled()  # off until cycles are set
    form["iterations"].setValue(30)
    form["refine_angles_cycles"].setValue(2)
    assert form["refine_angles"].isEnabled() and form["refine_rounds"].isEnabled()
    form["refine_shifts"].setChecked(False)
    widget.run()
    _wait(qtbot, widget)
    assert widget.last_error is None
    meta = layers.aet_meta(widget.last_layer)
    assert meta["params"]["refine_angles_cycles"] == 2
    assert meta["params"]["refine_angles"] == "theta"
    assert meta["provenance"][-1]["params"]["refine_rounds"] == 3
    np.testing.assert_array_equal(meta["angles_deg_start"], start)
    np.testing.assert_array_equal(meta["shifts_px"], 0)
    assert len(meta["refinement_residuals"]) == 2 * 3 and len(meta["r1_history"]) == 30

    from napari_aet.core.jobs import run_to_completion
    from napari_aet.core.reconstruct import run_reconstruction

    core = run_to_completion(run_reconstruction(
        "resire", data, start, iterations=30, refine_angles_cycles=2, refine_shifts=False))
    np.testing.assert_allclose(meta["angles_deg"], core.refinement.angles_deg)
    assert np.abs(np.asarray(meta["angles_deg"]) - start).max() > 0.01  # they moved
    np.testing.assert_allclose(widget.last_layer.data, core.volume, atol=1e-5)
    qtbot.waitUntil(lambda: "angles refined" in widget.status.text(), timeout=5000)


def test_angle_refinement_rows_sit_in_a_collapsed_section(make_napari_viewer):
    """Off by default and rarely changed: the refinement rows show only once the
    'angle refinement' section is opened; they still belong to the one parameter form."""
    from napari_aet.widgets.reconstruct import REFINE

    widget = ReconstructWidget(make_napari_viewer())
    widget.show()
    section = widget.sections["angle refinement"]
    assert not section.isChecked()
    assert not any(widget.params[name].isVisible() for name in REFINE)
    assert widget.params["iterations"].isVisible()
    section.click()
    assert all(widget.params[name].isVisible() for name in REFINE)
    widget.params["refine_angles_cycles"].setValue(2)
    assert widget.params.values().refine_angles_cycles == 2
    assert widget.form_values()["refine_angles_cycles"] == 2
    widget.close()
