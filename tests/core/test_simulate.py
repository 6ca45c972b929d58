import numpy as np
import pytest
from scipy.spatial import cKDTree

from napari_aet.core.atoms import Atoms
from napari_aet.core.geometry import grid_center, rotation_matrices
from napari_aet.core.phantoms import silica_glass
from napari_aet.core.simulate import (
    cross_sections,
    project_atoms,
    r_noise,
    simulate,
    simulate_tilt_series,
    voxelize_atoms,
)

PX, SIGMA, N = 0.35, 0.40, 48


@pytest.fixture(scope="module")
def cluster():
    """~100 Si and O atoms from the silica phantom, centred in a 48^3 volume."""
    ph = silica_glass(seed=1)
    keep = np.linalg.norm(ph.atoms.positions, axis=1) < 6.5
    return ph.atoms.select(keep).shifted(grid_center((N,) * 3) * PX)


def _brute_force_projection(atoms, angles, n=N, step=0.5):
    """Integrate the 3D Gaussian density along each detector ray by direct summation."""
    R = rotation_matrices([angles])[0]
    c = grid_center((n, n, n))
    v, u = np.meshgrid(np.arange(n) - c[1], np.arange(n) - c[2], indexing="ij")
    w = np.arange(-n / 2 - 4, n / 2 + 4, step)
    p = np.stack([np.broadcast_to(u[..., None], u.shape + w.shape),
                  np.broadcast_to(v[..., None], v.shape + w.shape),
                  np.broadcast_to(w, u.shape + w.shape)], -1).reshape(-1, 3)
    r_xyz = (p @ R.T) * PX  # object (x, y, z) relative to the centre, Angstrom
    atoms_xyz = atoms.xyz - c[::-1] * PX
    amp = cross_sections(atoms.elements) / (2 * np.pi * SIGMA**2) ** 1.5
    dens = np.zeros(len(r_xyz))
    tree = cKDTree(r_xyz)
    for a, s in zip(atoms_xyz, amp):
        idx = tree.query_ball_point(a, 5 * SIGMA)
        dens[idx] += s * np.exp(-np.sum((r_xyz[idx] - a) ** 2, axis=1) / (2 * SIGMA**2))
    line_integral = dens.reshape(n, n, len(w)).sum(-1) * step * PX
    return line_integral * PX**2  # cross-section per pixel


@pytest.mark.parametrize("angles", [(0, 0, 0), (0, 37, 0), (12, -28, 7)])
def test_analytic_projection_matches_brute_force(cluster, angles):
    analytic = project_atoms(cluster, [angles], (N, N), PX, SIGMA)[0]
    brute = _brute_force_projection(cluster, angles)
    assert np.abs(analytic - brute).max() / brute.max() < 0.01
    assert analytic.sum() == pytest.approx(cross_sections(cluster.elements).sum(), rel=1e-3)


def test_zero_degree_projection_is_voxelised_sum(cluster):
    vol = voxelize_atoms(cluster, (N, N, N), PX, SIGMA)
    proj = project_atoms(cluster, [0.0], (N, N), PX, SIGMA)[0]
    np.testing.assert_allclose(vol.sum(axis=0), proj, atol=1e-3 * proj.max())


def test_cross_section_scales_as_z_to_1_8():
    s = cross_sections(["O", "Zr"])
    assert s[1] / s[0] == pytest.approx((40 / 8) ** 1.8)


def test_r_noise_falls_with_dose_as_published():
    """Published SiO2 table: 2.2e6, 1.43e6, 5.5e5, 3.0e5 e/A^2 -> 10, 12, 20, 25 %."""
    published = {2.2e6: 0.10, 1.43e6: 0.12, 5.5e5: 0.20, 3.0e5: 0.25}
    measured = {dose: simulate("silica", dose_e_per_A2=dose).r_noise for dose in published}
    doses = sorted(published)
    assert all(measured[a] > measured[b] for a, b in zip(doses, doses[1:]))
    for dose, value in published.items():
        assert measured[dose] == pytest.approx(value, rel=0.1)
    # Poisson statistics: R_noise ~ dose^-1/2.
    assert measured[3.0e5] / measured[2.2e6] == pytest.approx(np.sqrt(2.2e6 / 3.0e5), rel=0.03)


def test_simulation_is_reproducible_and_plants_known_shifts():
    a = simulate("fcc", shift_sigma_px=2.0, dose_e_per_A2=1e6, seed=5)
    b = simulate("fcc", shift_sigma_px=2.0, dose_e_per_A2=1e6, seed=5)
    np.testing.assert_array_equal(a.tilt_series, b.tilt_series)
    assert a.shifts_px.shape == (41, 2) and np.std(a.shifts_px) > 1.0
    # Each image's centre of mass moves by the planted shift relative to the unshifted one.
    clean = simulate("fcc", seed=5)
    yy, xx = np.mgrid[: a.expected.shape[1], : a.expected.shape[2]]
    for k in (0, 20, 40):
        com = lambda im: np.array([(im * yy).sum(), (im * xx).sum()]) / im.sum()
        np.testing.assert_allclose(com(a.expected[k]) - com(clean.expected[k]), a.shifts_px[k], atol=0.02)


def test_frames_drift_background_and_jitter():
    sim = simulate("fcc", n_frames=3, drift_px_per_frame=0.8, background_fraction=0.3,
                   angle_jitter_deg=0.3, dose_e_per_A2=1e7, seed=2)
    n = len(sim.angles_deg)
    assert sim.frames.shape == (n, 3) + sim.tilt_series.shape[1:]
    np.testing.assert_allclose(np.linalg.norm(sim.drift_px_per_frame, axis=1), 0.8)
    assert 0 < np.std(sim.true_angles_deg - sim.angles_deg) < 0.6
    assert sim.background.min() > 0
    # The film is thicker when tilted: more background at high tilt.
    hi, lo = np.argmax(np.abs(sim.angles_deg[:, 1])), np.argmin(np.abs(sim.angles_deg[:, 1]))
    assert sim.background[hi].mean() > 2 * sim.background[lo].mean()
    np.testing.assert_allclose(sim.tilt_series, sim.frames.mean(axis=1) * 3, rtol=1e-5)


def test_ramp_film_is_an_offset_plus_a_plane_growing_as_one_over_cos():
    sim = simulate("silica", n_angles=9, background_fraction=0.1, background_ramp=0.3,
                   dose_e_per_A2=None)
    film = sim.background * np.cos(np.deg2rad(sim.true_angles_deg[:, 1]))[:, None, None]
    np.testing.assert_allclose(film, np.broadcast_to(film[0], film.shape), rtol=1e-6)  # 1/cos
    plane = film[0]
    np.testing.assert_allclose(np.diff(plane, 2, axis=0), 0, atol=1e-9 * plane.max())
    np.testing.assert_allclose(np.diff(plane, 2, axis=1), 0, atol=1e-9 * plane.max())
    assert np.ptp(plane) / plane.mean() == pytest.approx(0.3, rel=1e-6)  # the ramp
    # and the film sits under the particle in the measured images
    no_film = simulate("silica", n_angles=9, dose_e_per_A2=None)
    np.testing.assert_allclose(sim.tilt_series - sim.background, no_film.tilt_series, atol=1e-4)


def test_r_noise_definition():
    expected = np.ones((2, 4, 4))
    noisy = expected * 1.1
    assert r_noise(noisy, expected) == pytest.approx(0.1)


def test_truth_atoms_in_volume_frame():
    sim = simulate("fcc")
    vol = sim.truth_volume()
    peak = np.unravel_index(np.argmax(vol), vol.shape)
    d = np.linalg.norm(sim.atoms.positions - np.array(peak) * sim.pixel_size_A, axis=1)
    assert d.min() < sim.pixel_size_A  # the brightest voxel sits on a true atom
    centre = sim.atoms.positions.mean(0) / sim.pixel_size_A
    np.testing.assert_allclose(centre, grid_center(sim.volume_shape), atol=1.0)


def test_simulate_rejects_unknown_phantom_and_bad_atoms():
    with pytest.raises(ValueError, match="unknown phantom"):
        simulate("gold")
    with pytest.raises(ValueError, match="NaN"):
        Atoms([[0, 0, np.nan]], ["Si"])
    with pytest.raises(ValueError, match="unknown element"):
        simulate_tilt_series(Atoms([[0, 0, 0]], ["Qq"]), [0, 10])
