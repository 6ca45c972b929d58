"""Forward model of ADF-STEM tomography and simulated tilt series with known ground truth.

Atoms are isotropic 3D Gaussians of width ``blur_sigma_A`` whose integral is the atom's ADF
scattering cross-section ``s(Z) = ADF_CROSS_SECTION_A2 * Z**1.8`` (Angstrom^2). A rotated 3D
Gaussian projects to a 2D Gaussian, so projections are computed analytically from the atoms
(never with a reconstruction projector: no inverse crime). Images are in expected counts per
pixel: the cross-section per pixel (A^2) times the dose (e/A^2); without a dose they are the
cross-section per pixel itself. Values are point samples at pixel centres.

Volumes follow the same model: voxel value = density at the voxel centre times the voxel
volume, so ``volume.sum(axis=0)`` equals the 0-degree projection without dose.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from napari_aet.core import phantoms
from napari_aet.core.atoms import Atoms, atomic_numbers
from napari_aet.core.geometry import (
    as_euler_angles,
    equal_slope_tilt_angles,
    grid_center,
    linear_tilt_angles,
    project_points,
    rotation_matrices,
)

#: ADF cross-section per Z^1.8 (A^2). Calibrated so that the 55-projection SiO2 glass phantom
#: reproduces the published dose -> R_noise table (2.2e6 e/A^2 -> about 10 %).
ADF_CROSS_SECTION_A2 = 2.4e-6
Z_EXPONENT = 1.8


def cross_sections(elements) -> np.ndarray:
    """ADF scattering cross-section (A^2) of each atom, proportional to Z^1.8."""
    return ADF_CROSS_SECTION_A2 * atomic_numbers(elements).astype(float) ** Z_EXPONENT


def _splat_2d(rows, cols, weights, shape, sigma_px):
    """Sum normalised 2D Gaussians (sigma in pixels) at (rows, cols) into an image."""
    ny, nx = shape
    radius = int(np.ceil(4.5 * sigma_px))
    offs = np.arange(-radius, radius + 1)
    r0 = np.round(rows).astype(int)
    c0 = np.round(cols).astype(int)
    rr = r0[:, None] + offs[None]  # (n, k)
    cc = c0[:, None] + offs[None]
    norm = 1.0 / (2 * np.pi * sigma_px**2)
    gy = np.exp(-((rr - rows[:, None]) ** 2) / (2 * sigma_px**2))
    gx = np.exp(-((cc - cols[:, None]) ** 2) / (2 * sigma_px**2))
    vals = (weights * norm)[:, None, None] * gy[:, :, None] * gx[:, None, :]
    ok = ((rr >= 0) & (rr < ny))[:, :, None] & ((cc >= 0) & (cc < nx))[:, None, :]
    flat = (rr[:, :, None] * nx + cc[:, None, :])[ok]
    return np.bincount(flat, vals[ok], ny * nx).reshape(ny, nx)


def project_atoms(atoms: Atoms, angles_deg, image_shape, pixel_size_A: float,
                  blur_sigma_A: float = 0.45, volume_shape=None, shifts_px=None,
                  tilt_axis_deg: float = 0.0, convention: str = "zyx") -> np.ndarray:
    """Analytic projections ``(n, ny, nx)`` of Gaussian atoms, in A^2 cross-section per pixel.

    Parameters
    ----------
    atoms : positions (z, y, x) in Angstrom in the frame of a volume of ``volume_shape``
        voxels of ``pixel_size_A`` (default: a cube of side ``image_shape[1]``).
    angles_deg : ``(n,)`` tilt angles or ``(n, 3)`` Euler triplets in degrees.
    shifts_px : optional ``(n, 2)`` (dy, dx) image shifts in pixels applied to each image.
    tilt_axis_deg : in-plane rotation of the tilt axis from the image y axis (degrees,
        counter-clockwise in (x, y)).
    """
    angles = as_euler_angles(angles_deg)
    ny, nx = image_shape
    if volume_shape is None:
        volume_shape = (nx, ny, nx)
    rot = rotation_matrices(angles, convention)
    center_A = grid_center(volume_shape) * pixel_size_A
    det_c = grid_center(image_shape)
    weights = cross_sections(atoms.elements)
    sigma_px = blur_sigma_A / pixel_size_A
    shifts = np.zeros((len(angles), 2)) if shifts_px is None else np.asarray(shifts_px, float)
    ca, sa = np.cos(np.deg2rad(tilt_axis_deg)), np.sin(np.deg2rad(tilt_axis_deg))
    out = np.empty((len(angles), ny, nx))
    for k in range(len(angles)):
        p = project_points(atoms.positions, rot[k], center_A) / pixel_size_A
        u, v = p[:, 2], p[:, 1]
        u, v = ca * u - sa * v, sa * u + ca * v
        out[k] = _splat_2d(v + det_c[0] + shifts[k, 0], u + det_c[1] + shifts[k, 1], weights,
                           image_shape, sigma_px)
    return out


def voxelize_atoms(atoms: Atoms, volume_shape, pixel_size_A: float,
                   blur_sigma_A: float = 0.45, chunk: int = 4000) -> np.ndarray:
    """The atoms' Gaussian density sampled on a voxel grid ``(nz, ny, nx)`` (A^2 per voxel)."""
    nz, ny, nx = volume_shape
    s = blur_sigma_A / pixel_size_A
    radius = int(np.ceil(4.5 * s))
    offs = np.arange(-radius, radius + 1)
    norm = (2 * np.pi * s**2) ** -1.5
    vol = np.zeros(nz * ny * nx)
    idx_all = atoms.positions / pixel_size_A
    w_all = cross_sections(atoms.elements) * norm
    for start in range(0, len(atoms), chunk):
        pos = idx_all[start:start + chunk]
        grids, gauss, oks = [], [], []
        for axis, n in enumerate(volume_shape):
            g = np.round(pos[:, axis]).astype(int)[:, None] + offs[None]
            grids.append(g)
            gauss.append(np.exp(-((g - pos[:, axis, None]) ** 2) / (2 * s**2)))
            oks.append((g >= 0) & (g < n))
        vals = (w_all[start:start + chunk, None, None, None] * gauss[0][:, :, None, None]
                * gauss[1][:, None, :, None] * gauss[2][:, None, None, :])
        ok = oks[0][:, :, None, None] & oks[1][:, None, :, None] & oks[2][:, None, None, :]
        flat = ((grids[0][:, :, None, None] * ny + grids[1][:, None, :, None]) * nx
                + grids[2][:, None, None, :])
        vol += np.bincount(flat[ok], vals[ok], vol.size)
    return vol.reshape(volume_shape)


def r_noise(noisy: np.ndarray, expected: np.ndarray) -> float:
    """R_noise = sum|P_noisy - P| / sum P per projection, averaged over projections."""
    noisy = np.asarray(noisy, float)
    expected = np.asarray(expected, float)
    axes = tuple(range(1, expected.ndim))
    return float(np.mean(np.sum(np.abs(noisy - expected), axis=axes) / np.sum(expected, axis=axes)))


def smooth_background(shape, rng: np.random.Generator, correlation_px: float) -> np.ndarray:
    """A smooth random field in [0.5, 1.5] (a support film's thickness variation)."""
    field_ = ndimage.gaussian_filter(rng.normal(size=shape), correlation_px, mode="wrap")
    field_ = (field_ - field_.min()) / max(np.ptp(field_), 1e-12)
    return 0.5 + field_


def ramp_background(shape, rng: np.random.Generator, ramp: float) -> np.ndarray:
    """A flat film with a linear thickness ramp: ``1 + ramp * t``, ``t`` in [-0.5, 0.5].

    ``t`` runs across the image (between its outermost pixels) in a random in-plane direction,
    so the thickness changes by the fraction ``ramp`` of its mean from one side to the other.
    """
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    t = (yy - (shape[0] - 1) / 2) * direction[0] + (xx - (shape[1] - 1) / 2) * direction[1]
    return 1.0 + ramp * t / max(2 * np.abs(t).max(), 1e-12)


@dataclass
class SimulatedTiltSeries:
    """A simulated tilt series with everything that is known about it.

    ``tilt_series`` ``(n, ny, nx)`` is the measured data (noisy counts when a dose was given)
    and ``expected`` its noise-free mean; ``frames`` ``(n, n_frames, ny, nx)`` holds the
    sequential frames when more than one was simulated (``tilt_series`` is then their plain,
    uncorrected average). ``angles_deg`` are the nominal (recorded) Euler angles and
    ``true_angles_deg`` the ones used. ``shifts_px`` ``(n, 2)`` are the planted (dy, dx)
    shifts, ``drift_px_per_frame`` ``(n, 2)`` the planted frame drift. ``atoms`` and
    ``voids`` are in the frame of a volume of ``volume_shape`` voxels of ``pixel_size_A``.
    """

    tilt_series: np.ndarray
    expected: np.ndarray
    angles_deg: np.ndarray
    true_angles_deg: np.ndarray
    pixel_size_A: float
    blur_sigma_A: float
    atoms: Atoms
    volume_shape: tuple
    shifts_px: np.ndarray
    tilt_axis_deg: float = 0.0
    dose_e_per_A2: float | None = None
    r_noise: float = 0.0
    frames: np.ndarray | None = None
    drift_px_per_frame: np.ndarray | None = None
    background: np.ndarray | None = None
    voids: list = field(default_factory=list)
    name: str = ""

    def truth_volume(self) -> np.ndarray:
        """The voxelised ground-truth volume (noise-free, cross-section per voxel)."""
        return voxelize_atoms(self.atoms, self.volume_shape, self.pixel_size_A, self.blur_sigma_A)


def simulate_tilt_series(atoms: Atoms, angles_deg, pixel_size_A: float = 0.35,
                         blur_sigma_A: float = 0.45, image_size: int | None = None,
                         margin_A: float = 6.0, dose_e_per_A2: float | None = None,
                         shift_sigma_px: float = 0.0, angle_jitter_deg: float = 0.0,
                         tilt_axis_deg: float = 0.0, n_frames: int = 1,
                         drift_px_per_frame: float = 0.0, background_fraction: float = 0.0,
                         background_ramp: float | None = None, seed: int = 0, voids=(),
                         name: str = "") -> SimulatedTiltSeries:
    """Simulate an ADF-STEM tilt series of ``atoms`` (centred on the origin, Angstrom).

    Parameters
    ----------
    angles_deg : nominal tilt angles ``(n,)`` or Euler triplets ``(n, 3)``, degrees.
    pixel_size_A : detector pixel and voxel size (Angstrom).
    blur_sigma_A : Gaussian width of each atom (Angstrom).
    image_size : image side in pixels (default: fits the particle at any angle + margin).
    dose_e_per_A2 : electron dose per projection (e/A^2); ``None`` gives noise-free data.
    shift_sigma_px : standard deviation of random planted (dy, dx) shifts (pixels).
    angle_jitter_deg : standard deviation of the error of the recorded Euler angles (degrees).
    tilt_axis_deg : in-plane rotation of the tilt axis from the image y axis (degrees).
    n_frames : sequential frames per angle; each gets ``dose / n_frames``.
    drift_px_per_frame : speed of linear drift between frames (pixels/frame), random direction.
    background_fraction : support-film background, as a fraction of the mean projected
        particle signal per pixel inside the particle; thicker (1/cos theta) when tilted.
    background_ramp : ``None`` gives a film of random smooth thickness (0.5 to 1.5 times its
        mean); a number gives a flat film (the offset) with a linear ramp of that fraction of
        its mean across the image (:func:`ramp_background`), as a real film looks in one image.
    """
    rng = np.random.default_rng(seed)
    nominal = as_euler_angles(angles_deg)
    n = len(nominal)
    if image_size is None:
        rmax = np.max(np.linalg.norm(atoms.positions, axis=1)) if len(atoms) else 0.0
        image_size = 2 * int(np.ceil((rmax + margin_A) / pixel_size_A))
    shape2 = (image_size, image_size)
    volume_shape = (image_size,) * 3
    framed = atoms.shifted(grid_center(volume_shape) * pixel_size_A)
    true_angles = nominal + rng.normal(0, angle_jitter_deg, nominal.shape) * (angle_jitter_deg > 0)
    shifts = rng.normal(0, shift_sigma_px, (n, 2)) if shift_sigma_px > 0 else np.zeros((n, 2))
    clean = project_atoms(framed, true_angles, shape2, pixel_size_A, blur_sigma_A, volume_shape,
                          tilt_axis_deg=tilt_axis_deg)
    background = None
    if background_fraction > 0:
        signal = clean[clean > 0.05 * clean.max()].mean()
        film = (smooth_background(shape2, rng, image_size / 6) if background_ramp is None
                else ramp_background(shape2, rng, background_ramp))
        tilt = np.abs(np.cos(np.deg2rad(true_angles[:, 1])))
        background = background_fraction * signal * film[None] / np.maximum(tilt, 0.2)[:, None, None]
    scale = 1.0 if dose_e_per_A2 is None else float(dose_e_per_A2)
    drift = None
    frames = None
    if n_frames > 1:
        direction = rng.normal(size=(n, 2))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        drift = direction * drift_px_per_frame
        frame_expected = np.empty((n, n_frames) + shape2)
        for f in range(n_frames):
            img = project_atoms(framed, true_angles, shape2, pixel_size_A, blur_sigma_A,
                                volume_shape, shifts_px=shifts + f * drift,
                                tilt_axis_deg=tilt_axis_deg)
            if background is not None:
                img = img + background
            frame_expected[:, f] = img * scale / n_frames
        frames = (rng.poisson(frame_expected).astype(np.float32) if dose_e_per_A2 is not None
                  else frame_expected.astype(np.float32))
        expected = frame_expected.mean(axis=1) * n_frames
        measured = frames.mean(axis=1) * n_frames
    else:
        img = clean if not shifts.any() else project_atoms(
            framed, true_angles, shape2, pixel_size_A, blur_sigma_A, volume_shape,
            shifts_px=shifts, tilt_axis_deg=tilt_axis_deg)
        if background is not None:
            img = img + background
        expected = img * scale
        measured = rng.poisson(expected).astype(float) if dose_e_per_A2 is not None else expected
    rn = r_noise(measured, expected) if dose_e_per_A2 is not None else 0.0
    framed_voids = []
    for v in voids:
        moved = phantoms.PlantedVoid(v.kind, v.center + grid_center(volume_shape) * pixel_size_A,
                                     v.radius_A, v.volume_A3, v.n_zr_removed)
        framed_voids.append(moved)
    return SimulatedTiltSeries(
        tilt_series=measured.astype(np.float32), expected=expected.astype(np.float32),
        angles_deg=nominal, true_angles_deg=true_angles, pixel_size_A=pixel_size_A,
        blur_sigma_A=blur_sigma_A, atoms=framed, volume_shape=volume_shape, shifts_px=shifts,
        tilt_axis_deg=tilt_axis_deg, dose_e_per_A2=dose_e_per_A2, r_noise=rn, frames=frames,
        drift_px_per_frame=drift, background=background, voids=framed_voids, name=name,
    )


@functools.lru_cache(maxsize=8)
def _cached_phantom(name: str, seed: int, kwargs: tuple) -> phantoms.Phantom:
    makers = {"silica": phantoms.silica_glass, "zr": phantoms.zr_core_shell,
              "fcc": phantoms.fcc_particle}
    return makers[name](seed=seed, **dict(kwargs))


def phantom(name: str, seed: int = 0, **kwargs) -> phantoms.Phantom:
    """A (cached) phantom by short name: ``'silica'``, ``'zr'`` or ``'fcc'``.

    The returned object is shared between calls: copy before mutating it.
    """
    if name not in ("silica", "zr", "fcc"):
        raise ValueError(f"unknown phantom {name!r}; choose 'silica', 'zr' or 'fcc'")
    return _cached_phantom(name, seed, tuple(sorted(kwargs.items())))


#: Published-style acquisition defaults for each phantom (used by sample data and the CLI).
ACQUISITION_DEFAULTS = {
    "silica": dict(n_angles=55, tilt_range_deg=72.6, pixel_size_A=0.35, blur_sigma_A=0.40,
                   dose_e_per_A2=2.2e6),
    "zr": dict(n_angles=55, tilt_range_deg=72.6, pixel_size_A=0.45, blur_sigma_A=0.50,
               dose_e_per_A2=5.0e5),
    "fcc": dict(n_angles=41, tilt_range_deg=70.0, pixel_size_A=0.35, blur_sigma_A=0.40,
                dose_e_per_A2=None),
}


def simulate(name: str, seed: int = 0, n_angles: int | None = None,
             tilt_range_deg: float | None = None, equal_slope: bool = True,
             phantom_kwargs: dict | None = None, **kwargs) -> SimulatedTiltSeries:
    """Simulate a phantom's tilt series with that phantom's published-style defaults.

    ``equal_slope`` picks equally sloped angles (default) or linear steps over
    ``+-tilt_range_deg``; other keyword arguments go to :func:`simulate_tilt_series` and
    override the defaults in :data:`ACQUISITION_DEFAULTS`.
    """
    ph = phantom(name, seed, **(phantom_kwargs or {}))
    opts = dict(ACQUISITION_DEFAULTS[name])
    n = n_angles or opts.pop("n_angles")
    opts.pop("n_angles", None)
    rng_deg = tilt_range_deg or opts.pop("tilt_range_deg")
    opts.pop("tilt_range_deg", None)
    opts.update(kwargs)
    angles = (equal_slope_tilt_angles(n, rng_deg) if equal_slope
              else linear_tilt_angles(n, -rng_deg, rng_deg))
    return simulate_tilt_series(ph.atoms, angles, seed=seed, voids=ph.voids, name=ph.name, **opts)
