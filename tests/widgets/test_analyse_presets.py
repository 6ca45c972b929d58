"""The Analyse widget's thresholds come from the chosen preset, or for the generic preset
from the atoms' PDF, and the widget says which (issue 15)."""

import numpy as np

from napari_aet.core.analysis import AnalysisParameters, preset_thresholds
from napari_aet.core.atoms import Atoms
from napari_aet.core.phantoms import _FCC, cubic_lattice
from napari_aet.layers import add_layer, atoms_tuple

PT_A = 3.92


def _pt_vacancy_crystal():
    pt = cubic_lattice(_FCC, PT_A, 16)
    pt = pt[np.linalg.norm(pt, axis=1) < 12] + 14.0
    centre = np.argmin(np.linalg.norm(pt - 14.0, axis=1))
    return Atoms(np.delete(pt, centre, axis=0)[:, ::-1], ["X"] * (len(pt) - 1))


def test_table_less_presets_scale_zro2_thresholds():
    pdpt = AnalysisParameters.from_preset("PdPt")  # scaled by hand to fcc a = 3.92 A
    scaled = AnalysisParameters().scaled_to_nearest(PT_A / 2**0.5)
    assert abs(scaled.r_void_A - pdpt.r_void_A) < 0.01
    for name in ("vacancy_min_A3", "vacancy_max_A3", "nanopore_max_A3"):
        assert abs(getattr(scaled, name) / getattr(pdpt, name) - 1) < 0.005
    si, source, to_pdf = preset_thresholds("Si")
    assert abs(si.r_void_A - 3.19 * 2.35 / 3.5992) < 1e-3 and not to_pdf and "2.35 A" in source
    assert abs(si.rho_metal_min - 0.035 * (3.5992 / 2.35) ** 3) < 1e-4
    assert preset_thresholds("ZrO2")[0] == AnalysisParameters.from_preset("ZrO2")
    assert preset_thresholds("generic")[2]


def test_preset_choice_sets_and_shows_the_thresholds(make_napari_viewer):
    from napari_aet.widgets.analyse import AnalyseWidget

    viewer = make_napari_viewer()
    w = AnalyseWidget(viewer)
    w.preset.setCurrentText("Si")
    assert abs(w.parameters().r_void_A - 2.08) < 0.01
    assert "Si's nearest neighbour 2.35 A" in w.preset_note.text()
    w.preset.setCurrentText("SiO2")
    assert w.parameters().vacancy_max_A3 < 12.0 and "1.61 A" in w.preset_note.text()
    w.preset.setCurrentText("ZrO2")
    assert w.parameters().r_void_A == 3.19 and "[analysis] table" in w.preset_note.text()
    w.preset.setCurrentText("generic")
    assert "first PDF peak" in w.preset_note.text()


def test_generic_preset_scales_thresholds_to_the_pdf_and_finds_the_vacancy(qtbot,
                                                                         make_napari_viewer):
    """A Pt-sized fcc crystal with one vacancy: with ZrO2's r_void (3.19 A) the vacancy's
    tetrahedra (circumradius about 2.8 A) are not void; scaled to the PDF's first peak
    (2.77 A) they are, and the status names where the thresholds came from."""
    from napari_aet.widgets.analyse import AnalyseWidget

    viewer = make_napari_viewer()
    layer = add_layer(viewer, atoms_tuple(_pt_vacancy_crystal(), 0.5, name="atoms"))
    w = AnalyseWidget(viewer)
    w.atoms_chooser.set_layer(layer)
    w.preset.setCurrentText("generic")
    for name, box in w.checks.items():
        box.setChecked(name == "voids")
    w.run()
    assert w.worker is not None, w.last_error
    with qtbot.waitSignal(w.worker.finished, timeout=60000):
        pass
    assert w.last_error is None, w.last_error
    assert abs(w.result.params.r_void_A - 3.19 * PT_A / 5.09) < 0.05
    assert w.result.summary["voids"]["vacancy"] == 1
    assert "first PDF peak" in w.status.text() and "r_void 2.4" in w.status.text()


def test_si_preset_leaves_out_the_metal_oxide_analyses(make_napari_viewer, qtbot):
    """Amorphous Si (a covalent network) read 96 % 'crystalline' and 'oxide' in the phases
    analysis: its preset ticks only the analyses that suit it; ZrO2's ticks them all."""
    from napari_aet.core.analysis import ANALYSES, preset_analyses
    from napari_aet.widgets.analyse import AnalyseWidget

    assert preset_analyses("Si") == ("pdf", "structure", "voronoi", "voids")
    assert preset_analyses("ZrO2") == ANALYSES
    viewer = make_napari_viewer()
    fcc = cubic_lattice(_FCC, 5.43, 4)  # diamond Si: two fcc lattices a/4 apart, jittered
    diamond = np.vstack([fcc, fcc + 5.43 / 4])
    diamond = diamond[np.linalg.norm(diamond - diamond.mean(0), axis=1) < 8]
    diamond += np.random.default_rng(1).normal(0, 0.1, diamond.shape) + 10.0
    atoms = Atoms(diamond, ["Si"] * len(diamond))
    add_layer(viewer, atoms_tuple(atoms, 0.2, name="a-Si atoms"))
    w = AnalyseWidget(viewer)
    w.preset.setCurrentText("Si")
    assert {k for k, b in w.checks.items() if b.isChecked()} == set(preset_analyses("Si"))
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    assert w.last_error is None and "phase_counts" not in w.result.summary
    assert "oxide" not in w.status.text()
    w.preset.setCurrentText("ZrO2")
    assert all(b.isChecked() for b in w.checks.values())
