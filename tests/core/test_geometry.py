import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from napari_aet.core.geometry import (
    as_euler_angles,
    equal_slope_tilt_angles,
    grid_center,
    is_single_axis,
    linear_tilt_angles,
    project_points,
    rotation_matrices,
)
from napari_aet.io.tilt_series import read_angles, read_stack
from tests.conftest import shared_file


def test_rotations_are_proper_and_theta_tilts_about_y():
    rng = np.random.default_rng(0)
    for convention in ("zyx", "zyz"):
        R = rotation_matrices(rng.uniform(-180, 180, (20, 3)), convention)
        np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
        np.testing.assert_allclose(np.linalg.det(R), 1.0)
    R = rotation_matrices([[0, 30, 0]])[0]
    np.testing.assert_allclose(R @ [0, 1, 0], [0, 1, 0])  # y is the tilt axis
    np.testing.assert_allclose(R @ [1, 0, 0], [np.cos(np.pi / 6), 0, -np.sin(np.pi / 6)])


def test_conventions_differ_only_in_psi_axis():
    a = rotation_matrices([[10, 20, 0]], "zyx")
    b = rotation_matrices([[10, 20, 0]], "zyz")
    np.testing.assert_allclose(a, b)
    assert not np.allclose(rotation_matrices([[10, 20, 5]], "zyx"), rotation_matrices([[10, 20, 5]], "zyz"))
    with pytest.raises(ValueError, match="Euler convention"):
        rotation_matrices([[0, 0, 0]], "xyz")


def test_angle_shapes_and_single_axis():
    assert as_euler_angles([1, 2, 3]).shape == (3, 3)
    assert is_single_axis(linear_tilt_angles(5, -60, 60))
    assert not is_single_axis([[0.5, 10, 0]])
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        as_euler_angles(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        as_euler_angles([0, np.nan])


def test_equal_slope_angles_match_pseudopolar_grid():
    theta = equal_slope_tilt_angles(55, 72.6)[:, 1]
    assert len(theta) == 55 and theta[27] == pytest.approx(0)
    assert theta.max() == pytest.approx(72.6, abs=0.01)
    t = np.where(np.abs(theta) <= 45, np.tan(np.deg2rad(np.abs(theta))),
                 2 - np.tan(np.deg2rad(90 - np.abs(theta)))) * np.sign(theta)
    np.testing.assert_allclose(np.diff(t), 2 / 32, rtol=2e-3)  # slope step of a 32-px grid


def test_project_points_single_axis():
    R = rotation_matrices([[0, 90, 0]])[0]
    p = project_points([[2.0, 0.0, 0.0]], R, [0, 0, 0])  # a point on the beam axis (z=2)
    np.testing.assert_allclose(p[0], [0, 0, -2], atol=1e-12)  # p_x = -z after +90 deg


def _ray_projection(volume, angles):
    """Brute-force projection: sample the volume along rotated rays, sum along the beam."""
    R = rotation_matrices([angles])[0]
    c = grid_center(volume.shape)
    w, v, u = np.meshgrid(*(np.arange(n) - cc for n, cc in zip(volume.shape, c)), indexing="ij")
    r = R @ np.stack([u.ravel(), v.ravel(), w.ravel()])
    coords = np.stack([r[2], r[1], r[0]]) + c[:, None]
    return map_coordinates(volume, coords, order=1).reshape(volume.shape).sum(0)


def test_published_resire_data_follow_our_convention():
    """0-deg projection = volume.sum(axis=0) after our readers; +theta matches, -theta does not."""
    folder = shared_file("resire_amorphous_64")
    proj = read_stack(folder / "projections.npy", pixel_size_A=1.0, layout="matlab").data
    vol = read_stack(folder / "ground_truth_volume.npy", pixel_size_A=1.0, layout="matlab").data
    angles = read_angles(folder / "angles_deg.npy", n_images=proj.shape[0])
    zero = int(np.argmin(np.abs(angles[:, 1])))
    np.testing.assert_allclose(vol.sum(axis=0), proj[zero], rtol=1e-5, atol=1e-5 * proj[zero].max())
    k = int(np.argmin(np.abs(angles[:, 1] - 35)))
    plus = _ray_projection(np.asarray(vol), angles[k])
    minus = _ray_projection(np.asarray(vol), -angles[k])
    assert np.corrcoef(plus.ravel(), proj[k].ravel())[0, 1] > 0.999
    assert np.corrcoef(minus.ravel(), proj[k].ravel())[0, 1] < 0.9
