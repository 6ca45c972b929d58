import numpy as np
import pytest

from napari_aet.core.analysis.pdf import pair_distribution
from napari_aet.core.analysis.voids import classify_void, find_voids
from napari_aet.core.analysis.voronoi import voronoi_cells

from .conftest import ZRO2_A


def test_fcc_pdf_peaks_and_valley():
    from napari_aet.core.phantoms import fcc_particle

    a = 3.92
    atoms = fcc_particle("Pt", a, radius_A=12.0).atoms
    pdf = pair_distribution(atoms.positions)
    for expected in (a / np.sqrt(2), a, a * np.sqrt(1.5)):
        assert np.min(np.abs(pdf.peaks_A - expected)) < 0.05
    assert a / np.sqrt(2) < pdf.first_valley_A < a
    # finite-particle correction: g stays near 1 at large r instead of decaying to 0
    tail = (pdf.r_A > 8) & (pdf.r_A < 12)
    assert 0.7 < pdf.g[tail].mean() < 1.3


def test_zro2_interior_rho_n(zro2_sublattice):
    vor = voronoi_cells(zro2_sublattice, 4.5)
    interior = np.linalg.norm(zro2_sublattice, axis=1) < 12
    expected = 4 / ZRO2_A**3
    assert np.nanmean(vor.rho_n[interior]) == pytest.approx(expected, rel=0.01)
    assert np.all(np.abs(vor.rho_n[interior] / expected - 1) < 0.01)
    # surface cells are closed by the particle, not by a box: finite, within a factor 2
    assert np.isfinite(vor.volume_A3).all()
    assert np.all(vor.rho_n[vor.surface] > 0.5 * expected)
    # 12 Voronoi bonds (fcc first shell) for interior atoms
    bonds = np.bincount(vor.bonds.ravel(), minlength=len(zro2_sublattice))
    assert np.all(bonds[interior] == 12)


def test_perfect_crystal_has_no_void(zro2_sublattice):
    result = find_voids(zro2_sublattice, 3.19, alpha_A=4.5)
    assert [v for v in result.voids if v.kind != "interstitial"] == []
    assert result.porosity == 0


def test_one_missing_zr_is_one_vacancy(zro2_sublattice):
    centre = np.argmin(np.linalg.norm(zro2_sublattice, axis=1))
    result = find_voids(np.delete(zro2_sublattice, centre, axis=0), 3.19, alpha_A=4.5)
    real = [v for v in result.voids if v.kind != "interstitial"]
    assert len(real) == 1
    v = real[0]
    assert v.kind == "vacancy" and 45 <= v.volume_A3 <= 125
    assert np.linalg.norm(v.center - zro2_sublattice[centre]) < 0.1
    assert len(v.lining) == 12
    vertices, faces, values = result.mesh()
    assert len(faces) > 0 and faces.max() < len(vertices) and np.all(values == 1)


def test_void_classes():
    assert classify_void(110) == "vacancy"
    assert classify_void(300) == "nano-pore"
    assert classify_void(5000) == "pore"
    assert classify_void(10) == "interstitial"


def test_pair_histogram_streamed_equals_all_pairs_at_once():
    """Blocks of a few atoms give exactly the histogram of every pair held at once."""
    from scipy.spatial import cKDTree

    from napari_aet.core.analysis.pdf import pair_histogram

    rng = np.random.default_rng(3)
    positions = rng.uniform(0, 30, (3000, 3))
    edges = np.arange(0.0, 8.0 + 0.01, 0.02)
    pairs = cKDTree(positions).query_pairs(8.0, output_type="ndarray")
    dist = np.linalg.norm(positions[pairs[:, 0]] - positions[pairs[:, 1]], axis=1)
    whole = 2.0 * np.histogram(dist, edges)[0]
    streamed = pair_histogram(positions, edges, block=5_000)  # ~50 atoms per block
    assert whole.sum() > 100_000
    np.testing.assert_array_equal(streamed, whole)
    assert pair_histogram(positions[:1], edges).sum() == 0
