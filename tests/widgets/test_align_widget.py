"""The "Align tilt series" dock widget on a simulated series with planted shifts."""

import numpy as np
import pytest

from napari_aet import layers
from napari_aet.core import align
from napari_aet.core.simulate import simulate
from napari_aet.io.alignment import load_alignment
from napari_aet.widgets.align import AlignWidget


@pytest.fixture(scope="module")
def sim():
    return simulate("silica", n_angles=21, shift_sigma_px=3.0)


def add_series(viewer, sim, name="SiO2 tilt series"):
    return layers.add_layer(viewer, layers.tilt_series_tuple(sim.tilt_series.copy(), sim.angles_deg,
                                                             sim.pixel_size_A, name=name))


def run_and_wait(widget, qtbot):
    worker = widget.run()
    if worker is not None:
        with qtbot.waitSignal(worker.finished, timeout=60000):
            pass
        qtbot.waitUntil(lambda: widget.worker is None, timeout=5000)
    return worker


def test_align_widget_writes_new_layer_and_round_trips_shifts(make_napari_viewer, qtbot, sim, tmp_path):
    viewer = make_napari_viewer()
    source = add_series(viewer, sim)
    before = source.data.copy()
    widget = AlignWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.autosave_edit.setText(str(tmp_path / "autosave.json"))
    # the seeds alone: this checks the layer and the nudges
    widget.align_params["projection_matching_rounds"].setValue(0)
    run_and_wait(widget, qtbot)
    assert widget.last_error is None
    out = widget.output_layer
    assert out is not None and out is not source and len(viewer.layers) == 2
    np.testing.assert_array_equal(source.data, before)  # input untouched
    meta = layers.aet_meta(out)
    assert meta["kind"] == "tilt_series" and meta["provenance"][-1]["step"] == "align"
    shifts = np.asarray(meta["shifts_px"])
    res = align.remove_rigid_translation(shifts + sim.shifts_px, sim.angles_deg)
    assert np.sqrt(np.mean(res**2, axis=0)).max() <= 0.25
    assert (tmp_path / "autosave.json").exists()  # never lost

    # nudge the projection under the slider, recorded like any other shift
    viewer.dims.set_current_step(0, 4)
    widget.nudge_spin.setValue(0.5)
    widget.nudge(0, 1)
    assert np.asarray(layers.aet_meta(out)["shifts_px"])[4, 1] == pytest.approx(shifts[4, 1] + 0.5)
    assert layers.aet_meta(out)["nudges"] == [[4, 0.0, 0.5]]
    np.testing.assert_allclose(load_alignment(tmp_path / "autosave.json").shifts_px[4, 1],
                               shifts[4, 1] + 0.5)
    out.data = np.asarray(out.data)  # what the user sees now
    saved_stack = np.array(out.data, copy=True)

    path = widget.save_shifts(tmp_path / "shifts.csv")
    assert path is not None and path.exists()
    widget.output_layer = None  # reloading makes a fresh layer
    reloaded = widget.load_shifts(tmp_path / "shifts.csv")
    assert reloaded is not None and reloaded is not out
    np.testing.assert_array_equal(reloaded.data, saved_stack)
    np.testing.assert_array_equal(source.data, before)
    widget.toggle_before_after()
    assert not reloaded.visible and source.visible


def test_align_widget_arrow_key_binding(make_napari_viewer, qtbot, sim):
    viewer = make_napari_viewer()
    add_series(viewer, sim)
    widget = AlignWidget(viewer)
    # the seeds alone: this checks the layer and the nudges
    widget.align_params["projection_matching_rounds"].setValue(0)
    run_and_wait(widget, qtbot)
    out = widget.output_layer
    viewer.dims.set_current_step(0, 2)
    start = np.asarray(layers.aet_meta(out)["shifts_px"])[2].copy()
    from napari.utils.key_bindings import KeyBinding

    out.keymap[KeyBinding.from_str("Up")](out)  # what napari calls on the Up arrow
    after = np.asarray(layers.aet_meta(out)["shifts_px"])[2]
    assert after[0] == pytest.approx(start[0] - widget.nudge_spin.value())


def test_align_widget_shows_the_estimated_film_background(make_napari_viewer, qtbot):
    film = simulate("silica", n_angles=9, shift_sigma_px=2.0, dose_e_per_A2=1e6,
                    background_fraction=0.1, background_ramp=0.3)
    viewer = make_napari_viewer()
    add_series(viewer, film, "film series")
    widget = AlignWidget(viewer)
    assert widget.preprocess_params["background"].currentText() == "auto"
    assert widget.align_params["projection_matching_rounds"].value() == 5
    widget.align_params["projection_matching_rounds"].setValue(0)
    run_and_wait(widget, qtbot)
    assert widget.last_error is None
    background, mask = widget.background_layers
    assert (background.name, mask.name) == ("film series background", "film series film mask")
    assert not background.visible and not mask.visible and widget.output_layer.visible
    assert viewer.layers.selection.active is widget.output_layer  # not the hidden mask
    truth = film.background * film.dose_e_per_A2
    film_pixels = np.asarray(mask.data) == 1
    assert 0.3 < film_pixels.mean() < 0.8
    assert np.abs(background.data - truth)[film_pixels].mean() < 0.1 * truth.mean()
    particle = film.expected - truth
    assert (particle * film_pixels).sum() < 1e-3 * particle.sum()  # the particle is in the hole
    widget.show_background_check.setChecked(True)
    assert background.visible and mask.visible and not widget.output_layer.visible
    n_layers = len(viewer.layers)
    widget.preprocess_params["background"].setCurrentText("off")  # a new run replaces (here: removes) them
    run_and_wait(widget, qtbot)
    assert widget.background_layers == [] and len(viewer.layers) == n_layers - 2
    assert widget.output_layer.visible


@pytest.mark.parametrize("problem", ["single image", "angles", "nan", "empty mask"])
def test_align_widget_bad_input(make_napari_viewer, qtbot, sim, problem):
    viewer = make_napari_viewer()
    widget = AlignWidget(viewer)
    data = sim.tilt_series[:5].copy()
    angles = sim.angles_deg[:5]
    if problem == "single image":
        layer = viewer.add_image(data[0], name="one", metadata={"aet": {
            "kind": "tilt_series", "pixel_size_A": 0.35, "angles_deg": angles[:1].tolist()}})
        message = "single image"
    elif problem == "angles":
        layer = viewer.add_image(data, name="bad angles", metadata={"aet": {
            "kind": "tilt_series", "pixel_size_A": 0.35, "angles_deg": angles[:4].tolist()}})
        message = "4 angles for 5 images"
    elif problem == "nan":
        data[2, 10, 10] = np.nan
        layer = add_series(viewer, simulate("silica", n_angles=5), "nan series")
        layer.data = data
        message = "NaN"
    else:
        layer = add_series(viewer, simulate("silica", n_angles=5), "masked series")
        viewer.add_labels(np.zeros(data.shape[1:], int), name="mask",
                          metadata={"aet": {"kind": "mask", "pixel_size_A": 0.35}})
        widget.preprocess_params["background"].setCurrentText("on")
        widget.mask_chooser.setCurrentText("mask")
        message = "empty"
    widget.tilt_chooser.setCurrentText(layer.name)
    before = np.array(layer.data, copy=True)
    n_layers = len(viewer.layers)
    assert widget.run() is None
    assert widget.last_error is not None and message in widget.last_error
    assert len(viewer.layers) == n_layers
    np.testing.assert_array_equal(np.asarray(layer.data), before)


def test_align_widget_asks_for_a_missing_pixel_size_and_calibrates_the_layer(
        make_napari_viewer, qtbot, sim):
    """A stack read from .npy/.mat has no pixel size: the 'pixel size' row says so, Align
    refuses until it is entered, then the layer and the aligned output carry it."""
    viewer = make_napari_viewer()
    meta = {"aet": {"kind": "tilt_series", "pixel_size_A": None,
                    "angles_deg": np.asarray(sim.angles_deg).tolist(), "provenance": []}}
    source = viewer.add_image(sim.tilt_series.copy(), name="from npy", metadata=meta)
    widget = AlignWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.tilt_chooser.layer() is source
    assert widget.pixel_spin.value() == 0 and widget.pixel_spin.text() == "unknown: enter it"
    assert widget.run() is None
    assert "no pixel size: enter it in the 'pixel size' row" in widget.last_error
    widget.last_error = None
    widget.align_params["projection_matching_rounds"].setValue(0)
    widget.pixel_spin.setValue(0.195)
    run_and_wait(widget, qtbot)
    assert widget.last_error is None
    assert layers.pixel_size_of(source) == pytest.approx(0.195)
    np.testing.assert_allclose(source.scale, (1, 0.195, 0.195))
    assert layers.pixel_size_of(widget.output_layer) == pytest.approx(0.195)
    np.testing.assert_allclose(widget.output_layer.scale, (1, 0.195, 0.195))
    # the camera frames the calibrated images, and the aligned layer (not a hidden film
    # mask with its paint tools) is the active one
    ny, nx = source.data.shape[1:]
    assert viewer.camera.center[-1] == pytest.approx((nx - 1) * 0.195 / 2, abs=0.2)
    assert viewer.layers.selection.active is widget.output_layer


def test_align_widget_pixel_size_row_shows_the_layers_own(make_napari_viewer, sim):
    viewer = make_napari_viewer()
    source = add_series(viewer, sim)
    widget = AlignWidget(viewer)
    assert widget.pixel_spin.value() == pytest.approx(sim.pixel_size_A, abs=1e-4)
    assert widget._pixel_size(source) == sim.pixel_size_A  # unchanged, not rounded


def test_align_widget_pixel_size_calibrates_the_layer_once_entered(make_napari_viewer, sim):
    """Aligned data can go straight to Reconstruct: the entered pixel size is the layer's."""
    from napari_aet.widgets.reconstruct import ReconstructWidget

    viewer = make_napari_viewer()
    meta = {"aet": {"kind": "tilt_series", "pixel_size_A": None,
                    "angles_deg": np.asarray(sim.angles_deg).tolist(), "provenance": []}}
    source = viewer.add_image(sim.tilt_series.copy(), name="film.mat", metadata=meta)
    # docked as napari docks it: the widget sees the viewer through napari's public proxy
    _, widget = viewer.window.add_plugin_dock_widget("napari-aet", "Align tilt series")
    recon = ReconstructWidget(viewer)
    assert recon.run() is None and "enter it in the Align widget's 'pixel size' row" in recon.last_error
    widget.pixel_spin.setValue(0.3216)
    assert layers.pixel_size_of(source) == pytest.approx(0.3216)
    np.testing.assert_allclose(source.scale, (1, 0.3216, 0.3216))
