"""Tilt-series alignment: common line, centre of mass, tilt axis, projection matching.

Conventions
-----------
* A tilt series is ``(n, ny, nx)``; the tilt axis runs along y (rows) once the in-plane
  rotation ``tilt_axis_deg`` has been removed; angles are ``(n, 3)`` Euler triplets (degrees).
* A shift is ``(dy, dx)`` in pixels and is the translation *applied to* an image: the aligned
  image is ``aligned(r) = image(r - shift)`` (content moves by ``+shift``), done with Fourier
  (sub-pixel) shifts, never whole-pixel rolls. Every estimator returns the shifts it applied.
* ``tilt_axis_deg`` is the in-plane direction of the tilt axis, counter-clockwise from the
  image y axis in the (x, y) plane (x = columns, y = rows), as in
  :func:`napari_aet.core.simulate.simulate_tilt_series`. :func:`apply_alignment` first rotates
  every image by ``-tilt_axis_deg`` about the image centre (pixel ``n // 2``), then shifts it.
* A correct alignment is defined up to a rigid translation of the object: a constant shift
  along the axis and ``a cos(theta) + b sin(theta)`` across it. Centre of mass alignment fixes
  it by putting the particle's projected centre of mass at the image centre; the common line
  puts the centre of mass of the mean curve at the centre row.

Estimators need background-free images (see :mod:`napari_aet.core.preprocess`): a pedestal
biases the centre of mass toward the image centre.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy import ndimage, optimize

from napari_aet.core.geometry import as_euler_angles, grid_center
from napari_aet.core.jobs import run_to_completion
from napari_aet.core.parameters import parameter
from napari_aet.core.progress import Progress

# --- validation ---------------------------------------------------------------------------

def validate_tilt_series(tilt_series, angles_deg=None, min_images: int = 2):
    """Check a tilt series (and its angles); return ``(float64 array, (n, 3) angles or None)``.

    Raises
    ------
    ValueError
        Not ``(n, ny, nx)``, fewer than ``min_images`` images, NaN/infinite pixels, a blank
        series, or an angle count that differs from the image count.
    """
    series = np.asarray(tilt_series)
    if series.ndim == 2:
        raise ValueError(f"a single image {series.shape} is not a tilt series; alignment needs "
                         f"at least {min_images} images (n, ny, nx)")
    if series.ndim != 3:
        raise ValueError(f"a tilt series must be (n, ny, nx); got shape {series.shape}")
    if series.shape[0] < min_images:
        raise ValueError(f"alignment needs at least {min_images} images; got {series.shape[0]}")
    if min(series.shape[1:]) < 8:
        raise ValueError(f"images of {series.shape[1:]} pixels are too small to align")
    series = series.astype(np.float64, copy=False)
    bad = ~np.isfinite(series)
    if bad.any():
        images = np.unique(np.nonzero(bad)[0])
        raise ValueError(f"the tilt series contains NaN or infinite pixels (images "
                         f"{images[:10].tolist()}{'...' if len(images) > 10 else ''})")
    if not np.any(series):
        raise ValueError("the tilt series is blank (all pixels are zero)")
    angles = None
    if angles_deg is not None:
        angles = as_euler_angles(angles_deg)
        if len(angles) != series.shape[0]:
            raise ValueError(f"{len(angles)} tilt angles for {series.shape[0]} images: the angle "
                             "file does not match the tilt series")
    return series, angles


def _validate_shifts(shifts_px, n: int) -> np.ndarray:
    shifts = np.asarray(shifts_px, dtype=float)
    if shifts.shape != (n, 2):
        raise ValueError(f"shifts must be (n, 2) (dy, dx) pixels for {n} images; got {shifts.shape}")
    if not np.all(np.isfinite(shifts)):
        raise ValueError("shifts contain NaN or infinite values")
    return shifts


# --- applying an alignment ----------------------------------------------------------------

def apply_shifts(tilt_series, shifts_px) -> np.ndarray:
    """Translate each image by its ``(dy, dx)`` shift (pixels) with a Fourier shift.

    Returns a float32 ``(n, ny, nx)`` array; content moves by ``+shift`` (periodic boundary).
    """
    series = np.asarray(tilt_series, dtype=np.float64)
    shifts = _validate_shifts(shifts_px, series.shape[0])
    ny, nx = series.shape[1:]
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    spectrum = np.fft.rfft2(series)
    phase = np.exp(-2j * np.pi * (shifts[:, 0, None, None] * ky[None] + shifts[:, 1, None, None] * kx[None]))
    if nx % 2 == 0:  # Nyquist column: keep the shift real-valued (symmetric treatment)
        phase[:, :, -1] = (np.exp(-2j * np.pi * shifts[:, 0, None] * ky[:, 0][None])
                           * np.cos(np.pi * shifts[:, 1, None]))
    out = np.fft.irfft2(spectrum * phase, s=(ny, nx))
    return out.astype(np.float32)


def derotate_tilt_axis(tilt_series, tilt_axis_deg: float, order: int = 3) -> np.ndarray:
    """Rotate every image by ``-tilt_axis_deg`` about pixel ``(ny // 2, nx // 2)``.

    After this the tilt axis runs along y. Cubic-spline interpolation (``order``), zero
    outside the field of view. Returns float32 ``(n, ny, nx)``.
    """
    series = np.asarray(tilt_series, dtype=np.float64)
    if tilt_axis_deg == 0:
        return series.astype(np.float32)
    a = np.deg2rad(tilt_axis_deg)
    ca, sa = np.cos(a), np.sin(a)
    matrix = np.array([[ca, sa], [-sa, ca]])  # output (v, u) -> input (y, x)
    centre = grid_center(series.shape[1:])
    offset = centre - matrix @ centre
    out = np.empty(series.shape, dtype=np.float32)
    for k, image in enumerate(series):
        out[k] = ndimage.affine_transform(image, matrix, offset, order=order, mode="constant",
                                          cval=0.0, prefilter=order > 1)
    return out


def apply_alignment(tilt_series, shifts_px, tilt_axis_deg: float = 0.0) -> np.ndarray:
    """The aligned series: rotate by ``-tilt_axis_deg`` (degrees), then shift by ``shifts_px``.

    Deterministic: the same original images, shifts and angle give bit-identical output, so a
    saved alignment reproduces the aligned stack exactly.
    """
    series, _ = validate_tilt_series(tilt_series, min_images=1)
    return apply_shifts(derotate_tilt_axis(series, tilt_axis_deg), shifts_px)


# --- sub-pixel 1D cross-correlation ---------------------------------------------------------

def _cc_peak_1d(reference: np.ndarray, curves: np.ndarray, max_shift: float | None = None,
                newton_steps: int = 8) -> np.ndarray:
    """Displacement ``d`` (pixels) of each curve against ``reference`` (``curve(y) ~ ref(y - d)``).

    The maximum of the zero-padded cross-correlation, refined to sub-pixel precision by Newton
    steps on its band-limited (Fourier) interpolation.
    """
    curves = np.atleast_2d(curves)
    length = curves.shape[1]
    m = 2 * length
    ref_f = np.fft.rfft(reference, m)
    cur_f = np.fft.rfft(curves, m, axis=-1)
    product = np.conj(ref_f)[None] * cur_f
    cc = np.fft.irfft(product, m, axis=-1)
    lags = np.fft.fftfreq(m, 1.0 / m)
    limit = length // 2 if max_shift is None else max_shift
    cc = np.where(np.abs(lags)[None] <= limit, cc, -np.inf)
    t = lags[np.argmax(cc, axis=1)].astype(float)
    omega = 2 * np.pi * np.arange(product.shape[1]) / m
    weight = np.full(product.shape[1], 2.0)
    weight[0] = 1.0
    if m % 2 == 0:
        weight[-1] = 1.0
    for _ in range(newton_steps):
        e = product * np.exp(1j * omega[None] * t[:, None])
        d1 = np.sum(weight * np.real(1j * omega * e), axis=1)
        d2 = np.sum(weight * np.real(-(omega**2) * e), axis=1)
        step = np.where(d2 < 0, -d1 / np.where(d2 < 0, d2, -1.0), 0.0)
        t = t + np.clip(step, -0.5, 0.5)
    return t


def _shift_curves(curves: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Fourier-shift 1D curves ``(n, m)`` by ``shifts`` (n,) pixels (content moves by +shift)."""
    m = curves.shape[1]
    k = np.fft.rfftfreq(2 * m)
    spec = np.fft.rfft(curves, 2 * m, axis=1) * np.exp(-2j * np.pi * shifts[:, None] * k[None])
    return np.fft.irfft(spec, 2 * m, axis=1)[:, :m]


def _baseline(curves: np.ndarray, edge: int = 3) -> np.ndarray:
    """Curves minus the mean of their end samples (removes a constant pedestal)."""
    ends = np.concatenate([curves[:, :edge], curves[:, -edge:]], axis=1).mean(axis=1)
    return curves - ends[:, None]


# --- common line (along the axis) and centre of mass (across it) ----------------------------

def common_line_curves(tilt_series, tilt_axis_deg: float = 0.0) -> np.ndarray:
    """Project every image onto the tilt axis: curves ``(n, ny)`` (sum across the axis).

    With ``tilt_axis_deg != 0`` pixels are binned (linear interpolation) by their coordinate
    along the rotated axis, ``s = (y - cy) cos a - (x - cx) sin a + cy``.
    """
    series = np.asarray(tilt_series, dtype=np.float64)
    if tilt_axis_deg == 0:
        return series.sum(axis=2)
    n, ny, nx = series.shape
    cy, cx = grid_center((ny, nx))
    a = np.deg2rad(tilt_axis_deg)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    s = ((yy - cy) * np.cos(a) - (xx - cx) * np.sin(a) + cy).ravel()
    lo = np.floor(s).astype(int)
    frac = s - lo
    curves = np.zeros((n, ny + 1))
    flat = series.reshape(n, -1)
    for k in range(n):
        for idx, w in ((lo, 1 - frac), (lo + 1, frac)):
            ok = (idx >= 0) & (idx <= ny)
            curves[k] += np.bincount(idx[ok], flat[k, ok] * w[ok], ny + 1)
    return curves[:, :ny]


def _align_curves(curves: np.ndarray, reference_index: int | None, n_iterations: int,
                  max_shift: float | None):
    """Displacements (n,) of curves; the reference is one curve, then the running mean."""
    curves = _baseline(curves)
    disp = np.zeros(len(curves))
    if reference_index is not None:
        disp = _cc_peak_1d(curves[reference_index], curves, max_shift)
    for _ in range(n_iterations):
        mean = _shift_curves(curves, -disp).mean(axis=0)
        disp = _cc_peak_1d(mean, curves, max_shift)
    return disp, curves


def common_line_shifts(tilt_series, angles_deg, reference: str = "zero", n_iterations: int = 0,
                       center: bool = True, max_shift_px: float | None = None,
                       tilt_axis_deg: float = 0.0) -> np.ndarray:
    """Shifts along the tilt axis (dy, pixels) that make all common-line curves coincide.

    Each image is summed across the axis; each curve is cross-correlated (sub-pixel) with the
    reference curve: the 0-degree image's (``reference='zero'``, the published method) or the
    mean of the aligned curves (``'mean'``; ``n_iterations`` passes, default 3 for it).
    ``n_iterations`` > 0 with ``'zero'`` refines against the mean after the first pass.
    With ``center`` the mean aligned curve's centre of mass lands on row ``ny // 2``.

    Returns
    -------
    dy : (n,) shifts in pixels to apply along y (content moves by ``+dy``).
    """
    series, angles = validate_tilt_series(tilt_series, angles_deg)
    curves = common_line_curves(series, tilt_axis_deg)
    if reference not in ("zero", "mean"):
        raise ValueError(f"reference must be 'zero' or 'mean'; got {reference!r}")
    if reference == "zero":
        ref_index = int(np.argmin(np.abs(angles[:, 1])))
    else:
        ref_index = None
        n_iterations = max(n_iterations, 3)
    disp, curves = _align_curves(curves, ref_index, n_iterations, max_shift_px)
    dy = -disp
    if center:
        mean = np.clip(_shift_curves(curves, dy).mean(axis=0), 0, None)
        if mean.sum() > 0:
            y = np.arange(curves.shape[1])
            dy += grid_center(series.shape[1:])[0] - np.sum(y * mean) / mean.sum()
    return dy


def center_of_mass_shifts(tilt_series, axis: str = "x") -> np.ndarray:
    """Shifts (pixels) that put each image's centre of mass on the centre pixel ``n // 2``.

    ``axis='x'`` (across the tilt axis, the published use) or ``'y'``. The images must be
    background-free; negative pixels (noise after background subtraction) count as they are.

    Returns
    -------
    shifts : (n,) shifts in pixels along ``axis`` (content moves by ``+shift``).
    """
    series, _ = validate_tilt_series(tilt_series)
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y'; got {axis!r}")
    profile = series.sum(axis=1 if axis == "x" else 2)
    total = profile.sum(axis=1)
    if np.any(total <= 0):
        bad = np.nonzero(total <= 0)[0]
        raise ValueError(f"images {bad[:10].tolist()} have no positive total intensity: "
                         "the centre of mass is undefined")
    coord = np.arange(profile.shape[1])
    com = profile @ coord / total
    centre = grid_center(series.shape[1:])[1 if axis == "x" else 0]
    return centre - com


# --- tilt axis ------------------------------------------------------------------------------

def common_line_mismatch(tilt_series, tilt_axis_deg: float, n_iterations: int = 2) -> float:
    """Relative spread of the common-line curves at a trial axis direction (degrees).

    ``sum_k |c_k - mean|^2 / (n * sum mean^2)`` after aligning the curves to their mean: zero
    when all curves coincide, which happens only at the true tilt-axis direction.
    """
    curves = _baseline(common_line_curves(tilt_series, tilt_axis_deg))
    disp, curves = _align_curves(curves, None, n_iterations, None)
    aligned = _shift_curves(curves, -disp)
    mean = aligned.mean(axis=0)
    return float(np.sum((aligned - mean) ** 2) / (len(aligned) * np.sum(mean**2)))


def estimate_tilt_axis(tilt_series, angles_deg, search_deg: float = 6.0,
                       step_deg: float = 0.5, tolerance_deg: float = 0.01) -> float:
    """In-plane direction of the tilt axis (degrees, counter-clockwise from y in (x, y)).

    Minimises :func:`common_line_mismatch` over ``+-search_deg``: a grid with ``step_deg``
    then a bounded Brent search. Insensitive to image shifts (curves are re-aligned at
    every trial angle). Use background-free images.
    """
    series, _ = validate_tilt_series(tilt_series, angles_deg)
    grid = np.arange(-search_deg, search_deg + step_deg / 2, step_deg)
    values = [common_line_mismatch(series, a) for a in grid]
    best = grid[int(np.argmin(values))]
    res = optimize.minimize_scalar(lambda a: common_line_mismatch(series, a),
                                   bounds=(best - step_deg, best + step_deg), method="bounded",
                                   options={"xatol": tolerance_deg})
    return float(res.x)


def estimate_tilt_axis_offset(tilt_series, angles_deg) -> float:
    """Offset of the tilt axis across the image (pixels, + toward larger x) from column ``nx // 2``.

    For a series whose images are aligned to each other but whose rotation axis is off
    centre: the centre of mass across the axis follows ``offset + X cos(theta) + Z sin(theta)``
    (``X, Z`` the object's centre of mass); the least-squares ``offset`` is returned.
    Shifting every image by ``-offset`` along x centres the axis. Needs a few distinct angles.
    """
    series, angles = validate_tilt_series(tilt_series, angles_deg, min_images=3)
    theta = np.deg2rad(angles[:, 1])
    com = -center_of_mass_shifts(series, "x")
    design = np.stack([np.ones_like(theta), np.cos(theta), np.sin(theta)], axis=1)
    if np.linalg.matrix_rank(design) < 3:
        raise ValueError("the tilt angles do not determine the axis offset (need >= 3 distinct angles)")
    coef, *_ = np.linalg.lstsq(design, com, rcond=None)
    return float(coef[0])


def remove_rigid_translation(shifts_px, angles_deg) -> np.ndarray:
    """Shift errors ``(n, 2)`` without the part a rigid translation of the object explains.

    Removes the mean of dy and the least-squares ``a cos(theta) + b sin(theta)`` from dx:
    what is left is the real misalignment between projections (pixels).
    """
    shifts = np.asarray(shifts_px, float).copy()
    theta = np.deg2rad(as_euler_angles(angles_deg)[:, 1])
    shifts[:, 0] -= shifts[:, 0].mean()
    design = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    coef, *_ = np.linalg.lstsq(design, shifts[:, 1], rcond=None)
    shifts[:, 1] -= design @ coef
    return shifts


# --- projection matching ----------------------------------------------------------------------

def sirt_volume(tilt_series, angles_deg, n_iterations: int = 15) -> tuple[np.ndarray, object]:
    """A positivity-constrained SIRT reconstruction ``(nx, ny, nx)`` and its projector.

    Uses the reconstruction engine (:func:`napari_aet.core.reconstruct.sirt` with a
    :func:`napari_aet.core.projectors.make_projector` projector, voxel-centre sampling): the
    single-axis fast path when phi and psi are zero, the general projector otherwise.
    """
    from napari_aet.core.projectors import make_projector
    from napari_aet.core.reconstruct import sirt

    series = np.asarray(tilt_series, dtype=np.float32)
    n, ny, nx = series.shape
    proj = make_projector(angles_deg, (nx, ny, nx), subpixel=False)
    volume, _ = sirt(series, angles_deg, iterations=n_iterations, projector=proj,
                     subpixel=False)
    return volume, proj


def _binning_offset(shape, factor: int) -> np.ndarray:
    """Shift ``(dy, dx)`` (pixels) that puts the centre pixel ``n // 2`` of an image on the
    centre ``(n // factor) // 2`` of its ``factor``-binned copy (binned pixel ``j`` covers
    pixels ``factor j`` to ``factor j + factor - 1``)."""
    n = np.asarray(shape[-2:])
    return factor * (n // factor // 2) + (factor - 1) / 2 - n // 2


def _bin_images(series: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return series
    n, ny, nx = series.shape
    ny2, nx2 = ny // factor, nx // factor
    return series[:, :ny2 * factor, :nx2 * factor].reshape(n, ny2, factor, nx2, factor).mean(axis=(2, 4))


def register_translation(reference: np.ndarray, moving: np.ndarray, upsample: int = 100) -> np.ndarray:
    """Shift ``(dy, dx)`` to apply to ``moving`` so it matches ``reference`` (sub-pixel CC)."""
    from skimage.registration import phase_cross_correlation

    ref = reference - reference.mean()
    mov = moving - moving.mean()
    shift, _, _ = phase_cross_correlation(ref, mov, upsample_factor=upsample, normalization=None)
    return np.asarray(shift, float)


def reproject(tilt_series, angles_deg, n_iterations: int = 15) -> np.ndarray:
    """Reconstruct (SIRT with positivity) and re-project: the consistent counterpart ``(n, ny, nx)``."""
    series, angles = validate_tilt_series(tilt_series, angles_deg)
    volume, proj = sirt_volume(series, angles, n_iterations)
    return np.asarray(proj.forward(volume))


def _check_binning(shape, binning: int) -> None:
    if binning < 1 or shape[2] // binning < 16:
        raise ValueError(f"binning {binning} leaves too few pixels for projection matching")


def _binned_reprojection(series, angles, shifts, sirt_iterations: int, binning: int):
    """The shifted series binned by ``binning`` about the same rotation centre, its SIRT
    re-projection, and the reprojection error ``sum |A x - b| / sum |b|``."""
    centred = shifts + _binning_offset(series.shape, binning)
    aligned = _bin_images(apply_shifts(series, centred).astype(np.float64), binning)
    reprojection = reproject(aligned, angles, sirt_iterations)
    error = float(np.abs(reprojection - aligned).sum() / max(np.abs(aligned).sum(), 1e-30))
    return aligned, reprojection, error


def projection_matching(tilt_series, angles_deg, shifts_px=None, n_rounds: int = 3,
                        sirt_iterations: int = 15, binning: int = 2,
                        keep_center: bool = True, max_update_px: float = 3.0,
                        tolerance_px: float = 0.0) -> Generator[Progress, None, np.ndarray]:
    """Refine shifts by projection matching (a generator; ``return`` gives the shifts).

    Each round: apply the current shifts, reconstruct (SIRT, ``sirt_iterations``) from images
    binned by ``binning`` about the same rotation centre, re-project, register each image to
    its re-projection (sub-pixel cross-correlation) and add the measured offset to its shift.
    With ``keep_center`` the part of each update that a rigid translation of the object
    explains is removed, so the centring of the input shifts (e.g. centre of mass) is kept.
    The rounds stop early once a round's update RMS is below ``tolerance_px`` (converged:
    further rounds change nothing).

    Yields
    ------
    Progress with ``done`` (round), ``total``, ``shifts_px`` (n, 2), ``update_rms_px``,
    ``reprojection_error`` (sum |A x - b| / sum |b| on the binned images).

    Returns
    -------
    shifts_px : (n, 2) total shifts (dy, dx) in pixels of the original images.
    """
    series, angles = validate_tilt_series(tilt_series, angles_deg)
    n = len(series)
    shifts = np.zeros((n, 2)) if shifts_px is None else _validate_shifts(shifts_px, n).copy()
    if n_rounds < 1:
        raise ValueError(f"n_rounds must be >= 1; got {n_rounds}")
    _check_binning(series.shape, binning)
    for it in range(1, n_rounds + 1):
        aligned, reprojection, error = _binned_reprojection(series, angles, shifts,
                                                            sirt_iterations, binning)
        update = np.array([register_translation(reprojection[k], aligned[k]) for k in range(n)]) * binning
        update = np.clip(update, -max_update_px, max_update_px)
        if keep_center:
            update = remove_rigid_translation(update, angles)
        shifts = shifts + update
        rms = float(np.sqrt(np.mean(update**2)))
        yield Progress("align", it, n_rounds, stage="projection matching",
                       message=f"update {rms:.3f} px, re-projection error {error:.4f}",
                       shifts_px=shifts.copy(), update_rms_px=rms, reprojection_error=error)
        if rms < tolerance_px:
            break
    return shifts


# --- the whole alignment --------------------------------------------------------------------

@dataclass
class AlignParameters:
    """Settings of :func:`align_tilt_series`, as on every front-end: projection matching
    refines the common-line and centre-of-mass seeds (at most 5 rounds, fewer once an
    update is below 0.01 px). The background default is ``'auto'``
    (:class:`napari_aet.core.preprocess.PreprocessParameters`)."""

    estimate_axis: bool = parameter(False, label="estimate tilt axis",
                                    help="estimate the in-plane tilt-axis direction and remove it")
    tilt_axis_deg: float = parameter(0.0, unit="deg", min=-180.0, max=180.0,
                                     help="known in-plane tilt-axis direction, counter-clockwise "
                                          "from y")
    common_line: bool = parameter(True, label="common line along the axis",
                                  help="align along the tilt axis by common-line correlation")
    reference: str = parameter("zero", choices=("zero", "mean"), label="common-line reference",
                               help="reference curve: the 0-degree image's or the mean")
    center_of_mass: bool = parameter(True, label="centre of mass across the axis",
                                     help="align across the tilt axis by the centre of mass")
    projection_matching_rounds: int = parameter(5, min=0, max=50, label="projection matching",
                                                help="at most this many rounds of projection "
                                                     "matching, fewer once an update is below "
                                                     "the tolerance; 0 = none")
    binning: int = parameter(2, min=1, max=16, help="binning of the images for projection matching")
    sirt_iterations: int = parameter(40, min=1, max=1000,
                                     help="SIRT iterations of each projection-matching "
                                          "reconstruction")
    tolerance_px: float = parameter(0.01, unit="px", min=0.0, max=1.0,
                                    help="projection matching stops once an update (RMS) is "
                                         "below this")

    def options(self) -> dict:
        """Keyword arguments of :func:`align_tilt_series`."""
        values = asdict(self)
        values["common_line_reference"] = values.pop("reference")
        return values


#: Defaults of :func:`align_tilt_series` (its keyword names), from :class:`AlignParameters`.
DEFAULTS = AlignParameters().options()


@dataclass
class AlignmentResult:
    """Outcome of :func:`align_tilt_series`.

    ``aligned`` float32 ``(n, ny, nx)``; ``shifts_px`` ``(n, 2)`` total (dy, dx) shifts applied
    after removing ``tilt_axis_deg`` (degrees); ``steps`` lists what was done, in order.
    """

    aligned: np.ndarray
    shifts_px: np.ndarray
    tilt_axis_deg: float = 0.0
    steps: list = field(default_factory=list)


def align_tilt_series(tilt_series, angles_deg, *,
                      estimate_axis: bool = DEFAULTS["estimate_axis"],
                      tilt_axis_deg: float = DEFAULTS["tilt_axis_deg"],
                      common_line: bool = DEFAULTS["common_line"],
                      common_line_reference: str = DEFAULTS["common_line_reference"],
                      common_line_iterations: int = 0,
                      center_of_mass: bool = DEFAULTS["center_of_mass"],
                      projection_matching_rounds: int = DEFAULTS["projection_matching_rounds"],
                      binning: int = DEFAULTS["binning"],
                      sirt_iterations: int = DEFAULTS["sirt_iterations"],
                      tolerance_px: float = DEFAULTS["tolerance_px"],
                      initial_shifts_px=None) -> Generator[Progress, None, AlignmentResult]:
    """Align a background-free tilt series (a generator; ``return`` gives an AlignmentResult).

    Steps, in order: tilt-axis direction (``estimate_axis``, else the given ``tilt_axis_deg``),
    common line along the axis, centre of mass across it (before projection matching these
    seeds are kept only when their SIRT reprojection error is below that of the starting
    shifts: on an aligned noisy series they are noise), ``projection_matching_rounds``
    rounds of projection matching (stopping early below ``tolerance_px``, see
    :func:`projection_matching`). Yields a :class:`~napari_aet.core.progress.Progress`
    (``stage`` the step, ``shifts_px``, ``tilt_axis_deg``) after each step. The refinement
    settings default to :data:`DEFAULTS`, as on every front-end; ``projection_matching_rounds=0``
    gives the seeds alone.
    """
    series, angles = validate_tilt_series(tilt_series, angles_deg)
    n = len(series)
    shifts = (np.zeros((n, 2)) if initial_shifts_px is None
              else _validate_shifts(initial_shifts_px, n).copy())
    total = alignment_steps(common_line, center_of_mass, projection_matching_rounds)
    it = 0
    steps = []
    if estimate_axis:
        tilt_axis_deg = estimate_tilt_axis(series, angles)
        steps.append({"step": "tilt axis", "tilt_axis_deg": tilt_axis_deg})
    it += 1
    yield Progress("align", it, total, stage="tilt axis", message=f"{tilt_axis_deg:.2f} deg",
                   tilt_axis_deg=float(tilt_axis_deg))
    derotated = derotate_tilt_axis(series, tilt_axis_deg)
    if common_line:
        current = apply_shifts(derotated, shifts)
        shifts[:, 0] += common_line_shifts(current, angles, common_line_reference,
                                           common_line_iterations)
        steps.append({"step": "common line", "reference": common_line_reference})
        it += 1
        yield Progress("align", it, total, stage="common line", shifts_px=shifts.copy())
    if center_of_mass:
        current = apply_shifts(derotated, shifts)
        shifts[:, 1] += center_of_mass_shifts(current, "x")
        steps.append({"step": "centre of mass"})
        it += 1
        yield Progress("align", it, total, stage="centre of mass", shifts_px=shifts.copy())
    if projection_matching_rounds and (common_line or center_of_mass):
        # seeds from noisy images (low-dose counts) can misalign an aligned series: keep
        # them only when they make the series more consistent than the starting shifts
        _check_binning(derotated.shape, binning)
        start = (np.zeros((n, 2)) if initial_shifts_px is None
                 else _validate_shifts(initial_shifts_px, n))
        errors = [_binned_reprojection(derotated, angles, x, sirt_iterations, binning)[2]
                  for x in (start, shifts)]
        kept = "seeds" if errors[1] <= errors[0] else "initial shifts"
        if kept != "seeds":
            shifts = start.copy()
        steps.append({"step": "seed check", "kept": kept, "reprojection_error": errors})
        it += 1
        yield Progress("align", it, total, stage="seed check",
                       message=f"kept the {kept} (re-projection error {errors[1]:.4f} with the "
                               f"seeds, {errors[0]:.4f} without)", shifts_px=shifts.copy())
    if projection_matching_rounds:
        gen = projection_matching(derotated, angles, shifts, projection_matching_rounds,
                                  sirt_iterations, binning, tolerance_px=tolerance_px)
        rounds = []
        shifts = yield from _relabel(gen, it, total, rounds)
        steps.append({"step": "projection matching", "rounds": len(rounds)})
    return AlignmentResult(apply_shifts(derotated, shifts), shifts, float(tilt_axis_deg), steps)


def alignment_steps(common_line: bool = True, center_of_mass: bool = True,
                    projection_matching_rounds: int = DEFAULTS["projection_matching_rounds"]
                    ) -> int:
    """Progress records :func:`align_tilt_series` yields at most: tilt axis, common line,
    centre of mass, the seed check (before projection matching, when there are seeds) and
    one per projection-matching round (fewer once converged)."""
    rounds = int(projection_matching_rounds)
    seed_check = bool(rounds) and (common_line or center_of_mass)
    return 1 + int(common_line) + int(center_of_mass) + int(seed_check) + rounds


def _relabel(gen, offset: int, total: int, seen: list | None = None):
    """Re-yield a sub-generator's progress with the outer iteration count (appending each
    item to ``seen``); return its value."""
    while True:
        try:
            value = next(gen)
        except StopIteration as stop:
            return stop.value
        value = replace(value, done=offset + value.done, total=total)
        if seen is not None:
            seen.append(value)
        yield value


def run(generator):
    """Run a progress generator to the end and return its return value."""
    return run_to_completion(generator)
