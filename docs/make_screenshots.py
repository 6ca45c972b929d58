"""Regenerate the documentation screenshots in ``docs/images/`` from the real plugin.

Every picture is taken of a real napari window with the real dock widgets, driven the way a
user drives them: choose layers and parameters in the widget, press its run button, wait for
its worker to finish, then set the slice, the camera and the layer visibility. Inputs that a
user would already have at that step (a reconstruction before tracing, a traced model before
curating or analysing) are prepared with the plain Python API, which is what the widgets
call too. Simulated samples only (``napari_aet.core.simulate``), so nothing is downloaded.

Run from the repository root, headless under a virtual X server::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_screenshots.py
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_screenshots.py --only trace

``--only`` takes an image name (``trace_3d``) or a step (``trace`` = both of its images) and
may be repeated. The whole set takes about two minutes on two CPU cores.

Images (overwritten; nothing else in ``docs/images/`` is touched):

======================  ========================================================================
``align_2d.png``        SiO2 tilt series with planted shifts (sigma 3 px), aligned: the +30 deg
                        projection; shifts per projection and common lines before/after
``align_background.png`` SiO2 series on a support film (offset + ramp, 1/cos), low dose: the
                        estimated background and the film mask (**show**) at +30 deg
``reconstruct_2d.png``  Zr-ZrO2 sample, RESIRE (50 iterations): central slice; R1 curve and
                        the live slice preview
``reconstruct_3d.png``  the same volume, attenuated MIP, cut open at its centre, oblique view
``trace_2d.png``        Si (yellow) and O (red) traced in the SiO2 reconstruction, on a slice
                        cutting both; the intensity histogram with its class boundaries
``trace_3d.png``        the traced atoms on one half, the reconstruction on the other, in 3D
``curate_2d.png``       curating the traced Zr model: review queue at a missed-atom candidate
                        (ring), insets, thin slab of +-1 A
``curate_3d.png``       the same item in 3D: a +-2 A slab through it, seen obliquely
``analyse_2d.png``      Zr atoms coloured by phase over the phase volume, central slice; PDF
``analyse_3d.png``      atoms coloured by bond-orientational order with the void surfaces
                        (vacancies yellow, nano-pores orange) in 3D; void-volume histogram
======================  ========================================================================
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore", message="System theme detection")  # PyQt5: harmless

IMAGES = Path(__file__).resolve().parent / "images"
WINDOW = (1600, 1000)
DOCK_WIDTH = 470
STEPS = {
    "align": ("align_2d", "align_background"),
    "reconstruct": ("reconstruct_2d", "reconstruct_3d"),
    "trace": ("trace_2d", "trace_3d"),
    "curate": ("curate_2d", "curate_3d"),
    "analyse": ("analyse_2d", "analyse_3d"),
}
#: RESIRE iterations for the screenshots: enough for atoms to separate, quick on a laptop.
ITERATIONS = 50


# --- Qt helpers ---------------------------------------------------------------------------

def process_events(seconds: float = 0.3):
    """Let Qt (and vispy) handle pending events for a little while."""
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while True:
        QApplication.processEvents()
        if time.perf_counter() >= end:
            break
        time.sleep(0.02)


def wait_for(widget, timeout: float = 300.0):
    """Wait until the widget's worker has finished (as the tests' ``qtbot.waitUntil`` does)."""
    start = time.perf_counter()
    while widget.worker is not None:
        process_events(0.05)
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"{type(widget).__name__} still running after {timeout:.0f} s")
    process_events(0.3)  # the widgets post their summaries with QTimer.singleShot(0, ...)
    if widget.last_error:
        raise RuntimeError(f"{type(widget).__name__}: {widget.last_error}")


def new_viewer(title: str):
    import napari

    try:  # the once-per-session "PyQt5 is deprecated" toast would cover the canvas
        from napari._qt import qt_main_window

        qt_main_window.SHOW_QT_WARNING = False
    except (ImportError, AttributeError):
        pass

    viewer = napari.Viewer(title=f"napari-aet: {title}")
    viewer.window.resize(*WINDOW)
    process_events()
    return viewer


def dock(viewer, display_name: str):
    """Open a napari-aet widget as Plugins > napari AET > ``display_name`` does."""
    from qtpy.QtCore import Qt

    dock_widget, widget = viewer.window.add_plugin_dock_widget("napari-aet", display_name)
    viewer.window._qt_window.resizeDocks([dock_widget], [DOCK_WIDTH], Qt.Horizontal)
    process_events()
    return widget


def shoot(viewer, name: str):
    """Save the whole window (canvas, layer list and docks) as ``docs/images/<name>.png``."""
    process_events(0.8)
    path = IMAGES / f"{name}.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"  wrote {path.relative_to(IMAGES.parent.parent)}", flush=True)


def centre_world(layer) -> np.ndarray:
    """World (Angstrom) coordinates of the centre of an image layer."""
    shape = np.asarray(layer.data.shape[-3:], float)
    return (shape // 2) * np.asarray(layer.scale)[-3:] + np.asarray(layer.translate)[-3:]


def set_slice(viewer, z_world: float):
    viewer.dims.set_point(0, float(z_world))


def mixed_slice(atoms_layer, volume_layer, search_A: float = 4.0, half_A: float = 0.5) -> float:
    """A z plane (world, on the voxel grid) near the centre cutting atoms of every species.

    The simulated glass is built from a perturbed diamond lattice, so some planes cut only
    O; this picks the plane (within +-``search_A`` of the centre) whose +-``half_A`` slab
    holds the most atoms of every species (largest product of the counts).
    """
    z = np.asarray(atoms_layer.data)[:, 0]
    elements = atoms_layer.features["element"].astype(str).to_numpy()
    species = np.unique(elements)
    step = float(volume_layer.scale[0])
    centre = centre_world(volume_layer)[0]
    planes = centre + step * np.arange(-round(search_A / step), round(search_A / step) + 1)

    def score(plane):
        near = np.abs(z - plane) <= half_A
        return np.prod([np.sum(near & (elements == e)) for e in species])

    return float(max(planes, key=score))


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def oblique_3d(viewer, zoom_factor: float = 1.0, angles=(-20.0, 35.0, 140.0),
               perspective: float = 30.0):
    """3D display, camera turned off the beam axis (with perspective) so depth reads."""
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    cam = camera(viewer)
    cam.angles = angles
    cam.perspective = perspective
    cam.zoom = cam.zoom * zoom_factor
    process_events(0.5)


def cut_open(layers_, centre_world, normal=(0.0, 0.0, 1.0), slab_A: float | None = None):
    """Clip layers in 3D so the inside shows (positions in world coordinates, Angstrom).

    Without ``slab_A``: keep the half space on the ``normal`` side of the plane through
    ``centre_world``; with it: keep only the slab +-``slab_A`` around that plane.
    """
    centre = np.asarray(centre_world, float)
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    if slab_A is None:
        planes = [(centre, n)]
    else:
        planes = [(centre - slab_A * n, n), (centre + slab_A * n, -n)]
    planes = [{"position": tuple(map(float, pos)), "normal": tuple(map(float, nrm)),
               "enabled": True} for pos, nrm in planes]
    for layer in layers_:
        layer.experimental_clipping_planes = planes


def contrast(layer, low: float = 0.5, high: float = 99.95, floor: float | None = None):
    """Contrast limits from percentiles of the layer's positive voxels (not the empty box).

    ``floor``: lower limit as a fraction of the upper one instead (hides the reconstruction
    noise around the particle in 3D renderings).
    """
    data = np.asarray(layer.data)
    lo, hi = np.percentile(data[data > 0] if (data > 0).any() else data, [low, high])
    lo = min(lo, 0.0) if floor is None else floor * hi
    layer.contrast_limits = (float(lo), float(hi))


# --- data a user would already have (plain Python API) --------------------------------------

@functools.cache
def silica_sample():
    """The SiO2 glass sample as File > Open Sample gives it (55 projections, no shifts)."""
    from napari_aet.sample_data import simulate

    return simulate("silica")


@functools.cache
def zr_sample():
    from napari_aet.sample_data import simulate

    return simulate("zr")


_RECONSTRUCTIONS: dict[str, np.ndarray] = {}


def reconstruction(name: str) -> np.ndarray:
    """RESIRE reconstruction of a sample (the Reconstruct step's result when it ran first)."""
    if name not in _RECONSTRUCTIONS:
        from napari_aet.core.reconstruct import resire

        sim = silica_sample() if name == "silica" else zr_sample()
        print(f"  reconstructing the {name} sample ({ITERATIONS} RESIRE iterations)", flush=True)
        _RECONSTRUCTIONS[name], _ = resire(sim.tilt_series, sim.angles_deg, iterations=ITERATIONS)
    return _RECONSTRUCTIONS[name]


def add_volume(viewer, name: str, label: str):
    from napari_aet import layers

    sim = silica_sample() if name == "silica" else zr_sample()
    provenance = [layers.provenance_step("reconstruct", {"method": "resire",
                                                         "iterations": ITERATIONS},
                                         f"{label} tilt series")]
    return layers.add_layer(viewer, layers.volume_tuple(
        reconstruction(name), sim.pixel_size_A, name=f"{label} tilt series resire",
        provenance=provenance, method="resire"))


@functools.cache
def traced(name: str):
    """Atoms traced in the reconstruction with the sample's preset (a TraceResult)."""
    from napari_aet.core.trace import trace

    sim = silica_sample() if name == "silica" else zr_sample()
    print(f"  tracing the {name} reconstruction", flush=True)
    preset = "SiO2" if name == "silica" else "ZrO2"
    return trace(reconstruction(name), sim.pixel_size_A, preset=preset)


def add_traced_atoms(viewer, name: str, volume_layer):
    from napari_aet import layers

    result = traced(name)
    return layers.add_layer(viewer, layers.atoms_tuple(
        result.atoms, result.pixel_size_A, name=f"atoms ({volume_layer.name})",
        provenance=[layers.provenance_step("trace", {"preset": result.parameters.get("preset")},
                                           volume_layer.name)],
        source_layer=volume_layer.name, class_names=result.class_names, curated=False))


# --- the steps ------------------------------------------------------------------------------

def align(wanted):
    """Align a SiO2 tilt series with planted random shifts (sigma 3 px); show the estimated
    background of a series on a support film."""
    if "align_2d" in wanted:
        align_shifts()
    if "align_background" in wanted:
        align_background()


def align_background():
    from napari_aet import layers
    from napari_aet.core.simulate import simulate

    sim = simulate("silica", shift_sigma_px=2, dose_e_per_A2=2.5e5, background_fraction=0.1,
                   background_ramp=0.3, seed=1)
    viewer = new_viewer("align")
    series = layers.add_layer(viewer, layers.tilt_series_tuple(
        sim.tilt_series, sim.angles_deg, sim.pixel_size_A, name="SiO2 on film"))
    widget = dock(viewer, "Align tilt series")
    widget.tilt_chooser.set_layer(series)
    widget.align_params["projection_matching_rounds"].setValue(1)
    widget.run_button.click()
    wait_for(widget)
    series.visible = False
    widget.show_background_check.setChecked(True)
    viewer.layers.selection.active = widget.background_layers[0]
    viewer.dims.set_point(0, int(np.argmin(np.abs(sim.angles_deg[:, 1] - 30))))
    viewer.reset_view()
    shoot(viewer, "align_background")
    viewer.close()


def align_shifts():
    from napari_aet import layers
    from napari_aet.core.simulate import simulate

    sim = simulate("silica", shift_sigma_px=3, seed=1)
    viewer = new_viewer("align")
    series = layers.add_layer(viewer, layers.tilt_series_tuple(
        sim.tilt_series, sim.angles_deg, sim.pixel_size_A, name="SiO2 tilt series"))
    widget = dock(viewer, "Align tilt series")
    widget.tilt_chooser.set_layer(series)
    # one projection-matching round after common line + CoM
    widget.align_params["projection_matching_rounds"].setValue(1)
    widget.run_button.click()
    wait_for(widget)
    aligned = widget.output_layer
    series.visible = False
    viewer.layers.selection.active = aligned
    contrast(aligned, 1, 99.9)
    viewer.dims.set_point(0, int(np.argmin(np.abs(sim.angles_deg[:, 1] - 30))))
    viewer.reset_view()
    camera(viewer).zoom *= 1.3
    shoot(viewer, "align_2d")
    viewer.close()


def reconstruct(wanted):
    """RESIRE of the Zr-ZrO2 sample in the Reconstruct widget; slice and 3D view."""
    viewer = new_viewer("reconstruct")
    viewer.open_sample("napari-aet", "zr")
    series = viewer.layers["Zr-ZrO2 tilt series"]
    widget = dock(viewer, "Reconstruct")
    widget.series_chooser.set_layer(series)
    widget.params["method"].setCurrentText("resire")
    widget.params["iterations"].setValue(ITERATIONS)
    widget.run_button.click()
    wait_for(widget)
    volume = widget.last_layer
    _RECONSTRUCTIONS.setdefault("zr", np.asarray(volume.data))
    series.visible = False
    viewer.layers.selection.active = volume
    contrast(volume)
    set_slice(viewer, centre_world(volume)[0])
    viewer.reset_view()
    if "reconstruct_2d" in wanted:
        shoot(viewer, "reconstruct_2d")
    if "reconstruct_3d" in wanted:
        volume.rendering = "attenuated_mip"
        contrast(volume, floor=0.25)
        cut_open([volume], centre_world(volume))  # the lattice inside, on the cut face
        oblique_3d(viewer, 1.05)
        shoot(viewer, "reconstruct_3d")
    viewer.close()


def trace(wanted):
    """Trace Si and O in the SiO2 reconstruction with the SiO2 preset."""
    viewer = new_viewer("trace")
    volume = add_volume(viewer, "silica", "SiO2")
    contrast(volume)
    widget = dock(viewer, "Trace atoms")
    widget.volume_chooser.set_layer(volume)
    widget.preset.setCurrentText("SiO2")
    widget.run_button.click()
    wait_for(widget)
    atoms = widget.output_layer
    set_slice(viewer, mixed_slice(atoms, volume))
    viewer.reset_view()
    camera(viewer).zoom *= 1.7  # the glass cube fills the middle of its box
    if "trace_2d" in wanted:
        shoot(viewer, "trace_2d")
    if "trace_3d" in wanted:
        # atoms on one half, the reconstruction they were traced from on the other
        contrast(volume, floor=0.1)
        cut_open([atoms], centre_world(volume))
        oblique_3d(viewer, 1.4, angles=(-15.0, 30.0, 60.0))
        shoot(viewer, "trace_3d")
    viewer.close()


def curate(wanted):
    """Curate the traced Zr-ZrO2 model: start a session, build the review queue, show an item.

    (The SiO2 trace above leaves nothing to review; the Zr model's queue is the realistic
    case of several hundred items.)
    """
    viewer = new_viewer("curate")
    volume = add_volume(viewer, "zr", "Zr-ZrO2")
    contrast(volume)
    source = add_traced_atoms(viewer, "zr", volume)
    source.visible = False  # the curated copy is drawn instead
    widget = dock(viewer, "Curate atoms")
    with tempfile.TemporaryDirectory(prefix="napari-aet-screens-") as autosave:
        widget.atoms_chooser.set_layer(source)
        widget.volume_chooser.set_layer(volume)
        widget.autosave_dir.setText(autosave)
        widget.d_min.setValue(2.0)  # the ZrO2 preset's minimum Zr-Zr distance
        widget.slab_on.setChecked(True)
        widget.run_button.click()  # "Start curating"
        process_events()
        if widget.last_error:
            raise RuntimeError(widget.last_error)
        viewer.reset_view()
        camera(viewer).zoom *= 2.5
        widget.queue_button.click()  # "Build review queue": a worker, then the first item
        wait_for(widget)
        # Press "Next >" (N) through the queue up to the first missed-atom candidate: a
        # bright peak nobody traced, the clearest case to show.
        t = time.perf_counter()
        for _ in range(len(widget.items)):
            if widget.current_item().kind == "missed_atom":
                break
            widget.next_button.click()
        print(f"  item {widget.item_index + 1} of {len(widget.items)}: "
              f"{widget.current_item().kind} ({time.perf_counter() - t:.1f} s)", flush=True)
        item = widget.current_item()
        if "curate_2d" in wanted:
            shoot(viewer, "curate_2d")
        if "curate_3d" in wanted:
            # a +-2 A slab through the item, seen obliquely: the peak in the ring has no atom
            contrast(volume, floor=0.25)
            cut_open([volume, widget.layer], item.position, slab_A=2.0)
            oblique_3d(viewer, 2.5)
            camera(viewer).center = tuple(item.position)
            shoot(viewer, "curate_3d")
        widget.close_session()
        viewer.close()


def analyse(wanted):
    """Analyse the traced Zr-ZrO2 model: phases, BOO, voids, with the volume for phase labels."""
    viewer = new_viewer("analyse")
    volume = add_volume(viewer, "zr", "Zr-ZrO2")
    contrast(volume)
    atoms = add_traced_atoms(viewer, "zr", volume)
    widget = dock(viewer, "Analyse structure")
    widget.atoms_chooser.set_layer(atoms)
    widget.volume_chooser.set_layer(volume)
    widget.preset.setCurrentText("ZrO2")
    widget.run_button.click()
    wait_for(widget)
    widget.color_by.setCurrentText("phase")
    viewer.layers.move(viewer.layers.index(atoms), len(viewer.layers))  # atoms over the overlays
    set_slice(viewer, centre_world(volume)[0])
    viewer.reset_view()
    viewer.layers.selection.active = atoms
    if "analyse_2d" in wanted:
        widget.tabs.setCurrentIndex(0)
        shoot(viewer, "analyse_2d")
    if "analyse_3d" in wanted:
        widget.color_by.setCurrentText("boo")
        for layer in viewer.layers:
            if layer is volume or layer.name.endswith("phases"):
                layer.visible = False
        atoms.size = 0.6  # point size (layer controls): small atoms, the voids show inside
        widget.tabs.setCurrentIndex(2)  # void volumes
        oblique_3d(viewer, 1.1)
        shoot(viewer, "analyse_3d")
    viewer.close()


SCENES = {"align": align, "reconstruct": reconstruct, "trace": trace, "curate": curate,
          "analyse": analyse}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = sorted(set(STEPS) | {image for images in STEPS.values() for image in images})
    parser.add_argument("--only", action="append", choices=names, metavar="NAME",
                        help="regenerate only this image (e.g. trace_3d) or step (e.g. trace); "
                             "repeatable")
    args = parser.parse_args(argv)
    wanted = set()
    for name in args.only or STEPS:
        wanted.update(STEPS.get(name, (name,)))
    IMAGES.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for step, images in STEPS.items():
        todo = wanted.intersection(images)
        if todo:
            print(f"{step}: {', '.join(sorted(todo))}", flush=True)
            t = time.perf_counter()
            SCENES[step](todo)
            print(f"  {time.perf_counter() - t:.0f} s", flush=True)
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
