import numpy as np
import pytest

from napari_aet.core.analysis import AnalysisParameters, run_analysis
from napari_aet.core.analysis.voids import find_voids
from napari_aet.core.atoms import Atoms

from .conftest import SHARED_DATA


def _atoms(positions):
    return Atoms(positions, np.full(len(positions), "Pt"))


def test_too_few_atoms():
    with pytest.raises(ValueError, match="at least 5 atoms"):
        run_analysis(_atoms(np.random.default_rng(0).normal(0, 3, (4, 3))))


def test_duplicate_positions():
    p = np.random.default_rng(0).uniform(-10, 10, (50, 3))
    p[7] = p[3]
    with pytest.raises(ValueError, match="duplicate.*atoms 3 and 7"):
        run_analysis(_atoms(p))


def test_nan_positions():
    p = np.random.default_rng(0).uniform(-10, 10, (50, 3))
    p[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        find_voids(p)


def test_unknown_element_and_parameter():
    p = np.random.default_rng(0).uniform(-10, 10, (50, 3))
    with pytest.raises(ValueError, match="no atoms of element"):
        run_analysis(_atoms(p), AnalysisParameters(elements=["Zr"]))
    with pytest.raises(ValueError, match="unknown analysis parameter"):
        AnalysisParameters().updated(r_vod_A=3.0)


def _read_xyz(path):
    lines = path.read_text().splitlines()
    n = int(lines[0])
    rows = [line.split() for line in lines[2:2 + n]]
    xyz = np.array([[float(v) for v in r[1:4]] for r in rows])
    return Atoms(xyz[:, ::-1], np.array([r[0] for r in rows]))


@pytest.mark.skipif(not (SHARED_DATA / "pdpt_core_shell" / "EPB.xyz").exists(),
                    reason="shared test data not present")
def test_pdpt_particle_is_fcc_dominated():
    atoms = _read_xyz(SHARED_DATA / "pdpt_core_shell" / "EPB.xyz")
    result = run_analysis(atoms)
    s = result.summary
    assert 2.6 < s["pdf_peaks_A"][0] < 2.9  # Pd/Pt nearest neighbours 2.75-2.77 A
    assert 3.0 < s["first_shell_A"] < 3.7
    fr = s["structure_fractions"]
    assert fr.get("fcc", 0) == max(fr.values()) and fr["fcc"] > 0.3
    assert s["boo_mean"] > 0.6
    assert 0.05 < s["rho_n_interior_median"] < 0.08  # fcc Pd/Pt about 0.066 A^-3
    assert len(result.table["phase"]) == len(atoms)
