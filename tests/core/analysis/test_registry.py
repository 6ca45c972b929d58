"""The analyses are a registry: ANALYSES, the steps and the progress all come from it."""

import numpy as np
import pytest

from napari_aet.core.analysis import ANALYSES, analyse_all, analysis_steps
from napari_aet.core.analysis.phases import core_shell
from napari_aet.core.analysis.registry import REGISTRY
from napari_aet.core.atoms import Atoms


def test_analyses_and_steps_come_from_the_registry():
    assert ANALYSES == ("pdf", "order", "structure", "voronoi", "voids", "oxidation", "phases")
    assert list(REGISTRY)[:-1] == list(ANALYSES) and REGISTRY["phase_volume"].with_volume
    assert analysis_steps(["phases"]) == ["order", "voronoi", "phases"]
    assert analysis_steps(["phases"], with_volume=True) == ["order", "voronoi", "phases",
                                                            "phase_volume"]
    assert analysis_steps(["voids"], with_volume=True) == ["voids"]
    with pytest.raises(ValueError, match="unknown analysis phase_volume"):
        analysis_steps(["phase_volume"])


def test_progress_follows_the_steps_and_columns_their_analyses(zro2_sublattice):
    atoms = Atoms(zro2_sublattice, ["Zr"] * len(zro2_sublattice))
    gen = analyse_all(atoms, analyses=["structure", "oxidation"])
    infos = []
    with pytest.raises(StopIteration) as stop:
        while True:
            infos.append(next(gen))
    result = stop.value.value
    assert [i.stage for i in infos] == ["setup", "structure", "oxidation"]
    assert [i.done for i in infos] == [1, 2, 3] and {i.total for i in infos} == {3}
    assert list(result.table) == ["surface", "coordination", "structure", "oxidation",
                                  "n_oxygen_sites"]
    assert list(result.timings_s) == ["pdf", "region", "structure", "oxidation"]
    assert result.pdf is not None  # no first shell given: the PDF valley gives it
    assert 3.6 < result.summary["first_shell_A"] < 5.09


def test_core_shell_index():
    d = np.array([-3.0, 0.0, 0.1, 4.99, 5.0, 12.0, np.nan])
    np.testing.assert_array_equal(core_shell(d, 5.0), [0, 0, 1, 1, 2, 3, -1])


def test_every_front_end_resolves_a_preset_alike(zro2_sublattice):
    """Issue 15: one source of truth for the analysis thresholds. A table-less preset gets
    ZrO2's scaled to its nearest neighbour (Si) or to the atoms' PDF (generic); overrides
    win; analyse_with_preset records where they came from."""
    from napari_aet.core.analysis import (
        AnalysisParameters,
        analyse_with_preset,
        analysis_parameters,
    )
    from napari_aet.core.jobs import run_to_completion

    atoms = Atoms(zro2_sublattice, ["Zr"] * len(zro2_sublattice))
    zro2, source = analysis_parameters(atoms, "ZrO2")
    assert zro2 == AnalysisParameters.from_preset("ZrO2") and "[analysis] table" in source
    si, source = analysis_parameters(atoms, "Si", {"first_shell_A": 3.0, "r_void_A": None})
    assert si.first_shell_A == 3.0
    assert si.r_void_A == pytest.approx(AnalysisParameters().r_void_A * 2.35 / (5.09 / 2**0.5))
    generic, source = analysis_parameters(atoms, "generic")
    nearest = float(source.rsplit(":", 1)[1].split()[0])
    assert nearest == pytest.approx(5.09 / 2**0.5, abs=0.1)  # the Zr sublattice's first peak
    assert generic.r_void_A == pytest.approx(AnalysisParameters().r_void_A, rel=0.05)
    result = run_to_completion(analyse_with_preset(atoms, "Si", analyses=["pdf"]))
    assert result.params.r_void_A == pytest.approx(si.r_void_A)
    assert "nearest neighbour 2.35 A" in result.summary["thresholds_source"]


def test_the_pdf_that_scales_the_thresholds_is_the_one_reported(zro2_sublattice, monkeypatch):
    """generic: the atoms' PDF scales the thresholds and is the analysis' PDF, computed once."""
    from napari_aet.core.analysis import analyse_with_preset, pdf
    from napari_aet.core.jobs import run_to_completion

    calls = []
    real = pdf.pair_distribution
    monkeypatch.setattr(pdf, "pair_distribution", lambda *a, **k: calls.append(1) or real(*a, **k))
    atoms = Atoms(zro2_sublattice, ["Zr"] * len(zro2_sublattice))
    result = run_to_completion(analyse_with_preset(atoms, "generic", analyses=["pdf"]))
    assert len(calls) == 1
    nearest = float(result.summary["thresholds_source"].rsplit(":", 1)[1].split()[0])
    assert nearest == pytest.approx(float(result.pdf.peaks_A[0]))
