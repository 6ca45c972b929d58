"""Atom tracing: refinement accuracy, classification, minimum distance, end-to-end acceptance."""

import numpy as np
import pytest
from scipy import ndimage

from napari_aet.core.atoms import Atoms
from napari_aet.core.geometry import grid_center
from napari_aet.core.scoring import score_atoms
from napari_aet.core.simulate import phantom, simulate, voxelize_atoms
from napari_aet.core.trace import (
    TRACE_STAGES,
    PolynomialFitter,
    SplinePatches,
    TraceResult,
    classify,
    local_reclassify,
    minimum_distance_filter,
    refine_polynomial,
    template_reclassify,
    trace,
    trace_atoms,
    trace_parameters,
)

# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def silica_rendered():
    """The SiO2 glass phantom voxelised directly (no tomography): 148^3, 0.35 A voxels."""
    px, shape = 0.35, (148, 148, 148)
    truth = phantom("silica").atoms.shifted(grid_center(shape) * px)
    return voxelize_atoms(truth, shape, px, 0.40), truth, px


@pytest.fixture(scope="module")
def silica_rendered_traced(silica_rendered):
    volume, truth, px = silica_rendered
    return trace(volume, px, preset="SiO2"), truth


def _resire_volume(sim, iterations=100):
    reconstruct = pytest.importorskip("napari_aet.core.reconstruct")
    volume, _ = reconstruct.resire(sim.tilt_series, sim.angles_deg, iterations=iterations)
    return volume


@pytest.fixture(scope="module")
def silica_10():
    """simulate -> RESIRE (100 iterations) -> trace, SiO2 glass at R_noise about 10 %."""
    sim = simulate("silica", dose_e_per_A2=2.2e6)
    result = trace(_resire_volume(sim), sim.pixel_size_A, preset="SiO2")
    return sim, result, score_atoms(result.atoms, sim.atoms, cutoff_A=1.0)


@pytest.fixture(scope="module")
def silica_25():
    """The same at the published 25 % dose (3.0e5 e/A^2; our R_noise is about 27 %)."""
    sim = simulate("silica", dose_e_per_A2=3.0e5)
    result = trace(_resire_volume(sim), sim.pixel_size_A, preset="SiO2")
    return sim, result, score_atoms(result.atoms, sim.atoms, cutoff_A=1.0)


@pytest.fixture(scope="module")
def zr_particle():
    """Zr-ZrO2 core-shell, 50 A across (2855 Zr + 2214 O, 3 vacancies, 1 nano-pore), at the
    simulator's realistic dose 5e5 e/A^2, 0.45 A pixels, 55 projections over +-72.6 deg."""
    sim = simulate("zr", phantom_kwargs=dict(diameter_A=50.0, n_vacancies=3, n_pores=1))
    result = trace(_resire_volume(sim), sim.pixel_size_A, preset="ZrO2")
    zr = sim.atoms.select(sim.atoms.elements == "Zr")
    return sim, result, score_atoms(result.atoms, zr, cutoff_A=1.0)


# --- acceptance -------------------------------------------------------------------------------

def test_rendered_volume_rmsd_below_5_pm(silica_rendered_traced):
    result, truth = silica_rendered_traced
    score = score_atoms(result.atoms, truth, cutoff_A=1.0)
    assert score.recall == 1.0 and score.precision == 1.0
    assert score.label_accuracy == 1.0
    assert score.rmsd_A <= 0.05, score.summary()
    assert np.linalg.norm(score.shift_A) < 0.01  # the volume frame is the atoms' frame


def test_rendered_volume_features(silica_rendered_traced):
    result, truth = silica_rendered_traced
    f = result.atoms.features
    for name in ("integrated_intensity", "peak_height", "fit_residual", "blur_sigma_A",
                 "nn_distance_A", "class_margin", "source"):
        assert len(f[name]) == len(result.atoms)
    assert np.nanmedian(f["blur_sigma_A"]) == pytest.approx(0.40, rel=0.05)
    assert np.all(f["source"] == "auto")
    # Nearest neighbour: Si-O bonds of 1.61 A; no pair closer than the phantom's 1.4 A.
    assert np.min(f["nn_distance_A"]) > 1.35
    assert np.median(f["nn_distance_A"]) == pytest.approx(1.61, abs=0.05)
    # Si scatters (14/8)^1.8 = 2.7 times more than O.
    si = f["integrated_intensity"][result.atoms.elements == "Si"].mean()
    o = f["integrated_intensity"][result.atoms.elements == "O"].mean()
    assert si / o == pytest.approx((14 / 8) ** 1.8, rel=0.1)


def test_gaussian_fit_alternative_on_rendered_volume(silica_rendered):
    volume, truth, px = silica_rendered
    result = trace(volume, px, preset="SiO2", method="gaussian")
    score = score_atoms(result.atoms, truth)
    assert score.recall == 1.0 and score.precision == 1.0
    assert score.rmsd_A <= 0.05, score.summary()
    assert np.nanmedian(result.atoms.features["blur_sigma_A"]) == pytest.approx(0.40, rel=0.05)


def test_silica_10_percent_noise(silica_10):
    sim, result, score = silica_10
    assert 0.08 < sim.r_noise < 0.12
    assert score.recall >= 0.995, score.summary()
    assert score.precision >= 0.995, score.summary()
    assert score.label_accuracy >= 0.99, score.summary()


def test_silica_25_percent_noise(silica_25):
    sim, result, score = silica_25
    assert 0.23 < sim.r_noise < 0.29
    si, o = score.by_element["Si"], score.by_element["O"]
    assert si["recall"] == 1.0, score.summary()  # every Si found and labelled Si
    assert o["recall"] >= 0.94, score.summary()  # found and labelled O


def test_zr_core_shell_realistic_dose(zr_particle):
    sim, result, score = zr_particle
    assert set(result.atoms.elements) == {"Zr"}
    assert score.recall >= 0.98, score.summary()
    assert score.precision >= 0.98, score.summary()
    assert score.rmsd_A <= 0.30, score.summary()


# --- refinement -------------------------------------------------------------------------------

def test_spline_patches_match_map_coordinates():
    rng = np.random.default_rng(1)
    volume = ndimage.gaussian_filter(rng.random((30, 31, 32)), 1.5).astype(np.float32)
    patches = SplinePatches(volume, margin=8)
    g = rng.integers(10, 80, (40, 3))
    offs = np.arange(-4, 5)
    got = patches.cubes(g, offs)
    pts = (g[:, :, None] + offs[None, None]) / 3.0
    grid = np.stack(np.broadcast_arrays(pts[:, 0][:, :, None, None], pts[:, 1][:, None, :, None],
                                        pts[:, 2][:, None, None, :]))
    ref = ndimage.map_coordinates(volume.astype(float), grid.reshape(3, -1), order=3,
                                  mode="mirror").reshape(got.shape)
    assert np.max(np.abs(got - ref)) < 1e-4 * np.max(np.abs(ref))


def test_polynomial_fit_is_exact_for_a_quartic():
    fitter = PolynomialFitter(1.0)
    rng = np.random.default_rng(2)
    coefs = rng.normal(size=(5, 35))
    from napari_aet.core.trace import _monomials
    values = coefs @ _monomials(fitter.points).T
    np.testing.assert_allclose(values @ fitter.pinv.T, coefs, atol=1e-8)


def test_newton_refinement_finds_subvoxel_centres():
    """Isolated Gaussians at random sub-voxel positions: refined to < 0.015 voxel.

    The remaining error is the cubic spline's slight pull towards voxel centres
    (about 0.01 voxel for a 1.2-voxel blur, i.e. under 0.5 pm at 0.35 A voxels)."""
    rng = np.random.default_rng(3)
    shape = (40, 40, 40)
    centres = np.array([[x, y, z] for x in (10, 20, 30) for y in (10, 20, 30) for z in (10, 30)],
                       float) + rng.uniform(-0.5, 0.5, (18, 3))
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    volume = np.zeros(shape)
    for c in centres:
        volume += np.exp(-((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) / (2 * 1.2**2))
    patches = SplinePatches(volume.astype(np.float32))
    start = np.rint(np.rint(centres) * 3).astype(int)  # the nearest native voxel
    fit = refine_polynomial(patches, start, radius_voxels=1.5)
    assert np.all(fit["ok"])
    assert np.max(np.linalg.norm(fit["positions"] - centres, axis=1)) < 0.015
    np.testing.assert_allclose(fit["sigma"], 1.2, rtol=0.03)
    np.testing.assert_allclose(fit["peak"], 1.0, rtol=0.03)


def test_newton_steps_are_capped():
    """A start 1.2 voxel away takes at least 3 iterations (steps <= 0.5 voxel)."""
    shape = (30, 30, 30)
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    volume = np.exp(-((zz - 15) ** 2 + (yy - 15) ** 2 + (xx - 15.2) ** 2) / (2 * 1.6**2))
    patches = SplinePatches(volume.astype(np.float32))
    fit = refine_polynomial(patches, np.array([[45, 45, 42]]), radius_voxels=1.0,
                            max_shift_voxels=3.0)
    assert fit["iterations"][0] >= 3 + 7 - 1  # 3 moves, then 7 small steps
    np.testing.assert_allclose(fit["positions"][0], [15, 15, 15.2], atol=0.015)


# --- minimum distance, classification ---------------------------------------------------------

def test_minimum_distance_brighter_first():
    pos = np.array([[0, 0, 0], [0, 0, 0.8], [0, 0, 1.6], [0, 0, 5.0]], float)
    bright = np.array([1.0, 2.0, 1.5, 0.1])
    keep = minimum_distance_filter(pos, bright, 1.0)
    # 1 (brightest) rejects 0 and 2 (0.8 A away); 3 is far.
    assert keep.tolist() == [False, True, False, True]
    keep = minimum_distance_filter(pos, np.array([3.0, 2.0, 1.5, 0.1]), 1.0)
    # 0 first rejects 1; then 2 is 1.6 A from 0: kept.
    assert keep.tolist() == [True, False, True, True]


def test_classify_three_populations_by_brightness():
    rng = np.random.default_rng(4)
    noise = rng.normal(5, 2, 500)
    o = rng.normal(42, 4, 300)
    si = rng.normal(116, 8, 150)
    values = np.concatenate([noise, o, si])
    truth = np.repeat([0, 1, 2], [500, 300, 150])
    cls = classify(values, 2, z_numbers=[8, 14])
    assert np.mean(cls.labels == truth) > 0.995
    np.testing.assert_allclose(cls.centres, [5, 42, 116], rtol=0.1)
    assert len(cls.boundaries) == 2 and 10 < cls.boundaries[0] < 35 < 60 < cls.boundaries[1] < 100
    assert np.all((cls.margin >= 0) & (cls.margin <= 1))
    # A value on a boundary has margin 0, one at a centre margin 1.
    at = classify(np.array([cls.boundaries[0], cls.centres[1]]), 2, boundaries=cls.boundaries)
    assert at.margin[0] == pytest.approx(0.0, abs=1e-9)


def test_classify_without_non_atoms_keeps_every_atom():
    """Noise-free: no distinct non-atom population, so none is invented."""
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.normal(42, 1, 600), rng.normal(116, 2, 300)])
    cls = classify(values, 2, z_numbers=[8, 14])
    assert np.sum(cls.labels == 0) == 0
    assert np.sum(cls.labels == 1) == 600


def test_classify_with_user_boundaries_and_errors():
    values = np.array([1.0, 5.0, 10.0, 20.0])
    cls = classify(values, 2, boundaries=[3.0, 15.0])
    assert cls.labels.tolist() == [0, 1, 1, 2]
    with pytest.raises(ValueError, match="need 2"):
        classify(values, 2, boundaries=[3.0])
    with pytest.raises(ValueError, match="increasing"):
        classify(values, 2, boundaries=[15.0, 3.0])
    with pytest.raises(ValueError, match="only 2 candidate"):
        classify(values[:2], 2)


def test_local_reclassification_follows_a_brightness_gradient():
    """Brightness drifts 2x across the particle: global k-means mislabels the ends."""
    rng = np.random.default_rng(6)
    n = 2000
    pos = rng.uniform(0, 60, (n, 3))
    species = rng.integers(1, 3, n)
    gain = 0.6 + 0.8 * pos[:, 2] / 60
    values = np.where(species == 2, 100.0, 55.0) * gain * rng.normal(1, 0.03, n)
    values = np.concatenate([values, rng.normal(4, 1, 300) * (0.6 + 0.8 * rng.random(300))])
    pos = np.concatenate([pos, rng.uniform(0, 60, (300, 3))])
    truth = np.concatenate([species, np.zeros(300, int)])
    cls = classify(values, 2)
    local = local_reclassify(pos, values, cls.labels, 3, radius_A=10.0)
    assert np.mean(local == truth) > 0.99 > np.mean(cls.labels == truth)


def test_template_test_separates_by_shape():
    """Same integrated intensity, different shape: the L1 template test tells them apart."""
    rng = np.random.default_rng(7)
    sharp = np.array([0, 0, 9, 0, 0], float)
    flat = np.array([1.8, 1.8, 1.8, 1.8, 1.8])
    profiles = np.concatenate([sharp + rng.normal(0, 0.3, (100, 5)),
                               flat + rng.normal(0, 0.3, (100, 5))])
    truth = np.repeat([1, 0], 100)
    start = rng.integers(0, 2, 200)  # intensities alone cannot separate them
    labels = template_reclassify(profiles, np.where(np.arange(200) % 7 == 0, 1 - truth, truth), 2)
    assert np.mean(labels == truth) == 1.0
    assert template_reclassify(profiles, start, 2).shape == (200,)


# --- API, parameters, bad input ---------------------------------------------------------------

def test_generator_yields_every_stage_and_returns_result(silica_rendered):
    volume, truth, px = silica_rendered
    gen = trace_atoms(volume[40:100, 40:100, 40:100], px, preset="SiO2")
    stages = []
    while True:
        try:
            stages.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert [s.stage for s in stages] == list(TRACE_STAGES)
    assert [s.done for s in stages] == [1, 2, 3, 4, 5]
    assert isinstance(result, TraceResult)
    assert result.class_names == ["non-atom", "O", "Si"]
    assert len(result.boundaries) == 2 and len(result.centres) == 3
    # Moving the O/Si boundary above every atom relabels all of them O.
    relabelled = result.relabel([result.boundaries[0], 10 * result.centres[-1]])
    assert len(relabelled) == len(result.atoms)
    assert set(relabelled.elements) == {"O"}


def test_positions_are_in_the_volume_frame():
    """A single atom at voxel (12.3, 15, 17.6) of 0.5 A voxels sits at (6.15, 7.5, 8.8) A."""
    truth = Atoms([[6.15, 7.5, 8.8], [6.0, 4.0, 4.0]], ["Pt", "Pt"])
    volume = voxelize_atoms(truth, (30, 30, 32), 0.5, 0.45)
    result = trace(volume, 0.5, preset="Pt")
    assert len(result.atoms) == 2
    got = result.atoms.positions[np.argsort(result.atoms.positions[:, 2])[::-1]]
    np.testing.assert_allclose(got, truth.positions, atol=0.02)  # 2 pm
    assert set(result.atoms.elements) == {"Pt"}


def test_parameters_from_preset_and_overrides():
    p = trace_parameters("SiO2")
    assert p["elements"] == ["O", "Si"] and p["min_distance_A"] == 1.0
    p = trace_parameters("sio2", min_distance_A=1.3, elements="Si,O,Ge")
    assert p["min_distance_A"] == 1.3 and p["elements"] == ["O", "Si", "Ge"]
    with pytest.raises(ValueError, match="unknown tracing parameter 'fit_radius'"):
        trace_parameters("SiO2", fit_radius=1.0)
    with pytest.raises(ValueError, match="not an element symbol"):
        trace_parameters("SiO2", elements=["Si", "Qq"])
    with pytest.raises(ValueError, match="known presets: .*SiO2"):
        trace_parameters("SiO3")
    with pytest.raises(ValueError, match="min_distance_A must be positive"):
        trace_parameters("SiO2", min_distance_A=-1)
    with pytest.raises(ValueError, match="refinement method"):
        trace_parameters("SiO2", method="magic")


@pytest.mark.parametrize("volume, message", [
    (np.zeros((20, 20)), "must be 3D"),
    (np.zeros((0, 20, 20)), "empty"),
    (np.full((20, 20, 20), 3.0), "constant"),
    (np.where(np.arange(8000).reshape(20, 20, 20) == 5, np.nan, 1.0), "1 NaN or infinite"),
    (np.array([[[1.0, np.inf]]] * 4).repeat(4, 1).repeat(2, 2), "NaN or infinite"),
    (np.ones((2, 20, 20)), "too small"),
])
def test_bad_volumes_give_clear_errors(volume, message):
    with pytest.raises(ValueError, match=message):
        trace(volume, 0.35)


def test_bad_pixel_size():
    volume = np.random.default_rng(0).random((20, 20, 20))
    for bad in (0, -0.3, np.nan, "a"):
        with pytest.raises(ValueError, match="pixel size"):
            trace(volume, bad)


def test_refinement_yields_between_chunks_so_cancel_works(monkeypatch):
    """More candidates than one refinement chunk: progress comes between chunks, and closing
    the generator there (what Cancel does) stops it with nothing returned."""
    import napari_aet.core.trace as trace_module

    monkeypatch.setattr(trace_module, "REFINE_CHUNK", 100)
    rng = np.random.default_rng(3)
    volume = ndimage.gaussian_filter(rng.random((48, 48, 48)), 1.0)
    gen = trace_module.trace_atoms(volume, 0.5, min_distance_A=0.8, threshold_fraction=0.01,
                                   border_A=0.5)
    first = next(gen)
    n_candidates = int(first.message.split()[0])
    assert n_candidates > 300
    second = next(gen)  # after the first chunk, before the refine stage is done
    assert second.stage == "candidates"
    assert second.message == f"refined 100 of {n_candidates} candidates"
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)
