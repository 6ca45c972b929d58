"""Tomographic reconstruction: RESIRE, SIRT and weighted back-projection (WBP).

Every algorithm is a generator that yields one :class:`~napari_aet.core.progress.Progress`
per iteration (``step="reconstruct"``, ``done`` = iteration ``k``, ``r1``, ``residual_l1``
= ``sum|Ax - b|``, ``data_l1`` = ``sum|b|``, ``support`` = ``"loose"`` | ``"tight"`` |
``"given"`` | ``"none"``, and ``preview`` = central slices ``{"yx", "zx", "zy"}`` every
``preview_every`` iterations) and *returns* the reconstructed volume ``(nz, ny, nx)``
(float32, numpy) when it finishes (``volume = yield from resire_iter(...)`` or
``StopIteration.value``). A caller can stop at any yield: nothing is written anywhere by this
module. ``R1 = sum|A x - b| / sum|b|`` is the residual of the volume *entering* iteration
``k`` (RESIRE and SIRT compute it on the way).

:func:`run_reconstruction` is the one entry point of the widget, the command line and the
pipeline: it runs on the CPU, the GPU (``gpu=True``) or Dask slabs (``scheduler`` given) and
returns a :class:`ReconstructionResult`. The plain functions :func:`resire`, :func:`sirt`
and :func:`wbp` run to the end and return ``(volume, r1_history)``.

Units: the tilt series is in any linear intensity unit; the volume is in the same unit per
voxel (its 0-degree projection ``volume.sum(axis=0)`` reproduces the 0-degree image).
Geometry and angles as in :mod:`napari_aet.core.geometry` and
:mod:`napari_aet.core.projectors`.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from napari_aet.core.geometry import as_euler_angles
from napari_aet.core.jobs import run_to_completion
from napari_aet.core.parameters import parameter
from napari_aet.core.progress import Progress
from napari_aet.core.projectors import Projector, make_projector, to_numpy

if TYPE_CHECKING:
    from napari_aet.core.angle_refinement import AngleRefinement

METHODS = ("resire", "sirt", "wbp")
#: Default (iterations, step) per method; WBP is one pass and has no step.
DEFAULTS = {"resire": (200, 2.0), "sirt": (100, 1.0), "wbp": (1, None)}
#: Choices of the Euler angles refined by angle refinement.
REFINED_ANGLES = ("theta", "phi,theta,psi")


@dataclass
class ReconstructParameters:
    """Settings of a reconstruction; ``iterations`` and ``step`` None mean the method's own
    (:data:`DEFAULTS`)."""

    method: str = parameter("resire", choices=METHODS,
                            help="RESIRE: real-space gradient descent (published AET method); "
                                 "SIRT; WBP: weighted back-projection (one pass)")
    iterations: int | None = parameter(None, min=1, max=100000,
                                       help="iterations; none = the method's (200 for RESIRE, "
                                            "100 for SIRT; WBP is one pass)")
    step: float | None = parameter(None, min=0.01, max=10.0,
                                   help="RESIRE: t = step / (n_angles * nz); 2 is usual, 2.2 "
                                        "already converges poorly and 2.5 oscillates; SIRT: "
                                        "relaxation factor (1)")
    positivity: bool = parameter(True, label="positivity (negative voxels -> 0)",
                                 help="negative voxels are set to 0 (RESIRE and SIRT)")
    tight_support: bool = parameter(False, label="loose then tight support",
                                    help="after half the iterations, restrict the support to the "
                                         "smoothed volume above 10 % of its maximum")
    extended_object: bool = parameter(False,
                                      label="extended object (film beyond the field of view)",
                                      help="reconstruct in a wider box along x, compare "
                                           "projections on the field of view only, keep the "
                                           "field-of-view volume (RESIRE's extended-object mode)")
    extended_box: float = parameter(2.0, min=1.0, max=10.0,
                                    help="width of the extended-object box along x, in fields "
                                         "of view")
    subpixel: bool = parameter(True, label="4 sub-pixel samples per voxel",
                               help="4 sub-pixel samples per voxel instead of one")
    gpu: bool = parameter(False, label="GPU (CuPy)", help="run on the GPU (needs CuPy)")
    refine_angles_cycles: int = parameter(0, min=0, max=20, label="angle refinement cycles",
                                          help="cycles of reconstruct, then refine each image's "
                                               "Euler angles and shifts against the volume's "
                                               "re-projections, then reconstruct again; 0 = off")
    refine_angles: str = parameter("theta", choices=REFINED_ANGLES,
                                   help="the Euler angles refined: theta (single tilt axis) "
                                        "or all three")
    refine_rounds: int = parameter(3, min=1, max=20, label="refinement rounds per cycle",
                                   help="Gauss-Newton rounds of the angles (each at most 1 "
                                        "degree) per cycle")
    refine_shifts: bool = parameter(True, label="refine shifts",
                                    help="also register each image to its re-projection "
                                         "(sub-pixel shifts) in each refinement round")

    def options(self) -> dict:
        """Keyword arguments of :func:`reconstruct_iter` besides ``gpu``: the method's own
        iterations and step where these are None; WBP is one pass without positivity."""
        iterations, step = DEFAULTS[self.method]
        if self.iterations is not None and self.method != "wbp":
            iterations = self.iterations
        if self.step is not None:
            step = self.step
        options = dict(iterations=iterations, positivity=self.positivity and self.method != "wbp",
                       subpixel=self.subpixel, tight_support=self.tight_support)
        if step is not None:
            options["step"] = step
        if self.extended_object:
            options.update(extended_object=True, extended_box=self.extended_box)
        if self.refine_angles_cycles:
            options.update(refine_angles_cycles=self.refine_angles_cycles,
                           refine_angles=self.refine_angles, refine_rounds=self.refine_rounds,
                           refine_shifts=self.refine_shifts)
        return options


# --- input checks ---------------------------------------------------------------------------

#: An iteration stops as diverged once R1 exceeds this multiple of its first iteration's R1.
DIVERGENCE_FACTOR = 2.0


class DivergenceError(ValueError):
    """R1 grew instead of falling (step too large) or became NaN; nothing is returned."""


def check_inputs(tilt_series, angles_deg, support=None, volume_shape=None):
    """Validate a reconstruction's inputs; return ``(tilt_series, angles, volume_shape, support)``.

    Images may be rectangular (``ny != nx``); the default volume is ``(nx, ny, nx)``.
    Raises ``ValueError`` naming the problem: wrong dimensions, NaN or infinite pixels,
    an angle count that differs from the image count, a support mask of the wrong shape or
    without any voxel inside.
    """
    tilt_series = np.asarray(tilt_series)
    if tilt_series.ndim != 3:
        raise ValueError(f"the tilt series must be (n_angles, ny, nx); got shape {tilt_series.shape}")
    n, ny, nx = tilt_series.shape
    bad = int(np.count_nonzero(~np.isfinite(tilt_series)))
    if bad:
        raise ValueError(f"the tilt series contains {bad} NaN or infinite pixel values")
    angles = as_euler_angles(angles_deg)
    if len(angles) != n:
        raise ValueError(f"{len(angles)} angles for {n} tilt images: they must match")
    if volume_shape is None:
        volume_shape = (nx, ny, nx)
    volume_shape = tuple(int(s) for s in volume_shape)
    if len(volume_shape) != 3 or volume_shape[1:] != (ny, nx):
        raise ValueError(f"volume_shape must be (nz, {ny}, {nx}) for {ny} x {nx} images; "
                         f"got {volume_shape}")
    if support is not None:
        support = np.asarray(support)
        if support.shape != volume_shape:
            raise ValueError(f"the support mask has shape {support.shape}; the volume is {volume_shape}")
        support = support > 0
        if not support.any():
            raise ValueError("the support mask is empty (no voxel inside): nothing to reconstruct")
    return tilt_series.astype(np.float32, copy=False), angles, volume_shape, support


def tight_support_from(volume, threshold: float = 0.1, sigma_vox: float = 1.0,
                       dilate_vox: int = 2) -> np.ndarray:
    """A tight support: voxels where the Gaussian-smoothed volume exceeds ``threshold * max``.

    Parameters
    ----------
    volume : ``(nz, ny, nx)`` reconstruction.
    threshold : fraction of the smoothed volume's maximum.
    sigma_vox : Gaussian smoothing width (voxels).
    dilate_vox : dilation of the thresholded mask (voxels) so atom tails stay inside.
    """
    smooth = ndimage.gaussian_filter(np.asarray(volume, np.float32), sigma_vox)
    mask = smooth > threshold * smooth.max()
    if dilate_vox > 0:
        mask = ndimage.binary_dilation(mask, iterations=int(dilate_vox))
    return mask


# --- shared set-up ------------------------------------------------------------------------------

def extended_box_shape(volume_shape, extended_box: float) -> tuple[int, int, int]:
    """Shape ``(nz, ny, nx')`` of the reconstruction box of an extended object (a film in the
    x-y plane): the field of view's ``nx`` times ``extended_box``, keeping its parity so the
    field of view sits exactly at the box's rotation centre; ``nz`` (the film's depth) and
    ``ny`` (the tilt axis) unchanged."""
    if not (np.isfinite(extended_box) and extended_box >= 1):
        raise ValueError(f"extended_box must be at least 1 (fields of view); got {extended_box}")
    nz, ny, nx = volume_shape
    wide = int(round(nx * float(extended_box)))
    return nz, ny, wide + (wide - nx) % 2


class _Problem:
    """Projector, data and constraints in the projector's native layouts.

    With ``extended_box`` (> 1) the object extends beyond the field of view (a film): the
    volume is reconstructed in a box ``extended_box`` times wider along x, the computed
    projections are compared with the measured ones on the field of view only, and the
    result is the field-of-view volume at the box centre.
    """

    def __init__(self, tilt_series, angles_deg, support, volume_shape, subpixel, gpu,
                 projector, single_axis_tol_deg, convention, initial_volume,
                 extended_box=None):
        tilt_series, angles, volume_shape, support = check_inputs(
            tilt_series, angles_deg, support, volume_shape)
        self.fov_shape = volume_shape
        self.fov = None
        if extended_box is not None:
            box = extended_box_shape(volume_shape, extended_box)
            self.box_shape = box
            self.fov = tuple(slice((b - f) // 2, (b - f) // 2 + f) for b, f in zip(box, volume_shape))
            padded = np.zeros(tilt_series.shape[:2] + (box[2],), np.float32)
            padded[:, :, self.fov[2]] = tilt_series
            tilt_series = padded
            if support is not None:
                support = self.embed(support, fill=True)
            if initial_volume is not None:
                initial_volume = self.embed(self._check_initial(initial_volume))
            volume_shape = box
        if projector is None:
            projector = make_projector(angles, volume_shape, subpixel=subpixel, gpu=gpu,
                                       single_axis_tol_deg=single_axis_tol_deg,
                                       convention=convention)
        elif not isinstance(projector, Projector):
            raise ValueError("projector must be a napari_aet.core.projectors.Projector")
        elif (projector.volume_shape != volume_shape
              or projector.projection_shape != tilt_series.shape):
            raise ValueError(f"the projector is for volume {projector.volume_shape} and "
                             f"projections {projector.projection_shape}; the data need "
                             f"{volume_shape} and {tilt_series.shape}")
        self.projector = projector
        self.xp = projector.xp
        self.angles = angles
        self.volume_shape = volume_shape
        self.data = projector.to_native_projections(tilt_series)
        self.data_l1 = float(self.xp.abs(self.data).sum())
        if self.data_l1 == 0:
            raise ValueError("the tilt series is all zeros")
        self.fov_mask = None
        if self.fov is not None:
            mask = np.zeros(tilt_series.shape, np.float32)
            mask[:, :, self.fov[2]] = 1.0
            self.fov_mask = projector.to_native_projections(mask)
        self.support = None if support is None else projector.to_native_volume(support) > 0.5
        if initial_volume is None:
            self.volume = projector.native_volume_zeros()
        else:
            self.volume = projector.to_native_volume(self._check_initial(initial_volume))

    def _check_initial(self, initial_volume):
        initial_volume = np.asarray(initial_volume, np.float32)
        if initial_volume.shape != self.fov_shape:
            raise ValueError(f"initial_volume has shape {initial_volume.shape}; "
                             f"expected {self.fov_shape}")
        return initial_volume

    def embed(self, fov_volume, fill=False):
        """A box volume holding ``fov_volume`` at the field of view (``fill`` elsewhere)."""
        box = np.full(self.box_shape, fill, dtype=np.asarray(fov_volume).dtype)
        box[self.fov] = fov_volume
        return box

    def mask_residual(self, residual):
        """Keep the residual on the field of view only (extended objects)."""
        if self.fov_mask is not None:
            residual *= self.fov_mask
        return residual

    def box_volume(self, native) -> np.ndarray:
        """The whole reconstruction box as a numpy float32 array."""
        return to_numpy(self.projector.from_native_volume(native)).astype(np.float32)

    def result(self, native) -> np.ndarray:
        """The field-of-view volume (the whole box unless the object is extended)."""
        volume = self.box_volume(native)
        return volume if self.fov is None else np.ascontiguousarray(volume[self.fov])

    def constrain(self, native, positivity):
        if positivity:
            self.xp.maximum(native, 0, out=native)
        if self.support is not None:
            native *= self.support

    def progress(self, k, total, residual_l1, native, preview_every, support_state) -> Progress:
        r1 = residual_l1 / self.data_l1
        preview = None
        if preview_every and (k % preview_every == 0):
            if self.fov is None:
                preview = self.projector.central_slices(native)
            else:  # the field of view, not the wide box
                vol = self.result(native)
                nz, ny, nx = vol.shape
                preview = {"yx": vol[nz // 2], "zx": vol[:, ny // 2], "zy": vol[:, :, nx // 2]}
        return Progress("reconstruct", k, int(total), message=f"R1 {r1:.4f}", r1=r1,
                        residual_l1=residual_l1, data_l1=self.data_l1, support=support_state,
                        preview=preview)

    def iterate(self, update, iterations, positivity, tight_support, tight_threshold,
                preview_every):
        """Run ``update(x) -> residual_l1`` (in place) under the constraints, yielding progress.

        With ``tight_support`` the support is tightened from the current volume after half
        the iterations (loose-then-tight). Returns the volume as a numpy array.
        """
        x = self.volume
        self.constrain(x, positivity)
        switch = iterations // 2 if tight_support else -1
        state = "loose" if tight_support else ("given" if self.support is not None else "none")
        first_r1 = None
        for k in range(1, int(iterations) + 1):
            if k - 1 == switch and switch > 0:
                self.tighten(x, tight_threshold)
                state = "tight"
            residual_l1 = update(x)
            r1 = residual_l1 / self.data_l1
            first_r1 = r1 if first_r1 is None else first_r1
            if not np.isfinite(r1) or r1 > DIVERGENCE_FACTOR * first_r1:
                raise DivergenceError(
                    f"the reconstruction diverges: R1 rose from {first_r1:.3g} (iteration 1) "
                    f"to {r1:.3g} at iteration {k}; lower the step (RESIRE: 2 or less, "
                    f"SIRT: 1 or less)")
            self.constrain(x, positivity)
            yield self.progress(k, iterations, residual_l1, x, preview_every, state)
        return self.result(x)

    def tighten(self, native, threshold):
        """Replace the support by a tight one derived from the current volume."""
        tight = tight_support_from(self.box_volume(native), threshold)
        if self.support is not None:
            tight &= to_numpy(self.projector.from_native_volume(self.support)).astype(bool)
        if tight.any():
            self.support = self.projector.to_native_volume(tight) > 0.5
            native *= self.support


def _check_iterations(iterations, step):
    if int(iterations) < 1:
        raise ValueError(f"iterations must be at least 1; got {iterations}")
    if step is not None and not (np.isfinite(step) and step > 0):
        raise ValueError(f"step must be a positive number; got {step}")


# --- RESIRE ----------------------------------------------------------------------------------

def resire_iter(tilt_series, angles_deg, iterations: int = 200, step: float = 2.0,
                positivity: bool = True, support=None, tight_support: bool = False,
                tight_threshold: float = 0.1, volume_shape=None, initial_volume=None,
                subpixel: bool = True, gpu: bool = False, projector: Projector | None = None,
                preview_every: int = 10, single_axis_tol_deg: float = 0.0,
                convention: str = "zyx", extended_object: bool = False,
                extended_box: float = 2.0) -> Generator[Progress, None, np.ndarray]:
    """RESIRE: gradient descent on ``||A x - b||^2`` with positivity and support.

    Each iteration ``x <- x - t * A^T (A x - b)`` with ``t = step / (n_angles * nz)`` (the
    box's longer of ``nz`` and ``nx`` for an extended object), then
    negative voxels are set to 0 (``positivity``) and voxels outside ``support`` to 0.

    Parameters
    ----------
    tilt_series : ``(n, ny, nx)`` aligned projections (``ny != nx`` allowed).
    angles_deg : ``(n,)`` tilt angles or ``(n, 3)`` Euler angles ``(phi, theta, psi)``, degrees.
    iterations : number of iterations (50-200 typical).
    step : normalised step size (published range 0.25-3; 2 is the usual choice).
    support : optional ``(nz, ny, nx)`` mask; voxels outside stay 0.
    tight_support : loose-then-tight: after half the iterations, replace the support by
        :func:`tight_support_from` the current volume (``tight_threshold``) for the rest.
    volume_shape : ``(nz, ny, nx)``; default ``(nx, ny, nx)``.
    initial_volume : starting volume (default zeros).
    subpixel : 4 sub-pixel samples per voxel in the projector.
    gpu : run on CuPy.
    projector : a prebuilt projector (reused between calls); default from :func:`make_projector`.
    preview_every : add central slices to every ``preview_every``-th progress record (0: never).
    single_axis_tol_deg : see :func:`napari_aet.core.projectors.make_projector`.
    extended_object : the object extends beyond the field of view (a film): reconstruct in a
        box ``extended_box`` times wider along x (:func:`extended_box_shape`), compare
        the projections on the field of view only, return the field-of-view volume.
        ``support``, ``initial_volume`` and ``volume_shape`` refer to the field of view;
        ``projector`` must then be built for the box.
    extended_box : width of that box along x, in fields of view.
    """
    _check_iterations(iterations, step)
    problem = _Problem(tilt_series, angles_deg, support, volume_shape, subpixel, gpu, projector,
                       single_axis_tol_deg, convention, initial_volume,
                       extended_box if extended_object else None)
    A = problem.projector
    xp = problem.xp
    nz_box, _, nx_box = problem.volume_shape
    # the longest rays of a wide extended-object box run along x at high tilt
    t = float(step) / (A.n_angles * (nz_box if problem.fov is None else max(nz_box, nx_box)))

    def gradient_step(x):
        residual = A.forward_native(x)
        residual -= problem.data
        problem.mask_residual(residual)
        residual_l1 = float(xp.abs(residual).sum())
        gradient = A.adjoint_native(residual)
        gradient *= t
        x -= gradient
        return residual_l1

    return (yield from problem.iterate(gradient_step, iterations, positivity, tight_support,
                                       tight_threshold, preview_every))


# --- SIRT ------------------------------------------------------------------------------------

def sirt_iter(tilt_series, angles_deg, iterations: int = 100, step: float = 1.0,
              positivity: bool = True, support=None, tight_support: bool = False,
              tight_threshold: float = 0.1, volume_shape=None, initial_volume=None,
              subpixel: bool = True, gpu: bool = False, projector: Projector | None = None,
              preview_every: int = 10, single_axis_tol_deg: float = 0.0,
              convention: str = "zyx", extended_object: bool = False,
              extended_box: float = 2.0) -> Generator[Progress, None, np.ndarray]:
    """SIRT: ``x <- x + step * C A^T R (b - A x)`` with ``R = 1/(A 1)``, ``C = 1/(A^T 1)``.

    ``step`` is the relaxation factor (1 is classical SIRT, below 2 converges). Other
    parameters as in :func:`resire_iter`.
    """
    _check_iterations(iterations, step)
    problem = _Problem(tilt_series, angles_deg, support, volume_shape, subpixel, gpu, projector,
                       single_axis_tol_deg, convention, initial_volume,
                       extended_box if extended_object else None)
    A = problem.projector
    xp = problem.xp
    ones = A.to_native_volume(np.ones(problem.volume_shape, np.float32))
    row = A.forward_native(ones)
    inv_row = xp.where(row > 1e-6, 1.0 / xp.maximum(row, 1e-6), 0).astype(A.dtype)
    col = A.adjoint_native(problem.mask_residual(
        A.to_native_projections(np.ones(A.projection_shape, np.float32))))
    inv_col = xp.where(col > 1e-6, float(step) / xp.maximum(col, 1e-6), 0).astype(A.dtype)
    del ones, row, col

    def sirt_step(x):
        residual = problem.data - A.forward_native(x)
        problem.mask_residual(residual)
        residual_l1 = float(xp.abs(residual).sum())
        residual *= inv_row
        update = A.adjoint_native(residual)
        update *= inv_col
        x += update
        return residual_l1

    return (yield from problem.iterate(sirt_step, iterations, positivity, tight_support,
                                       tight_threshold, preview_every))


# --- WBP -------------------------------------------------------------------------------------

def angular_weights(theta_deg) -> np.ndarray:
    """Angular spacing (radians) of each tilt: half the distance to its two neighbours.

    The first and last tilts get the spacing to their one neighbour. A single angle gets pi.
    """
    theta = np.deg2rad(np.asarray(theta_deg, float))
    if theta.size == 1:
        return np.array([np.pi])
    order = np.argsort(theta)
    s = theta[order]
    gaps = np.diff(s)
    w = np.empty_like(s)
    w[1:-1] = 0.5 * (gaps[:-1] + gaps[1:])
    w[0], w[-1] = gaps[0], gaps[-1]
    out = np.empty_like(w)
    out[order] = w
    return out


def ramp_filter(n_pixels: int, window: str = "hann") -> np.ndarray:
    """Frequency response (``rfft`` layout, padded length ``2 * n_pixels`` rounded up to a power
    of 2) of the discrete ramp filter (Kak & Slaney), optionally with a Hann window."""
    size = max(64, int(2 ** np.ceil(np.log2(2 * n_pixels))))
    n = np.concatenate([np.arange(1, size // 2 + 1, 2), np.arange(size // 2 - 1, 0, -2)])
    h = np.zeros(size)
    h[0] = 0.25
    h[1::2] = -1.0 / (np.pi * n) ** 2
    response = 2 * np.real(np.fft.rfft(h))  # about |f| * 2 (f in cycles per pixel)
    if window == "hann":
        f = np.fft.rfftfreq(size)
        response *= 0.5 + 0.5 * np.cos(2 * np.pi * f)
    elif window not in ("ramp", None):
        raise ValueError(f"unknown WBP window {window!r}; use 'ramp' or 'hann'")
    return response / 2


def wbp_iter(tilt_series, angles_deg, iterations: int = 1, step=None, positivity: bool = False,
             support=None, window: str = "hann", volume_shape=None, subpixel: bool = True,
             gpu: bool = False, projector: Projector | None = None, preview_every: int = 1,
             single_axis_tol_deg: float = 0.0, convention: str = "zyx",
             extended_object: bool = False, **_ignored) -> Generator[Progress, None, np.ndarray]:
    """Weighted (filtered) back-projection: ramp-filter each image row, weight each image by
    its angular spacing, back-project.

    Filtering is along the image x axis (across the tilt axis). ``window`` is ``"hann"``
    (default, damps noise near Nyquist) or ``"ramp"``. One progress record is yielded, with the
    R1 of the result. ``iterations`` and ``step`` are accepted for a uniform call signature.
    """
    if extended_object:
        raise ValueError("extended-object mode needs an iterative method (resire or sirt), "
                         "not wbp")
    problem = _Problem(tilt_series, angles_deg, support, volume_shape, subpixel, gpu, projector,
                       single_axis_tol_deg, convention, None)
    A = problem.projector
    xp = problem.xp
    tilt_series = np.asarray(tilt_series, np.float32)
    n, ny, nx = tilt_series.shape
    response = ramp_filter(nx, window)
    size = 2 * (len(response) - 1)
    spectrum = np.fft.rfft(tilt_series, n=size, axis=-1) * response
    filtered = np.fft.irfft(spectrum, n=size, axis=-1)[..., :nx]
    filtered *= angular_weights(problem.angles[:, 1])[:, None, None]
    x = A.adjoint_native(A.to_native_projections(filtered.astype(np.float32)))
    problem.constrain(x, positivity)
    residual_l1 = float(xp.abs(A.forward_native(x) - problem.data).sum())
    yield problem.progress(1, 1, residual_l1, x, preview_every, "none")
    return problem.result(x)


# --- dispatch and plain wrappers --------------------------------------------------------------

_GENERATORS = {"resire": resire_iter, "sirt": sirt_iter, "wbp": wbp_iter}


def reconstruct_iter(method: str, tilt_series, angles_deg, **kwargs):
    """The generator of ``method`` (one of :data:`METHODS`) with these arguments."""
    if method not in _GENERATORS:
        raise ValueError(f"unknown reconstruction method {method!r}; choose one of {METHODS}")
    return _GENERATORS[method](tilt_series, angles_deg, **kwargs)


@dataclass
class ReconstructionResult:
    """Outcome of :func:`run_reconstruction`.

    ``volume`` float32 ``(nz, ny, nx)``; ``r1_history`` the R1 of every iteration, in order
    (one value for WBP); ``method``; ``parameters`` the scalar settings used (method,
    iterations, step, ..., ``gpu``, ``scheduler``); ``backend`` ``"cpu"``, ``"gpu"`` or
    ``"dask"``; ``elapsed_s`` wall-clock seconds; ``refinement`` the refined angles and
    shifts (:class:`~napari_aet.core.angle_refinement.AngleRefinement`) when angle refinement
    ran, else None.
    """

    volume: np.ndarray
    r1_history: list[float]
    method: str
    parameters: dict = field(default_factory=dict)
    backend: str = "cpu"
    elapsed_s: float = 0.0
    refinement: AngleRefinement | None = None

    @property
    def iterations(self) -> int:
        """Iterations done (1 for WBP)."""
        return len(self.r1_history)

    @property
    def r1_final(self) -> float | None:
        """R1 of the last iteration (None when none ran)."""
        return self.r1_history[-1] if self.r1_history else None


#: Keyword arguments that are arrays or objects, not settings: left out of ``parameters``.
_NOT_SETTINGS = ("support", "initial_volume", "projector", "preview_every", "cluster_kwargs")


def run_reconstruction(method: str, tilt_series, angles_deg, *, gpu: bool = False,
                       scheduler=None, n_slabs: int | None = None,
                       refine_angles_cycles: int = 0, refine_angles: str = "theta",
                       refine_rounds: int = 3, refine_shifts: bool = True, **options
                       ) -> Generator[Progress, None, ReconstructionResult]:
    """Reconstruct with ``method`` on the CPU, the GPU or Dask; a generator returning a
    :class:`ReconstructionResult`.

    ``scheduler`` (``"local"``, a scheduler address or a ``distributed.Client``) runs slabs
    along the tilt axis on Dask (:func:`napari_aet.core.dask_recon.reconstruct_dask_iter`,
    ``n_slabs`` slabs; progress counts slabs and carries no R1); otherwise ``gpu`` chooses
    CuPy or numpy and every iteration yields its R1. ``options`` are the algorithm's keyword
    arguments (:func:`resire_iter`). GPU and Dask cannot be combined.

    ``refine_angles_cycles`` > 0 alternates the reconstruction with per-image refinement of
    the angles named by ``refine_angles`` (``refine_rounds`` rounds per cycle) and, with
    ``refine_shifts``, of the shifts
    (:func:`napari_aet.core.angle_refinement.refine_and_reconstruct_iter`; the refinement
    rounds run on the CPU, the reconstructions on the CPU or the GPU; not with Dask). The
    volume is then the last reconstruction's, from the refined values, which the result's
    ``refinement`` holds; ``r1_history`` is that reconstruction's.
    """
    if method not in _GENERATORS:
        raise ValueError(f"unknown reconstruction method {method!r}; choose one of {METHODS}")
    on_dask = scheduler not in (None, "")
    if gpu and on_dask:
        raise ValueError("GPU and Dask cannot be combined: choose one")
    cycles = int(refine_angles_cycles)
    if cycles < 0:
        raise ValueError(f"refine_angles_cycles must be >= 0; got {refine_angles_cycles}")
    if cycles and on_dask:
        raise ValueError("angle refinement (refine_angles_cycles > 0) cannot run on Dask "
                         "slabs: it re-projects the whole volume; leave the scheduler out")
    if cycles and refine_angles not in REFINED_ANGLES:
        raise ValueError(f"refine_angles must be one of {REFINED_ANGLES}; got {refine_angles!r}")
    settings = {k: v for k, v in options.items() if k not in _NOT_SETTINGS}
    if cycles:
        settings.update(refine_angles_cycles=cycles, refine_angles=refine_angles,
                        refine_rounds=int(refine_rounds), refine_shifts=bool(refine_shifts))
    address = scheduler if scheduler is None or isinstance(scheduler, str) else "client"
    parameters = {"method": method, **settings, "gpu": bool(gpu), "scheduler": address}
    t0 = time.perf_counter()
    if cycles:
        from napari_aet.core.angle_refinement import refine_and_reconstruct_iter

        options.setdefault("iterations", DEFAULTS[method][0])
        volume, refinement = yield from refine_and_reconstruct_iter(
            tilt_series, angles_deg, cycles, rounds=refine_rounds, refine=refine_angles,
            refine_shifts=refine_shifts, method=method, gpu=gpu, **options)
        return ReconstructionResult(volume, list(refinement.r1_history), method, parameters,
                                    "gpu" if gpu else "cpu", time.perf_counter() - t0,
                                    refinement)
    if on_dask:
        from napari_aet.core.dask_recon import reconstruct_dask_iter

        volume, history = yield from reconstruct_dask_iter(
            method, tilt_series, angles_deg, scheduler=scheduler, n_slabs=n_slabs, **options)
        backend = "dask"
    else:
        history = []
        generator = reconstruct_iter(method, tilt_series, angles_deg, gpu=gpu, **options)
        while True:
            try:
                info = next(generator)
            except StopIteration as stop:
                volume = stop.value
                break
            history.append(float(info.r1))
            yield info
        backend = "gpu" if gpu else "cpu"
    return ReconstructionResult(np.asarray(volume, np.float32), [float(v) for v in history],
                                method, parameters, backend, time.perf_counter() - t0)


def reconstruct(method: str, tilt_series, angles_deg, callback=None, **kwargs):
    """Run ``method`` to the end (:func:`run_reconstruction`): ``(volume (nz, ny, nx)
    float32, r1_history list)``; ``callback(progress)`` is called for every yield."""
    kwargs.setdefault("preview_every", 0)
    result = run_to_completion(run_reconstruction(method, tilt_series, angles_deg, **kwargs),
                               callback)
    return result.volume, result.r1_history


def resire(tilt_series, angles_deg, **kwargs):
    """:func:`resire_iter` run to the end: ``(volume, r1_history)``."""
    return reconstruct("resire", tilt_series, angles_deg, **kwargs)


def sirt(tilt_series, angles_deg, **kwargs):
    """:func:`sirt_iter` run to the end: ``(volume, r1_history)``."""
    return reconstruct("sirt", tilt_series, angles_deg, **kwargs)


def wbp(tilt_series, angles_deg, **kwargs):
    """:func:`wbp_iter` run to the end: ``(volume, r1_history)`` (one R1 value)."""
    return reconstruct("wbp", tilt_series, angles_deg, **kwargs)
