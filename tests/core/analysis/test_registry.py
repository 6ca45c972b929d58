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
