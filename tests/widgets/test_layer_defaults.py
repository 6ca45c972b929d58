"""Step widgets choose the newest output of the previous step and show full layer names;
the Analyse widget's thresholds come from a real preset (issue 15)."""

from __future__ import annotations

import numpy as np

from napari_aet.core.analysis import AnalysisParameters
from napari_aet.core.atoms import Atoms
from napari_aet.layers import add_layer, atoms_tuple, provenance_step, tilt_series_tuple


def _series(viewer, name, steps):
    data = np.zeros((5, 16, 16), np.float32)
    prov = [provenance_step(s) for s in steps]
    return add_layer(viewer, tilt_series_tuple(data, np.linspace(-60, 60, 5), 0.5, name=name,
                                               provenance=prov))


def test_reconstruct_follows_the_aligned_series_align_keeps_its_input(make_napari_viewer):
    from napari_aet.widgets.align import AlignWidget
    from napari_aet.widgets.reconstruct import ReconstructWidget

    viewer = make_napari_viewer()
    _series(viewer, "raw series", ["simulate"])
    align, recon = AlignWidget(viewer), ReconstructWidget(viewer)
    _series(viewer, "raw series aligned", ["simulate", "align"])
    assert recon.series_chooser.currentText() == "raw series aligned"
    assert align.tilt_chooser.currentText() == "raw series"  # its own output is not its input
    assert "raw series aligned" in recon.series_chooser.toolTip()


def test_analyse_follows_the_curated_atoms_and_their_preset(make_napari_viewer):
    from napari_aet.widgets.analyse import AnalyseWidget

    viewer = make_napari_viewer()
    atoms = Atoms(np.random.default_rng(0).uniform(0, 20, (20, 3)), ["Zr"] * 20)
    add_layer(viewer, atoms_tuple(atoms, 0.5, name="atoms (volume)"))
    w = AnalyseWidget(viewer)
    assert w.preset.currentText() == "generic"  # untraced: a real preset, as Trace's default
    assert w.parameters() == AnalysisParameters.from_preset("generic")
    long_name = "atoms (zr volume resire 200 iterations) curated"
    add_layer(viewer, atoms_tuple(atoms, 0.5, name=long_name, provenance=[
        provenance_step("trace", {"preset": "Pt"}), provenance_step("curate")]))
    assert w.atoms_chooser.currentText() == long_name
    assert w.atoms_chooser.itemData(0, 3) == long_name  # Qt.ToolTipRole: the full name
    assert w.preset.currentText() == "Pt"
    assert w.parameters().first_shell_A == AnalysisParameters.from_preset("Pt").first_shell_A


def test_docked_step_widgets_scroll_instead_of_growing_the_window(make_napari_viewer):
    """Align + Reconstruct + Curate docked: the window's minimum height stays below a
    1080p screen (before: 1662 px for Align + Reconstruct); the content scrolls."""
    from napari_aet.widgets.align import AlignWidget
    from napari_aet.widgets.curate import CurateWidget
    from napari_aet.widgets.reconstruct import ReconstructWidget

    viewer = make_napari_viewer()
    widgets = [cls(viewer) for cls in (AlignWidget, ReconstructWidget, CurateWidget)]
    for w in widgets:
        viewer.window.add_dock_widget(w, name=type(w).__name__)
    window = viewer.window._qt_window
    assert window.minimumSizeHint().height() < 1000
    align = widgets[0]
    assert align.body.minimumSizeHint().height() > align.minimumSizeHint().height()
    assert align.isAncestorOf(align.run_button)
    # content that widens later (the counters line) widens the dock: nothing is cut off
    from qtpy.QtWidgets import QApplication

    curate = widgets[2]
    curate.counters.setText("atoms 10730 | added 0 | removed 0 | moved 0 | relabelled 0 | "
                            "left to review 369")
    QApplication.processEvents()
    assert curate.minimumSizeHint().width() >= curate.body.minimumSizeHint().width()


def test_the_whole_workflow_docked_fits_a_1080p_screen(make_napari_viewer):
    """Align, Reconstruct, Trace, Curate and Analyse docked together (as in a walkthrough):
    the window's minimum height stays below 1080 px (before: 1383 px)."""
    from napari_aet.widgets.align import AlignWidget
    from napari_aet.widgets.analyse import AnalyseWidget
    from napari_aet.widgets.curate import CurateWidget
    from napari_aet.widgets.reconstruct import ReconstructWidget
    from napari_aet.widgets.trace import TraceWidget

    viewer = make_napari_viewer()
    for cls in (AlignWidget, ReconstructWidget, TraceWidget, CurateWidget, AnalyseWidget):
        viewer.window.add_dock_widget(cls(viewer), name=cls.__name__)
    assert viewer.window._qt_window.minimumSizeHint().height() < 1000
