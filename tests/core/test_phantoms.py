import numpy as np
import pytest
from scipy.spatial import Delaunay, cKDTree

from napari_aet.core.phantoms import _circumspheres, fcc_particle, silica_glass
from napari_aet.core.simulate import phantom


def _nn(pos, a_mask, b_mask, same):
    d, _ = cKDTree(pos[b_mask]).query(pos[a_mask], k=2 if same else 1)
    return d[:, 1] if same else d


def test_silica_glass_counts_distances_and_amorphous():
    ph = silica_glass(seed=0)
    pos, el = ph.atoms.positions, ph.atoms.elements
    assert ph.atoms.counts() == {"Si": 334, "O": 668}
    assert np.ptp(pos, axis=0).max() < 24.7 + 3.0
    si, o = el == "Si", el == "O"
    assert np.median(_nn(pos, si, o, False)) == pytest.approx(1.6, abs=0.05)
    assert np.median(_nn(pos, o, o, True)) == pytest.approx(2.6, abs=0.1)
    assert np.median(_nn(pos, si, si, True)) == pytest.approx(3.1, abs=0.1)
    d, _ = cKDTree(pos).query(pos, k=2)
    assert d[:, 1].min() >= 1.4
    # Amorphous: Si-O-Si bridges are bent over a wide range (cristobalite has 180 deg only).
    sisi = _nn(pos, si, si, True)
    assert np.std(sisi) > 0.03


def test_phantoms_are_reproducible_and_seeded():
    a, b, c = silica_glass(seed=3), silica_glass(seed=3), silica_glass(seed=4)
    np.testing.assert_array_equal(a.atoms.positions, b.atoms.positions)
    assert not np.allclose(a.atoms.positions, c.atoms.positions)


def test_fcc_particle_small_and_nearest_neighbour():
    ph = fcc_particle()
    assert 100 < len(ph.atoms) < 200
    d, _ = cKDTree(ph.atoms.positions).query(ph.atoms.positions, k=2)
    np.testing.assert_allclose(d[:, 1], 3.92 / np.sqrt(2), atol=1e-9)


@pytest.fixture(scope="module")
def zr():
    return phantom("zr")


def test_zr_core_shell_phases_and_distances(zr):
    atoms = zr.atoms
    zr_mask = atoms.elements == "Zr"
    phase = atoms.features["phase"]
    pos = atoms.positions
    assert 8000 < zr_mask.sum() < 14000 and (atoms.elements == "O").sum() > 5000
    extent = np.linalg.norm(pos - pos.mean(0), axis=1).max() * 2
    assert 80 <= extent <= 100  # an 8-10 nm particle
    tree = cKDTree(pos[zr_mask])
    d, _ = tree.query(pos[zr_mask], k=2)
    nn = d[:, 1]
    zphase = phase[zr_mask]
    assert np.median(nn[zphase == "metal"]) == pytest.approx(3.25, abs=0.05)
    assert np.median(nn[zphase == "crystalline_oxide"]) == pytest.approx(3.6, abs=0.05)
    # Amorphous ZrO2: first peak of the Zr-Zr pair distribution about 3.45 A.
    am = pos[zr_mask][zphase == "amorphous_oxide"]
    pairs = cKDTree(am).query_pairs(4.5, output_type="ndarray")
    dist = np.linalg.norm(am[pairs[:, 0]] - am[pairs[:, 1]], axis=1)
    hist, edges = np.histogram(dist, bins=np.arange(2.6, 4.5, 0.1))
    peak = edges[np.argmax(hist)] + 0.05
    assert 3.2 <= peak <= 3.6
    for name in ("metal", "crystalline_oxide", "amorphous_oxide"):
        assert (zphase == name).sum() > 500
    # Oxide holds oxygen, the metal core none.
    assert not np.any((atoms.elements == "O") & (phase == "metal"))
    # Oxygen at tetrahedral sites: each O about 2.2 A from 4 Zr in the crystalline oxide.
    o_cryst = pos[(atoms.elements == "O") & (phase == "crystalline_oxide")]
    dz, _ = tree.query(o_cryst, k=4)
    assert np.median(dz[:, 3]) == pytest.approx(5.09 * np.sqrt(3) / 4, abs=0.02)


def test_zr_core_shell_planted_voids(zr):
    vac = [v for v in zr.voids if v.kind == "vacancy"]
    pores = [v for v in zr.voids if v.kind == "nano-pore"]
    assert len(vac) >= 50 and len(pores) >= 3
    for v in vac:
        assert 45 <= v.volume_A3 <= 125
    for v in pores:
        assert 125 <= v.volume_A3 <= 4500
    zr_pos = zr.atoms.positions[zr.atoms.elements == "Zr"]
    tree = cKDTree(zr_pos)
    for v in zr.voids:  # each void is empty: no Zr at its centre
        assert tree.query(v.center)[0] > 2.0
    # Apart from planted voids, no interior Zr tetrahedron has a circumsphere > 3.0 A.
    tri = Delaunay(zr_pos)
    centre, radius = _circumspheres(zr_pos[tri.simplices])
    r_particle = np.linalg.norm(zr_pos - zr_pos.mean(0), axis=1).max()
    interior = np.linalg.norm(centre - zr_pos.mean(0), axis=1) < r_particle - 8
    big = centre[interior & (radius > 3.19)]
    void_centres = np.array([v.center for v in zr.voids])
    near_void = cKDTree(void_centres).query(big)[0] < np.array(
        [max(v.radius_A, 0) for v in zr.voids]).max() + 4.0
    assert near_void.mean() > 0.97


def test_zr_core_shell_steps_regions_and_pores():
    """The named steps of the Zr-ZrO2 phantom: regions by direction and core radius; pore
    spheres inside the oxide shell and apart."""
    from napari_aet.core.phantoms import _CoreShellRegions, _pore_spheres

    regions = _CoreShellRegions(np.eye(3)[[0, 1, 2, 2]], r_core_A=10.0)
    xyz = np.array([[5.0, 0, 0], [20.0, 0, 0], [0, 20.0, 0], [0, 0, 20.0], [0, 9.0, 0]])
    assert regions(xyz).tolist() == [0, 1, 2, 3, 0]
    pores = _pore_spheres(np.random.default_rng(1), 43.0, 18.0, 4)
    assert len(pores) == 4
    for k, (c, rp) in enumerate(pores):
        assert 4.5 <= rp <= 7.0
        assert np.linalg.norm(c) + rp + 7 < 43.0 and np.linalg.norm(c) - rp - 6 > 18.0
        for q, qr in pores[:k]:
            assert np.linalg.norm(c - q) >= rp + qr + 10
