"""Reconstruction algorithms against known answers (published RESIRE data, simulator truth)."""

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from napari_aet.core.geometry import linear_tilt_angles
from napari_aet.core.projectors import gpu_available
from napari_aet.core.reconstruct import (
    angular_weights,
    reconstruct,
    reconstruct_iter,
    resire,
    resire_iter,
    sirt,
    tight_support_from,
    wbp,
)

DATA = Path(__file__).parents[2] / ".." / "shared" / "data"
RESIRE_DIR = DATA / "resire_amorphous_64"
FEPT_DIR = DATA / "fept_multislice_68"


def corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.fixture(scope="module")
def resire_data():
    if not RESIRE_DIR.is_dir():
        pytest.skip("shared data absent")
    projections = np.transpose(np.load(RESIRE_DIR / "projections.npy"), (2, 1, 0))
    volume = np.transpose(np.load(RESIRE_DIR / "ground_truth_volume.npy"), (2, 1, 0))
    return projections, np.load(RESIRE_DIR / "angles_deg.npy"), volume


def test_resire_amorphous_64_acceptance(resire_data):
    projections, angles, truth = resire_data
    volume, history = resire(projections, angles, iterations=200, step=2.0)
    c = corr(volume, truth)
    c_sirt = corr(sirt(projections, angles, iterations=200)[0], truth)
    wbp_volume, wbp_r1 = wbp(projections, angles)
    c_wbp = corr(wbp_volume, truth)
    print(f"\nresire_amorphous_64: RESIRE corr {c:.4f} R1 {history[-1]:.4%}; "
          f"SIRT corr {c_sirt:.4f}; WBP corr {c_wbp:.4f} (R1 {wbp_r1[0]:.2%})")
    assert volume.shape == truth.shape and volume.dtype == np.float32
    assert len(history) == 200
    assert c >= 0.945
    assert history[-1] <= 0.015
    assert history[-1] < history[10] < history[0]
    assert volume.min() >= 0
    assert c_sirt > 0.9 and c_wbp > 0.8


def test_generator_protocol_and_preview(resire_data):
    projections, angles, _ = resire_data
    gen = resire_iter(projections, angles, iterations=4, preview_every=2)
    items = []
    with pytest.raises(StopIteration) as stop:
        while True:
            items.append(next(gen))
    assert [i.done for i in items] == [1, 2, 3, 4]
    assert items[0].preview is None and set(items[1].preview) == {"yx", "zx", "zy"}
    vol = stop.value.value
    np.testing.assert_allclose(items[3].preview["zx"], vol[:, 32, :])
    assert items[0].r1 == pytest.approx(1.0)  # starts from zeros
    # closing the generator early (cancel) is clean
    gen = resire_iter(projections, angles, iterations=50)
    next(gen)
    gen.close()


def test_support_and_tight_support(resire_data):
    projections, angles, truth = resire_data
    support = np.zeros(truth.shape, bool)
    support[8:56, 8:56, 8:56] = True
    volume, _ = resire(projections, angles, iterations=20, support=support)
    assert np.all(volume[~support] == 0)
    gen = resire_iter(projections, angles, iterations=20, tight_support=True, preview_every=0)
    states = []
    try:
        while True:
            states.append(next(gen).support)
    except StopIteration as stop:
        tight_volume = stop.value
    assert states[0] == "loose" and states[-1] == "tight"
    assert np.count_nonzero(tight_volume) < np.count_nonzero(tight_volume >= 0)


def test_tight_support_from_blob():
    vol = np.zeros((32, 32, 32), np.float32)
    vol[16, 16, 16] = 1.0
    mask = tight_support_from(vol, threshold=0.1, sigma_vox=1.0, dilate_vox=1)
    assert mask[16, 16, 16] and not mask[0, 0, 0] and 7 < mask.sum() < 200


def test_simulated_silica_reconstruction():
    from napari_aet.core.simulate import simulate

    sim = simulate("silica")
    truth = sim.truth_volume()
    volume, history = resire(sim.tilt_series, sim.angles_deg, iterations=30)
    c = corr(volume, truth)
    print(f"\nsilica (R_noise {sim.r_noise:.1%}): RESIRE 30 it corr {c:.4f} R1 {history[-1]:.3f}")
    assert c > 0.9


@pytest.mark.slow
def test_simulated_zr_reconstruction():
    from napari_aet.core.simulate import simulate

    sim = simulate("zr")
    truth = sim.truth_volume()
    volume, history = resire(sim.tilt_series, sim.angles_deg, iterations=50)
    c = corr(volume, truth)
    print(f"\nzr (R_noise {sim.r_noise:.1%}): RESIRE 50 it corr {c:.4f} R1 {history[-1]:.3f}")
    assert c > 0.8


@pytest.mark.skipif(not FEPT_DIR.is_dir(), reason="shared data absent")
def test_fept_multislice_two_populations():
    """Fe and Pt columns: integrated peak intensities form two populations; 321 atoms."""
    projections = np.transpose(np.load(FEPT_DIR / "projections_FePt.npy"), (2, 1, 0))
    support = np.transpose(np.load(FEPT_DIR / "tight_support.npy"), (2, 1, 0))
    angles = np.load(FEPT_DIR / "angles_deg.npy")
    volume, history = resire(projections, angles, iterations=100, support=support)
    smooth = ndimage.gaussian_filter(volume, 0.7)
    peaks = np.argwhere((smooth == ndimage.maximum_filter(smooth, size=5))
                        & (smooth > 0.1 * smooth.max()))
    intensity = np.array([volume[max(z - 1, 0):z + 2, max(y - 1, 0):y + 2,
                                 max(x - 1, 0):x + 2].sum() for z, y, x in peaks])
    split = intensity.mean()
    for _ in range(20):  # two-means clustering in 1D
        split = 0.5 * (intensity[intensity < split].mean() + intensity[intensity >= split].mean())
    light, heavy = intensity[intensity < split], intensity[intensity >= split]
    print(f"\nFePt: {len(peaks)} atoms ({len(light)} light, {len(heavy)} heavy), "
          f"mean intensities {light.mean():.3g} / {heavy.mean():.3g}, R1 {history[-1]:.3f}")
    assert abs(len(peaks) - 321) <= 0.1 * 321  # published model: 321 atoms
    assert heavy.mean() > 2.5 * light.mean()
    # a gap between the populations: few peaks near the split point
    assert np.sum(np.abs(intensity - split) < 0.15 * split) < 0.05 * len(intensity)


def test_wbp_and_sirt_on_small_phantom():
    vol = np.zeros((24, 24, 24), np.float32)
    vol[8:16, 4:20, 10:14] = 1.0
    angles = linear_tilt_angles(60, -89, 88)
    from napari_aet.core.projectors import make_projector

    data = make_projector(angles, vol.shape).forward(vol)
    assert corr(wbp(data, angles)[0], vol) > 0.9
    volume, history = sirt(data, angles, iterations=50)
    assert corr(volume, vol) > 0.95 and history[-1] < 0.1 * history[0]


@pytest.mark.parametrize("method", ["resire", "sirt", "wbp"])
def test_rectangular_images_give_nx_ny_nx_volume(method):
    """ny != nx: the volume is (nx, ny, nx) and matches a rectangular phantom."""
    from napari_aet.core.projectors import make_projector

    vol = np.zeros((36, 20, 36), np.float32)
    vol[12:20, 3:17, 8:30] = 1.0
    vol[20:26, 6:12, 14:20] = 2.0
    angles = linear_tilt_angles(46, -89, 89)
    data = make_projector(angles, vol.shape).forward(vol)
    assert data.shape == (46, 20, 36)
    volume, history = {"resire": resire, "sirt": sirt, "wbp": wbp}[method](
        data, angles, iterations=60)
    assert volume.shape == (36, 20, 36)
    assert corr(volume, vol) > (0.9 if method == "wbp" else 0.97)


def test_angular_weights():
    w = angular_weights([-60, -30, 0, 30, 60])
    np.testing.assert_allclose(w, np.deg2rad(30))
    w = angular_weights([10, -10, 0])
    np.testing.assert_allclose(w, np.deg2rad(10))


@pytest.mark.parametrize("method", ["resire", "sirt", "wbp"])
def test_bad_inputs(method):
    good = np.ones((5, 16, 16), np.float32)
    angles = np.linspace(-60, 60, 5)

    def run(*args, **kw):
        gen = reconstruct_iter(method, *args, **kw)
        next(gen)

    with pytest.raises(ValueError, match="4 angles for 5 tilt images"):
        run(good, angles[:4])
    bad = good.copy()
    bad[2, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        run(bad, angles)
    with pytest.raises(ValueError, match=r"volume_shape must be \(nz, 16, 20\)"):
        run(np.ones((5, 16, 20), np.float32), angles, volume_shape=(20, 20, 20))
    with pytest.raises(ValueError, match="empty"):
        run(good, angles, support=np.zeros((16, 16, 16), bool))
    with pytest.raises(ValueError, match="support mask has shape"):
        run(good, angles, support=np.ones((8, 16, 16), bool))
    with pytest.raises(ValueError, match="unknown reconstruction method"):
        reconstruct_iter("art", good, angles)
    if method != "wbp":
        with pytest.raises(ValueError, match="step"):
            run(good, angles, step=-1)


def test_dask_slabs_equal_serial(resire_data):
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    from napari_aet.core.dask_recon import reconstruct_dask

    projections, angles, truth = resire_data
    cluster = LocalCluster(processes=False, n_workers=2, threads_per_worker=1,
                           dashboard_address=None)
    client = Client(cluster)
    try:
        for method, kw in (("resire", dict(iterations=12, tight_support=True)),
                           ("sirt", dict(iterations=5)), ("wbp", {})):
            serial, serial_r1 = reconstruct_iter_to_end(method, projections, angles, **kw)
            steps = []
            volume, r1 = reconstruct_dask(method, projections, angles, scheduler=client,
                                          n_slabs=3, callback=steps.append, **kw)
            assert np.abs(volume - serial).max() <= 1e-5 * np.abs(serial).max()
            np.testing.assert_allclose(r1, serial_r1, rtol=1e-4)
            assert steps[-1].done == steps[-1].total
    finally:
        client.close()
        cluster.close()
    with pytest.raises(ValueError, match="single tilt axis"):
        off = np.c_[np.full(len(angles), 1.0), angles[:, 1], np.zeros(len(angles))]
        reconstruct_dask("resire", projections, off, scheduler="tcp://127.0.0.1:1")


def reconstruct_iter_to_end(method, projections, angles, **kw):
    from napari_aet.core.reconstruct import reconstruct

    return reconstruct(method, projections, angles, **kw)


@pytest.mark.gpu
def test_gpu_resire_matches_cpu(resire_data):
    pytest.importorskip("cupy")
    ok, reason = gpu_available()
    if not ok:
        pytest.skip(reason)
    projections, angles, _ = resire_data
    cpu, _ = resire(projections, angles, iterations=20)
    gpu, _ = resire(projections, angles, iterations=20, gpu=True)
    assert np.abs(gpu - cpu).max() <= 1e-3 * np.abs(cpu).max()


def _film(rng, fov_nx=32, ny=8, nz=32, width=4):
    """A film of random blobs, ``width`` fields of view wide along x, and its projections
    cropped to the central field of view: ``(tilt_series, angles, fov_truth)``."""
    from napari_aet.core.projectors import make_projector

    big = np.zeros((nz, ny, width * fov_nx), np.float32)
    big[8:24] = rng.random((16, ny, width * fov_nx)) > 0.9
    big = ndimage.gaussian_filter(big, 1.0)
    angles = linear_tilt_angles(25, -60, 60)
    projections = make_projector(angles, big.shape).forward(big)
    x0 = (big.shape[2] - fov_nx) // 2
    return projections[:, :, x0:x0 + fov_nx], angles, big[:, :, x0:x0 + fov_nx]


@pytest.mark.parametrize("method", ["resire", "sirt"])
def test_extended_object_film_beyond_field_of_view(method):
    """A film wider than the field of view: the extended-object mode returns the
    field-of-view volume and matches it far better than a reconstruction in the FOV box."""
    series, angles, truth = _film(np.random.default_rng(11))
    plain, _ = reconstruct(method, series, angles, iterations=100)
    extended, history = reconstruct(method, series, angles, iterations=100,
                                    extended_object=True, extended_box=2.5)
    assert extended.shape == plain.shape == truth.shape == (32, 8, 32)
    c_plain, c_ext = corr(plain, truth), corr(extended, truth)
    print(f"\n{method} film: plain corr {c_plain:.3f}, extended corr {c_ext:.3f}, "
          f"R1 {history[-1]:.4f}")
    assert c_ext > 0.5 and c_ext > c_plain + 0.3
    assert history[-1] < 0.1


def test_extended_object_inputs():
    from napari_aet.core.reconstruct import extended_box_shape

    assert extended_box_shape((131, 61, 131), 2.0) == (131, 61, 263)
    assert extended_box_shape((32, 8, 32), 2.5) == (32, 8, 80)
    with pytest.raises(ValueError, match="at least 1"):
        extended_box_shape((8, 8, 8), 0.5)
    series, angles, truth = _film(np.random.default_rng(12), width=2)
    with pytest.raises(ValueError, match="iterative method"):
        next(reconstruct_iter("wbp", series, angles, extended_object=True))
    with pytest.raises(ValueError, match=r"initial_volume has shape \(4, 4, 4\); expected "
                                         r"\(32, 8, 32\)"):
        next(resire_iter(series, angles, extended_object=True, initial_volume=np.ones((4, 4, 4))))
    # a support given for the field of view stays open outside it
    preview = next(resire_iter(series, angles, extended_object=True, preview_every=1)).preview
    assert preview["yx"].shape == (8, 32) and preview["zx"].shape == (32, 32)
    support = np.zeros(truth.shape, bool)
    support[8:24] = True
    volume, _ = resire(series, angles, iterations=20, support=support, extended_object=True)
    assert volume.shape == truth.shape and not volume[:8].any() and volume[8:24].any()


@pytest.mark.parametrize("method, step", [("resire", 12.0), ("sirt", 5.0)])
def test_too_large_a_step_stops_as_diverged(method, step):
    """A step far above the stable range makes R1 grow; the iteration stops with a message
    naming R1 and the remedy instead of returning a volume of noise (or NaN)."""
    from napari_aet.core.projectors import make_projector
    from napari_aet.core.reconstruct import DivergenceError

    vol = np.zeros((24, 24, 24), np.float32)
    vol[8:16, 4:20, 10:14] = 1.0
    angles = linear_tilt_angles(60, -89, 88)
    data = make_projector(angles, vol.shape).forward(vol)
    with pytest.raises(DivergenceError, match=r"R1 rose from .* lower the step"):
        reconstruct(method, data, angles, iterations=60, step=step, positivity=False)
    # the usual steps converge on the same data
    volume, history = reconstruct(method, data, angles, iterations=30,
                                  step={"resire": 2.0, "sirt": 1.0}[method], positivity=False)
    assert history[-1] < 0.5 * history[0]
