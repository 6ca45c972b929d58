"""Projectors: adjointness, agreement between paths, and agreement with the analytic simulator."""

from pathlib import Path

import numpy as np
import pytest

from napari_aet.core.geometry import linear_tilt_angles
from napari_aet.core.projectors import (
    BatchedGeneralProjector,
    GeneralProjector,
    SingleAxisProjector,
    gpu_available,
    make_projector,
)

DATA = Path(__file__).parents[2] / ".." / "shared" / "data"
SHAPE = (20, 18, 24)


def _adjoint_mismatch(projector, rng):
    x = rng.random(projector.volume_shape)
    y = rng.random(projector.projection_shape)
    lhs = np.vdot(np.asarray(projector.forward(x), float), y)
    rhs = np.vdot(x, np.asarray(projector.adjoint(y), float))
    return abs(lhs - rhs) / abs(lhs)


@pytest.mark.parametrize("subpixel", [True, False])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_single_axis_adjoint(subpixel, n_threads):
    rng = np.random.default_rng(1)
    proj = SingleAxisProjector(linear_tilt_angles(9, -72, 72), SHAPE, subpixel=subpixel,
                               n_threads=n_threads)
    assert proj.projection_shape == (9, SHAPE[1], SHAPE[2])
    assert _adjoint_mismatch(proj, rng) < 1e-4


@pytest.mark.parametrize("subpixel", [True, False])
def test_general_adjoint_off_axis(subpixel):
    rng = np.random.default_rng(2)
    theta = np.linspace(-70, 70, 7)
    angles = np.c_[rng.normal(0, 3, 7), theta, rng.normal(0, 3, 7)]
    proj = GeneralProjector(angles, SHAPE, subpixel=subpixel, chunk_elements=3000)
    assert _adjoint_mismatch(proj, rng) < 1e-4


@pytest.mark.parametrize("subpixel", [True, False])
def test_general_equals_single_axis_without_phi_psi(subpixel):
    rng = np.random.default_rng(3)
    angles = linear_tilt_angles(9, -72, 72)
    single = SingleAxisProjector(angles, SHAPE, subpixel=subpixel)
    general = GeneralProjector(angles, SHAPE, subpixel=subpixel)
    x = rng.random(SHAPE).astype(np.float32)
    y = rng.random(single.projection_shape).astype(np.float32)
    a, b = single.forward(x), general.forward(x)
    assert np.abs(a - b).max() <= 1e-3 * np.abs(a).max()
    a, b = single.adjoint(y), general.adjoint(y)
    assert np.abs(a - b).max() <= 1e-3 * np.abs(a).max()


RECT = (26, 14, 30)  # nz, ny != nx


@pytest.mark.parametrize("subpixel", [True, False])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_batched_general_adjoint_off_axis(subpixel, n_threads):
    rng = np.random.default_rng(7)
    angles = np.c_[rng.normal(0, 2, 9), np.linspace(-70, 70, 9), rng.normal(0, 2, 9)]
    proj = BatchedGeneralProjector(angles, RECT, subpixel=subpixel, n_threads=n_threads)
    assert proj.projection_shape == (9, 14, 30) and not proj.single_axis
    assert _adjoint_mismatch(proj, rng) < 1e-6


@pytest.mark.parametrize("subpixel", [True, False])
def test_batched_general_equals_single_axis_without_phi_psi(subpixel):
    rng = np.random.default_rng(8)
    angles = linear_tilt_angles(9, -72, 72)
    single = SingleAxisProjector(angles, RECT, subpixel=subpixel, n_threads=2)
    batched = BatchedGeneralProjector(angles, RECT, subpixel=subpixel, n_threads=2)
    x = rng.random(RECT).astype(np.float32)
    y = rng.random(single.projection_shape).astype(np.float32)
    np.testing.assert_allclose(batched.forward(x), single.forward(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batched.adjoint(y), single.adjoint(y), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sigma_deg, tol", [(0.2, 0.003), (1.0, 0.006), (3.0, 0.02)])
def test_batched_general_agrees_with_on_the_fly(sigma_deg, tol):
    """Same model as GeneralProjector up to the second interpolation of the slice offsets:
    relative L1 difference on a random volume (the worst case, all high frequencies)."""
    rng = np.random.default_rng(9)
    angles = np.c_[rng.normal(0, sigma_deg, 9), np.linspace(-70, 70, 9),
                   rng.normal(0, sigma_deg, 9)]
    batched = BatchedGeneralProjector(angles, RECT)
    general = GeneralProjector(angles, RECT)
    x = rng.random(RECT).astype(np.float32)
    y = rng.random(batched.projection_shape).astype(np.float32)
    a, b = batched.forward(x), general.forward(x)
    assert np.abs(a - b).sum() <= tol * np.abs(b).sum()
    a, b = batched.adjoint(y), general.adjoint(y)
    assert np.abs(a - b).sum() <= 1.5 * tol * np.abs(b).sum()


def test_zero_degree_projection_is_sum_over_z():
    x = np.random.default_rng(4).random(SHAPE).astype(np.float32)
    proj = SingleAxisProjector([0.0, 30.0], SHAPE, subpixel=False)
    np.testing.assert_allclose(proj.forward(x)[0], x.sum(axis=0), rtol=1e-5)
    # sub-pixel sampling keeps the total and spreads a quarter of each voxel sideways
    sub = SingleAxisProjector([0.0], SHAPE, subpixel=True).forward(x)[0]
    np.testing.assert_allclose(sub[:, 1:-1].sum(), x.sum(axis=0)[:, 1:-1].sum(), rtol=0.02)


def test_central_slices_match_volume():
    x = np.random.default_rng(5).random(SHAPE).astype(np.float32)
    proj = SingleAxisProjector([0.0, 10.0], SHAPE, n_threads=2)
    assert proj.n_slabs == 2
    slices = proj.central_slices(proj.to_native_volume(x))
    np.testing.assert_array_equal(slices["yx"], x[SHAPE[0] // 2])
    np.testing.assert_array_equal(slices["zx"], x[:, SHAPE[1] // 2])
    np.testing.assert_array_equal(slices["zy"], x[:, :, SHAPE[2] // 2])
    np.testing.assert_array_equal(proj.from_native_volume(proj.to_native_volume(x)), x)


def test_make_projector_choice_and_warning():
    angles = linear_tilt_angles(5, -60, 60)
    assert make_projector(angles, SHAPE).single_axis
    tilted = angles.copy()
    tilted[:, 0] = 0.3
    assert isinstance(make_projector(tilted, SHAPE), BatchedGeneralProjector)
    tilted[:, 0] = 8.0  # beyond BATCHED_MAX_DEG: the on-the-fly projector
    assert isinstance(make_projector(tilted, SHAPE), GeneralProjector)
    assert isinstance(make_projector(tilted, SHAPE, kind="batched"), BatchedGeneralProjector)
    tilted[:, 0] = 0.3
    with pytest.warns(UserWarning, match="single-axis"):
        assert make_projector(tilted, SHAPE, single_axis_tol_deg=0.5).single_axis
    with pytest.raises(ValueError, match="general"):
        make_projector(tilted, SHAPE, kind="single_axis")
    assert not make_projector(angles, SHAPE, kind="general").single_axis
    with pytest.raises(ValueError, match="shape"):
        make_projector(angles, SHAPE).forward(np.zeros((3, 3, 3)))


def test_forward_matches_analytic_simulator():
    """The projector reproduces the simulator's analytic (noise-free) projections."""
    from napari_aet.core.simulate import simulate

    sim = simulate("silica", dose_e_per_A2=None)
    truth = sim.truth_volume()
    for subpixel in (False, True):
        proj = make_projector(sim.angles_deg, truth.shape, subpixel=subpixel)
        computed = proj.forward(truth)
        r1 = np.abs(computed - sim.expected).sum() / np.abs(sim.expected).sum()
        print(f"silica forward vs analytic, subpixel={subpixel}: R1 = {r1:.4f}")
        assert r1 < 0.05


@pytest.mark.skipif(not (DATA / "resire_amorphous_64").is_dir(), reason="shared data absent")
def test_resire_data_geometry():
    """0-degree projection of the published volume equals the data; others agree to ~2 % on average."""
    folder = DATA / "resire_amorphous_64"
    projections = np.transpose(np.load(folder / "projections.npy"), (2, 1, 0))
    volume = np.transpose(np.load(folder / "ground_truth_volume.npy"), (2, 1, 0))
    angles = np.load(folder / "angles_deg.npy")
    computed = make_projector(angles, volume.shape, subpixel=False).forward(volume)
    zero = int(np.argmin(np.abs(angles[:, 1])))
    np.testing.assert_allclose(computed[zero], projections[zero], rtol=1e-4,
                               atol=1e-5 * projections.max())
    r1 = np.abs(computed - projections).sum((1, 2)) / np.abs(projections).sum((1, 2))
    assert r1.max() < 0.05 and r1.mean() < 0.02


def _cupy_or_skip():
    pytest.importorskip("cupy")
    ok, reason = gpu_available()
    if not ok:
        pytest.skip(reason)


@pytest.mark.gpu
def test_gpu_projectors_match_cpu():
    _cupy_or_skip()
    rng = np.random.default_rng(6)
    angles = linear_tilt_angles(9, -72, 72)
    x = rng.random(SHAPE).astype(np.float32)
    tilted = angles + np.array([0.5, 0.0, -0.3])
    for cls, a in ((SingleAxisProjector, angles), (BatchedGeneralProjector, tilted),
                   (GeneralProjector, tilted)):
        cpu = cls(a, SHAPE)
        gpu = cls(a, SHAPE, gpu=True)
        out = gpu.forward(x).get()
        np.testing.assert_allclose(out, cpu.forward(x), rtol=1e-4, atol=1e-4 * out.max())
        assert _adjoint_mismatch_gpu(gpu, rng) < 1e-4


def _adjoint_mismatch_gpu(projector, rng):
    x = rng.random(projector.volume_shape).astype(np.float32)
    y = rng.random(projector.projection_shape).astype(np.float32)
    lhs = float(np.vdot(projector.forward(x).get().astype(float), y))
    rhs = float(np.vdot(x, projector.adjoint(y).get().astype(float)))
    return abs(lhs - rhs) / abs(lhs)


def test_gpu_request_without_cupy_is_clear():
    if gpu_available()[0]:
        pytest.skip("a GPU is available here")
    with pytest.raises(RuntimeError, match="CuPy"):
        SingleAxisProjector([0.0], SHAPE, gpu=True)
