import numpy as np
import pytest

from napari_aet.core.atoms import Atoms
from napari_aet.core.phantoms import _FCC, cubic_lattice
from napari_aet.layers import add_layer, atoms_tuple, volume_tuple


def _vacancy_crystal():
    zr = cubic_lattice(_FCC, 5.09, 20)
    zr = zr[np.linalg.norm(zr, axis=1) < 14] + 16.0  # inside a 32 A box
    centre = np.argmin(np.linalg.norm(zr - 16.0, axis=1))
    return Atoms(np.delete(zr, centre, axis=0)[:, ::-1], ["Zr"] * (len(zr) - 1))


@pytest.fixture
def widget_with_atoms(make_napari_viewer):
    from napari_aet.widgets.analyse import AnalyseWidget

    viewer = make_napari_viewer()
    atoms = _vacancy_crystal()
    layer = add_layer(viewer, atoms_tuple(atoms, 0.5, name="atoms"))
    volume = add_layer(viewer, volume_tuple(np.zeros((64, 64, 64), np.float32), 0.5))
    widget = AnalyseWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.atoms_chooser.set_layer(layer)
    widget.volume_chooser.set_layer(volume)
    widget.preset.setCurrentText("ZrO2")
    return viewer, widget, layer, atoms


def _run(qtbot, widget):
    widget.run()
    assert widget.worker is not None, widget.last_error
    with qtbot.waitSignal(widget.worker.finished, timeout=60000):
        pass
    assert widget.last_error is None, widget.last_error


def test_analyse_writes_features_layers_and_plots(qtbot, widget_with_atoms, tmp_path):
    viewer, widget, layer, atoms = widget_with_atoms
    before = np.array(layer.data, copy=True)
    _run(qtbot, widget)
    np.testing.assert_array_equal(layer.data, before)  # positions never change
    for column in ("q4", "q6", "boo", "structure", "rho_n", "oxidation", "phase"):
        assert column in layer.features
    assert (layer.features["phase"] == "crystalline_oxide").all()
    voids = viewer.layers["atoms voids"]
    assert voids.metadata["aet"]["kind"] == "overlay" and len(voids.data[1]) > 0
    assert abs(voids.data[0].mean(0) - 16.0).max() < 0.2  # mesh around the vacancy
    phases = viewer.layers["atoms phases"]
    assert phases.data.shape == (64, 64, 64) and set(np.unique(phases.data)) <= {0, 2}
    assert (phases.data == 2).sum() > 1000
    assert widget.tabs.count() == 4
    # colour by a continuous quantity and back
    widget.color_by.setCurrentText("boo")
    assert widget.colorbar.isVisibleTo(widget) and "boo" in widget.legend.text()
    widget.color_by.setCurrentText("phase")
    assert "crystalline oxide" in widget.legend.text()
    # export
    widget.export_table(tmp_path / "t.csv")
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0].startswith("x,y,z,element,q4,q6,boo") and len(lines) == len(atoms) + 1
    paths = widget.export_figures(tmp_path / "figs")
    assert len(paths) == 8 and all(p.stat().st_size > 500 for p in paths)


def test_bad_input_reports_error(qtbot, make_napari_viewer):
    from napari_aet.widgets.analyse import AnalyseWidget

    viewer = make_napari_viewer()
    viewer.add_points(np.random.default_rng(0).normal(0, 3, (3, 3)), name="few")
    widget = AnalyseWidget(viewer)
    widget.atoms_chooser.set_layer(viewer.layers["few"])
    widget.run()
    if widget.worker is not None:
        with qtbot.waitSignal(widget.worker.finished, timeout=20000):
            pass
    assert "at least 5 atoms" in (widget.last_error or "")
    assert "q4" not in viewer.layers["few"].features
