"""Frame registration, denoising, background subtraction and normalisation on simulated data."""

import importlib.util

import numpy as np
import pytest

from napari_aet.core import preprocess as pp
from napari_aet.core.simulate import project_atoms, simulate


@pytest.fixture(scope="module")
def drifting():
    return simulate("silica", n_angles=7, n_frames=3, drift_px_per_frame=1.5)


def test_frame_drift_recovered_and_average_sharper(drifting):
    sim = drifting
    reg = pp.register_frames(sim.frames)
    assert np.abs(reg.drift_px_per_frame - sim.drift_px_per_frame).max() <= 0.2
    np.testing.assert_allclose(reg.speed_px_per_frame, 1.5, atol=0.2)
    np.testing.assert_allclose(reg.frame_shifts_px[:, 2], -2 * reg.drift_px_per_frame)
    # drift-free truth: every frame at the first frame's position, total counts of 3 frames
    truth = project_atoms(sim.atoms, sim.true_angles_deg, sim.tilt_series.shape[1:],
                          sim.pixel_size_A, sim.blur_sigma_A, sim.volume_shape,
                          shifts_px=sim.shifts_px) * sim.dose_e_per_A2
    err_registered = np.sqrt(np.mean((reg.average - truth) ** 2))
    err_plain = np.sqrt(np.mean((sim.tilt_series - truth) ** 2))
    assert err_registered < 0.5 * err_plain
    mean = pp.register_frames(sim.frames, combine="mean")
    np.testing.assert_allclose(mean.average * 3, reg.average, rtol=1e-4, atol=1e-2)


def test_frame_registration_rejects_bad_frames():
    with pytest.raises(ValueError, match="at least 2 frames"):
        pp.register_frames(np.ones((4, 1, 16, 16)))
    with pytest.raises(ValueError, match=r"\(n, n_frames, ny, nx\)"):
        pp.register_frames(np.ones((16, 16)))


@pytest.fixture(scope="module")
def film():
    return simulate("silica", n_angles=9, background_fraction=0.3)


def test_background_subtracted_to_zero_outside_particle(film):
    sim = film
    particle = sim.expected - sim.background * sim.dose_e_per_A2
    outside = particle < 1e-3 * particle.max()
    peak = particle.max(axis=(1, 2))
    corrected, background, masks = pp.subtract_background(sim.tilt_series)
    raw = np.array([sim.tilt_series[k][outside[k]].mean() / peak[k] for k in range(9)])
    after = np.array([corrected[k][outside[k]].mean() / peak[k] for k in range(9)])
    assert raw.min() > 0.05  # there was a real background
    assert np.abs(after).max() <= 0.01
    # under the particle the estimated background is close to the film too
    inside = np.array([(corrected[k] - particle[k])[masks[k]].mean() / peak[k] for k in range(9)])
    assert np.abs(inside).max() <= 0.05
    assert masks.shape == sim.tilt_series.shape and masks.dtype == bool


def test_laplace_inpainting_is_exact_for_harmonic_background():
    yy, xx = np.mgrid[0:40, 0:50].astype(float)
    harmonic = 3 + 0.2 * xx - 0.1 * yy + 0.01 * (xx**2 - yy**2)  # Laplacian zero
    mask = np.zeros_like(harmonic, bool)
    mask[10:30, 12:35] = True
    filled = pp.laplace_inpaint(np.where(mask, 100.0, harmonic), mask)
    np.testing.assert_allclose(filled, harmonic, atol=1e-8)


def test_user_mask_and_empty_mask(film):
    images = film.tilt_series[:2].copy()
    original = images.copy()
    with pytest.raises(ValueError, match="mask is empty"):
        pp.subtract_background(images, mask=np.zeros(images.shape[1:], bool))
    with pytest.raises(ValueError, match="covers the whole image"):
        pp.subtract_background(images, mask=np.ones(images.shape[1:], bool))
    with pytest.raises(ValueError, match="does not match"):
        pp.subtract_background(images, mask=np.ones((5, 5), bool))
    np.testing.assert_array_equal(images, original)
    mask = np.zeros(images.shape[1:], bool)
    mask[30:120, 30:120] = True
    corrected, _, masks = pp.subtract_background(images, mask=mask)
    assert np.all(masks == mask)


def test_normalize_intensity_equalises_totals(film):
    images = film.expected[:4] - film.background[:4] * film.dose_e_per_A2
    scaled = images * np.array([1.0, 1.3, 0.8, 1.1])[:, None, None]
    out, factors = pp.normalize_intensity(scaled)
    totals = out.sum(axis=(1, 2))
    np.testing.assert_allclose(totals, totals.mean(), rtol=1e-5)
    np.testing.assert_allclose(factors * [1.0, 1.3, 0.8, 1.1], factors[0], rtol=1e-6)
    with pytest.raises(ValueError, match="no positive total"):
        pp.normalize_intensity(-np.ones((2, 16, 16)))


@pytest.fixture(scope="module")
def noisy():
    return simulate("silica", n_angles=3, dose_e_per_A2=2.5e5)


def test_noise_sigma_estimate_matches_poisson():
    rng = np.random.default_rng(0)
    counts = rng.poisson(50.0, (2, 64, 64)).astype(float)
    sigma = pp.estimate_noise_sigma(counts)
    np.testing.assert_allclose(sigma, np.sqrt(50), rtol=0.1)
    np.testing.assert_allclose(pp.estimate_noise_sigma(counts, poisson=True), 1.0, rtol=0.1)
    np.testing.assert_allclose(pp.inverse_anscombe(pp.anscombe(50.0)), 50.0, rtol=0.01)


@pytest.mark.parametrize("method", ["nlm", "tv"])
def test_denoising_reduces_error(noisy, method):
    sim = noisy
    denoised, sigma = pp.denoise(sim.tilt_series, method)
    np.testing.assert_allclose(sigma, 1.0, atol=0.3)  # Anscombe units: counts detected
    before = np.sqrt(np.mean((sim.tilt_series - sim.expected) ** 2))
    after = np.sqrt(np.mean((denoised - sim.expected) ** 2))
    assert after < 0.8 * before
    # total intensity is kept (unbiased inverse Anscombe)
    np.testing.assert_allclose(denoised.sum(), sim.expected.sum(), rtol=0.03)


@pytest.mark.skipif(importlib.util.find_spec("bm3d") is None, reason="optional bm3d not installed")
def test_bm3d_denoising(noisy):
    denoised, _ = pp.denoise(noisy.tilt_series[:1], "bm3d")
    before = np.sqrt(np.mean((noisy.tilt_series[:1] - noisy.expected[:1]) ** 2))
    assert np.sqrt(np.mean((denoised - noisy.expected[:1]) ** 2)) < 0.8 * before


def test_bm3d_missing_message(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_bm3d(name, *args, **kwargs):
        if name == "bm3d":
            raise ImportError("no bm3d")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bm3d)
    with pytest.raises(ImportError, match="pip install"):
        pp.denoise(np.ones((2, 16, 16)), "bm3d")


def test_denoise_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown denoising method"):
        pp.denoise(np.ones((2, 16, 16)), "wiener")
