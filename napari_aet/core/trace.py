"""Atom tracing: candidate maxima, sub-voxel refinement, species classification, minimum distance.

The method follows the published AET tracing (METHODS.md section 5), vectorised over atoms:

1. **Candidates**: local maxima of the volume (optionally smoothed, ``smooth_sigma_A``) above
   a threshold and away from the volume faces (``border_A``), pre-selected brighter first at
   the minimum distance so that refinement costs follow the atoms, not the noise maxima;
   around each, the volume is up-sampled 3x with a cubic spline (only a small patch per
   candidate, never the whole volume) and the brightest up-sampled point is the start
   position. Brightest first.
2. **Refinement**: a 4th-order 3D polynomial (35 terms) is fitted by Gaussian-weighted least
   squares to the up-sampled values in a sphere around the current position, and a Newton
   step from its quadratic part (gradient and Hessian at the current position) is taken,
   capped at ``max_step_voxels``; until ``n_small_steps`` consecutive small steps or
   ``max_iterations``. The fit samples lie on the same up-sampled grid for every atom, so
   one pseudo-inverse fits all atoms at once (a single matrix product per iteration).
   ``method="gaussian"``: a batched Levenberg-Marquardt fit of a 3D Gaussian instead.
3. **Minimum distance**: brighter (integrated intensity) first, a candidate closer than
   ``min_distance_A`` to an accepted one is rejected.
4. **Classification**: 1D k-means on integrated intensity with one cluster per species plus
   one for non-atoms, ordered by brightness (ADF intensity grows as Z^1.8), the non-atom
   boundary from a two-Gaussian mixture (noise maxima spread more than atoms); optional L1
   template test and local re-classification within a radius.
5. **Features** per atom: integrated intensity, peak height, fit residual, local blur sigma,
   nearest-neighbour distance, class margin.

Positions are returned in Angstrom in the volume frame: voxel ``i`` sits at
``i * pixel_size_A`` (see :class:`napari_aet.core.atoms.Atoms`).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage, sparse
from scipy.spatial import cKDTree

from napari_aet.core.atoms import ATOMIC_NUMBER, Atoms, normalize_symbol
from napari_aet.core.jobs import run_to_completion
from napari_aet.core.parameters import parameter
from napari_aet.core.presets import load_preset
from napari_aet.core.progress import Progress

UPSAMPLE = 3
TRACE_STAGES = ("candidates", "refine", "min_distance", "classify", "features")
METHODS = ("polynomial", "gaussian")
REFINE_CHUNK = 1024  # candidates refined between two progress yields (Cancel points)
NON_ATOM = "non-atom"

@dataclass
class TraceParameters:
    """Settings of :func:`trace_atoms` (lengths in Angstrom); a preset's ``[trace]`` table
    overrides these defaults (:meth:`from_preset`), keyword arguments override both."""

    min_distance_A: float = parameter(1.2, unit="A", min=0.3, max=10.0, label="min. distance",
                                      help="d_min: reject a candidate this close to a brighter atom")
    smooth_sigma_A: float = parameter(0.0, unit="A", min=0.0, max=5.0,
                                      help="Gaussian smoothing of the volume before the maxima "
                                           "are found (0 = off)")
    border_A: float = parameter(2.0, unit="A", min=0.0, max=50.0,
                                help="maxima this close to a volume face are ignored")
    fit_radius_A: float = parameter(0.7, unit="A", min=0.2, max=5.0, label="fit radius",
                                    help="polynomial fit sphere radius")
    integration_radius_A: float = parameter(0.8, unit="A", min=0.2, max=5.0,
                                            label="integration radius",
                                            help="sphere of the integrated intensity")
    blur_sigma_A: float = parameter(0.40, unit="A", min=0.05, max=3.0,
                                    help="expected atom blur (start of the Gaussian fit)")
    threshold_fraction: float = parameter(0.10, min=0.01, max=0.95, label="threshold fraction",
                                          help="candidates: maxima above base + fraction * "
                                               "(bright peak - base)")
    threshold: float | None = parameter(None, help="absolute candidate threshold in the volume's "
                                                   "units (replaces threshold_fraction)")
    template_test: bool = parameter(False, label="L1 template test",
                                    help="L1 test against the mean atom profile of each class")
    local_reclassify_radius_A: float = parameter(0.0, unit="A", min=0.0, max=50.0,
                                                 label="local re-class.",
                                                 help="local re-classification radius (0 = off)")
    method: str = parameter("polynomial", choices=METHODS, label="refinement",
                            help="sub-voxel refinement: 4th-order polynomial + Newton (default) "
                                 "or 3D Gaussian fit")
    max_iterations: int = parameter(14, min=1, max=200, help="most refinement iterations per atom")
    n_small_steps: int = parameter(7, min=1, max=100,
                                   help="refinement stops after this many consecutive small steps")
    small_step_voxels: float = parameter(0.01, min=0.0, max=1.0,
                                         help="a refinement step below this (voxels) is small")
    max_step_voxels: float = parameter(0.5, min=0.01, max=5.0,
                                       help="largest refinement step (voxels)")
    max_shift_voxels: float = parameter(1.5, min=0.1, max=10.0,
                                        help="largest shift from the start position (voxels)")

    @classmethod
    def from_preset(cls, preset: str | dict = "generic", **overrides) -> TraceParameters:
        """The defaults, then the preset's ``[trace]`` table, then ``overrides`` (None ignored)."""
        values = trace_parameters(preset, **overrides)
        return cls(**{name: values[name] for name in DEFAULTS})


#: The :class:`TraceParameters` a person usually sets (widget form, command line); the
#: others keep the preset's values.
MAIN_PARAMETERS = ("min_distance_A", "threshold_fraction", "integration_radius_A", "fit_radius_A",
                   "method", "template_test", "local_reclassify_radius_A")

#: Default parameters (:class:`TraceParameters`); a preset's ``[trace]`` table and keyword
#: arguments override them.
DEFAULTS = asdict(TraceParameters())


# --- input checks ---------------------------------------------------------------------------

def check_volume(volume) -> np.ndarray:
    """Validate a volume for tracing and return it as float32 ``(nz, ny, nx)``.

    Raises ``ValueError`` for a non-3D, empty, non-finite or constant volume.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"a volume to trace must be 3D (nz, ny, nx); got shape {volume.shape}")
    if volume.size == 0 or min(volume.shape) == 0:
        raise ValueError(f"the volume is empty (shape {volume.shape})")
    if min(volume.shape) < 4:
        raise ValueError(f"the volume is too small to trace (shape {volume.shape}); "
                         "every side needs at least 4 voxels")
    if not np.issubdtype(volume.dtype, np.number) or np.iscomplexobj(volume):
        raise ValueError(f"the volume must hold real numbers; got dtype {volume.dtype}")
    volume = volume.astype(np.float32, copy=False)
    if not np.all(np.isfinite(volume)):
        n_bad = int(np.size(volume) - np.count_nonzero(np.isfinite(volume)))
        raise ValueError(f"the volume contains {n_bad} NaN or infinite voxels")
    vmin, vmax = float(volume.min()), float(volume.max())
    if vmax <= vmin:
        raise ValueError(f"the volume is constant (every voxel is {vmin:g}): nothing to trace")
    return volume


def _check_pixel_size(pixel_size_A) -> float:
    try:
        px = float(pixel_size_A)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pixel size must be a number of Angstrom; got {pixel_size_A!r}") from exc
    if not np.isfinite(px) or px <= 0:
        raise ValueError(f"pixel size must be a positive number of Angstrom; got {pixel_size_A}")
    return px


def species_order(elements) -> list[str]:
    """Element symbols sorted from dimmest to brightest (by Z; 'X' alone is one species)."""
    elements = [str(e).strip() for e in elements if str(e).strip()]
    if not elements:
        raise ValueError("at least one element is needed to classify atoms")
    if elements == ["X"]:
        return ["X"]
    symbols = [normalize_symbol(e) for e in elements]
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"elements are listed twice: {', '.join(elements)}")
    return sorted(symbols, key=lambda s: ATOMIC_NUMBER[s])


def trace_parameters(preset: str | dict = "generic", **overrides) -> dict:
    """The full parameter set: defaults, then the preset's ``[trace]`` table, then overrides.

    ``elements`` comes from the preset unless given. ``None`` overrides are ignored.
    """
    preset_dict = load_preset(preset) if isinstance(preset, str) else dict(preset)
    params = dict(DEFAULTS)
    table = preset_dict.get("trace", {})
    unknown = set(table) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"preset {preset_dict.get('name', '?')!r}: unknown [trace] keys "
                         f"{', '.join(sorted(unknown))}")
    params.update(table)
    params["elements"] = list(preset_dict.get("elements", ["X"]))
    params["preset"] = preset_dict.get("name", "custom")
    for key, value in overrides.items():
        if key not in params:
            raise ValueError(f"unknown tracing parameter {key!r}; known: {', '.join(sorted(params))}")
        if value is not None:
            params[key] = value
    if isinstance(params["elements"], str):
        params["elements"] = [e for e in params["elements"].replace(" ", ",").split(",") if e]
    params["elements"] = species_order(params["elements"])
    if params["method"] not in METHODS:
        raise ValueError(f"unknown refinement method {params['method']!r}; use one of {METHODS}")
    for key in ("min_distance_A", "fit_radius_A", "integration_radius_A", "blur_sigma_A",
                "max_step_voxels", "max_shift_voxels"):
        if not float(params[key]) > 0:
            raise ValueError(f"{key} must be positive; got {params[key]}")
    for key in ("smooth_sigma_A", "border_A"):
        if not float(params[key]) >= 0:
            raise ValueError(f"{key} must be >= 0 Angstrom (0 disables it); got {params[key]}")
    if not 0 < float(params["threshold_fraction"]) < 1:
        raise ValueError(f"threshold_fraction must be in (0, 1); got {params['threshold_fraction']}")
    if float(params["local_reclassify_radius_A"]) < 0:
        raise ValueError("local_reclassify_radius_A must be >= 0 (0 disables it)")
    return params


# --- local spline up-sampling ----------------------------------------------------------------

def _bspline_weights(t: np.ndarray) -> np.ndarray:
    """Cubic B-spline weights ``(..., 4)`` for fractional offsets ``t`` in [0, 1)."""
    t = np.asarray(t, float)[..., None]
    j = np.arange(4)
    w = np.where(j == 0, (1 - t) ** 3 / 6,
                 np.where(j == 1, (3 * t**3 - 6 * t**2 + 4) / 6,
                          np.where(j == 2, (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6, t**3 / 6)))
    return w


class SplinePatches:
    """Cubic-spline values of a volume on the 3x up-sampled grid, patch by patch.

    Positions are integers ``g`` in up-sampled units (native voxel ``g / 3``). A patch is
    the set of points ``(g + kz, g + ky, g + kx) / 3`` for integer offsets ``k`` in
    ``offsets`` along each axis. Each patch needs only a small block of spline coefficients,
    so the up-sampled volume is never formed.
    """

    def __init__(self, volume: np.ndarray, margin: int = 8):
        self.margin = int(margin)
        padded = np.pad(np.asarray(volume, np.float32), self.margin, mode="reflect")
        self.coef = ndimage.spline_filter(padded, order=3, mode="mirror", output=np.float32)
        self.shape = np.asarray(volume.shape)
        self._cache: dict = {}

    def _plan(self, offsets: np.ndarray):
        key = offsets.tobytes()
        if key not in self._cache:
            starts, mats, lengths = [], [], []
            for r in range(UPSAMPLE):
                u = r + offsets
                fl = np.floor_divide(u, UPSAMPLE)
                t = (u - UPSAMPLE * fl) / UPSAMPLE
                s = int(fl.min()) - 1
                lengths.append(int(fl.max()) + 2 - s + 1)
                starts.append(s)
                mats.append((fl, t))
            length = max(lengths)
            w_all = np.zeros((UPSAMPLE, len(offsets), length))
            for r, (fl, t) in enumerate(mats):
                w = _bspline_weights(t)
                cols = (fl - 1 - starts[r])[:, None] + np.arange(4)[None]
                np.put_along_axis(w_all[r], cols, w, axis=1)
            self._cache[key] = (np.array(starts), w_all, length)
        return self._cache[key]

    def cubes(self, g: np.ndarray, offsets, chunk: int = 2048) -> np.ndarray:
        """Values ``(n, m, m, m)`` at up-sampled points ``g[:, None] + offsets`` (per axis)."""
        g = np.asarray(g, dtype=np.int64).reshape(-1, 3)
        offsets = np.asarray(offsets, dtype=np.int64)
        starts, w_all, length = self._plan(offsets)
        m = len(offsets)
        out = np.empty((len(g), m, m, m))
        lim = np.asarray(self.coef.shape) - length
        ar = np.arange(length)
        for a in range(0, len(g), chunk):
            gc = g[a:a + chunk]
            q = np.floor_divide(gc, UPSAMPLE)
            r = gc - UPSAMPLE * q
            base = np.clip(q + starts[r] + self.margin, 0, lim)
            iz = (base[:, 0, None] + ar)[:, :, None, None]
            iy = (base[:, 1, None] + ar)[:, None, :, None]
            ix = (base[:, 2, None] + ar)[:, None, None, :]
            block = self.coef[iz, iy, ix].astype(np.float64)
            n = len(gc)
            wz, wy, wx = w_all[r[:, 0]], w_all[r[:, 1]], w_all[r[:, 2]]
            t = np.matmul(wz, block.reshape(n, length, length * length)).reshape(n, m, length, length)
            t = np.matmul(wy[:, None], t)
            out[a:a + chunk] = np.matmul(t, np.swapaxes(wx, 1, 2)[:, None])
        return out


#: A fit or integration sphere samples at most about this many points per radius: wider
#: spheres (fine voxels) use every 2nd, 3rd, ... up-sampled point, which changes the least
#: squares and sums by far less than the noise but keeps the cost per atom bounded.
SAMPLES_PER_RADIUS = 5


def _sphere_offsets(radius_up: float, thin: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Integer offsets along an axis and the mask of a sphere of ``radius_up`` (up-sampled).

    With ``thin`` the offsets step by ``radius_up // SAMPLES_PER_RADIUS`` (at least 1).
    """
    k = int(np.floor(radius_up))
    stride = max(int(radius_up // SAMPLES_PER_RADIUS), 1) if thin else 1
    offs = stride * np.arange(-(k // stride), k // stride + 1)
    zz, yy, xx = np.meshgrid(offs, offs, offs, indexing="ij")
    mask = zz**2 + yy**2 + xx**2 <= radius_up**2 + 1e-9
    return offs, mask


# --- polynomial fit ----------------------------------------------------------------------------

POLY_EXPONENTS = np.array([(a, b, c) for n in range(5) for a in range(n, -1, -1)
                           for b in range(n - a, -1, -1) for c in [n - a - b]])
assert len(POLY_EXPONENTS) == 35


def _monomials(d: np.ndarray, deriv=(0, 0, 0)) -> np.ndarray:
    """Rows of (derivatives of) the 35 monomials z^a y^b x^c at offsets ``d`` ``(n, 3)``."""
    d = np.asarray(d, float).reshape(-1, 3)
    powers = d[:, :, None] ** np.arange(5)[None, None, :]  # (n, 3, 5)
    out = np.ones((len(d), len(POLY_EXPONENTS)))
    for axis in range(3):
        e = POLY_EXPONENTS[:, axis]
        k = deriv[axis]
        factor = np.ones(len(e))
        for j in range(k):
            factor = factor * (e - j)
        out *= factor[None] * powers[:, axis, np.clip(e - k, 0, 4)]
    return out


_DERIVS = {"g": [(1, 0, 0), (0, 1, 0), (0, 0, 1)],
           "h": [(2, 0, 0), (1, 1, 0), (1, 0, 1), (0, 2, 0), (0, 1, 1), (0, 0, 2)]}


def _poly_derivatives(coefs: np.ndarray, d: np.ndarray):
    """Value ``(n,)``, gradient ``(n, 3)`` and Hessian ``(n, 3, 3)`` of the polynomials at ``d``."""
    value = np.einsum("nt,nt->n", _monomials(d), coefs)
    grad = np.stack([np.einsum("nt,nt->n", _monomials(d, k), coefs) for k in _DERIVS["g"]], 1)
    hz = [np.einsum("nt,nt->n", _monomials(d, k), coefs) for k in _DERIVS["h"]]
    hess = np.stack([np.stack([hz[0], hz[1], hz[2]], -1), np.stack([hz[1], hz[3], hz[4]], -1),
                     np.stack([hz[2], hz[4], hz[5]], -1)], 1)
    return value, grad, hess


class PolynomialFitter:
    """Gaussian-weighted least squares of a 35-term polynomial on a fixed up-sampled sphere.

    The sample offsets (in native voxels) and weights are the same for every atom, so the
    fit is one matrix product ``coefs = values @ pinv.T`` for all atoms at once.
    """

    def __init__(self, radius_voxels: float):
        radius_up = max(UPSAMPLE * float(radius_voxels), 3.0)
        self.offsets_up, self.mask = _sphere_offsets(radius_up, thin=True)
        zz, yy, xx = np.meshgrid(*[self.offsets_up] * 3, indexing="ij")
        pts = np.stack([zz[self.mask], yy[self.mask], xx[self.mask]], 1) / UPSAMPLE
        self.points = pts
        sigma_w = radius_up / UPSAMPLE
        self.weights = np.exp(-np.sum(pts**2, 1) / (2 * sigma_w**2))
        design = _monomials(pts)
        self.design = design
        aw = design * self.weights[:, None]
        self.pinv = np.linalg.solve(design.T @ aw, aw.T)  # (35, m)
        # Calibration of the curvature-based blur estimate on ideal Gaussians: the fit over a
        # finite sphere flattens the peak a little; map raw estimates to true widths.
        true_s = np.linspace(0.3, 6.0, 200)
        r2 = np.sum(pts**2, 1)
        vals = np.exp(-r2[None] / (2 * true_s[:, None] ** 2))
        c = vals @ self.pinv.T
        zero = np.zeros((len(true_s), 3))
        peak, _, hess = _poly_derivatives(c, zero)
        raw = np.sqrt(-peak / (np.trace(hess, axis1=1, axis2=2) / 3))
        order = np.argsort(raw)
        self._raw_sigma, self._true_sigma = raw[order], true_s[order]

    def blur_sigma(self, peak: np.ndarray, hessian: np.ndarray) -> np.ndarray:
        """Gaussian width (voxels) from peak height and curvature, calibrated; NaN if not a peak."""
        trace_h = np.trace(hessian, axis1=1, axis2=2) / 3
        with np.errstate(divide="ignore", invalid="ignore"):
            raw = np.sqrt(np.where((trace_h < 0) & (peak > 0), -peak / trace_h, np.nan))
        return np.interp(raw, self._raw_sigma, self._true_sigma, left=np.nan, right=np.nan)

    def fit(self, patches: SplinePatches, g: np.ndarray):
        """Coefficients ``(n, 35)`` and weighted RMS residuals ``(n,)`` around grid points ``g``."""
        values = patches.cubes(g, self.offsets_up)[:, self.mask]
        coefs = values @ self.pinv.T
        resid = values - coefs @ self.design.T
        rms = np.sqrt(np.sum(self.weights * resid**2, 1) / np.sum(self.weights))
        return coefs, rms


def _newton_steps(grad: np.ndarray, hess: np.ndarray, max_step: float) -> np.ndarray:
    """Capped Newton steps towards a maximum; non-concave directions use their magnitude."""
    lam, vec = np.linalg.eigh(hess)
    scale = np.maximum(np.abs(lam).max(1, keepdims=True), 1e-12)
    lam_neg = -np.maximum(np.abs(lam), 0.05 * scale)  # force a concave model
    g_rot = np.einsum("nji,nj->ni", vec, grad)
    step = np.einsum("nij,nj->ni", vec, -g_rot / lam_neg)
    norm = np.linalg.norm(step, axis=1, keepdims=True)
    return step * np.minimum(1.0, max_step / np.maximum(norm, 1e-12))


def refine_polynomial(patches: SplinePatches, start_up: np.ndarray, radius_voxels: float,
                      max_iterations: int = 14, n_small_steps: int = 7,
                      small_step_voxels: float = 0.01, max_step_voxels: float = 0.5,
                      max_shift_voxels: float = 1.5) -> dict:
    """Refine positions by polynomial fits and capped Newton steps (all atoms at once).

    Parameters
    ----------
    start_up : ``(n, 3)`` integer start positions on the up-sampled grid (native voxel
        ``start_up / 3``).
    radius_voxels : radius of the fit sphere (native voxels; at least 1).

    Returns
    -------
    dict with ``positions`` (native voxels), ``peak``, ``residual``, ``hessian``, ``ok``
    (converged within ``max_shift_voxels`` of the start), ``iterations``, ``sigma`` (local
    Gaussian blur width in voxels from the peak curvature, calibrated on ideal Gaussians).
    """
    fitter = PolynomialFitter(radius_voxels)
    n = len(start_up)
    start = start_up / UPSAMPLE
    g = start_up.astype(np.int64).copy()
    pos = start.astype(float).copy()
    coefs = np.zeros((n, 35))
    rms = np.zeros(n)
    small = np.zeros(n, int)
    active = np.ones(n, bool)
    refit = np.ones(n, bool)
    iterations = np.zeros(n, int)
    for _ in range(int(max_iterations)):
        idx = np.flatnonzero(active & refit)
        if len(idx):
            coefs[idx], rms[idx] = fitter.fit(patches, g[idx])
        act = np.flatnonzero(active)
        if not len(act):
            break
        _, grad, hess = _poly_derivatives(coefs[act], pos[act] - g[act] / UPSAMPLE)
        step = _newton_steps(grad, hess, max_step_voxels)
        pos[act] += step
        iterations[act] += 1
        new_g = np.rint(pos[act] * UPSAMPLE).astype(np.int64)
        refit[act] = np.any(new_g != g[act], axis=1)
        g[act] = new_g
        is_small = np.linalg.norm(step, axis=1) < small_step_voxels
        small[act] = np.where(is_small, small[act] + 1, 0)
        active[act] = small[act] < n_small_steps
    idx = np.flatnonzero(refit)
    if len(idx):  # final fit around the final position for the features
        coefs[idx], rms[idx] = fitter.fit(patches, g[idx])
    peak, _, hess = _poly_derivatives(coefs, pos - g / UPSAMPLE)
    ok = np.linalg.norm(pos - start, axis=1) <= max_shift_voxels
    pos[~ok] = start[~ok]
    return dict(positions=pos, peak=peak, residual=rms, hessian=hess, ok=ok,
                iterations=iterations, sigma=fitter.blur_sigma(peak, hess))


def refine_gaussian(patches: SplinePatches, start_up: np.ndarray, radius_voxels: float,
                    sigma_voxels: float, max_iterations: int = 20,
                    max_shift_voxels: float = 1.5) -> dict:
    """Refine positions by a batched Levenberg-Marquardt fit of an isotropic 3D Gaussian.

    Model ``A exp(-|r - mu|^2 / (2 s^2)) + b`` on the up-sampled sphere of radius
    ``max(radius_voxels, 1.5 sigma_voxels)`` around each start point. Returns the same keys
    as :func:`refine_polynomial` plus ``sigma`` (voxels).
    """
    radius_up = max(UPSAMPLE * max(float(radius_voxels), 1.5 * float(sigma_voxels)), 3.0)
    offs, mask = _sphere_offsets(radius_up)
    zz, yy, xx = np.meshgrid(offs, offs, offs, indexing="ij")
    pts = np.stack([zz[mask], yy[mask], xx[mask]], 1) / UPSAMPLE  # (m, 3)
    start_up = start_up.astype(np.int64)
    values = patches.cubes(start_up, offs)[:, mask]  # (n, m)
    n = len(values)
    base = values.min(1)
    theta = np.stack([values.max(1) - base, np.zeros(n), np.zeros(n), np.zeros(n),
                      np.full(n, float(sigma_voxels)), base], 1)
    lam = np.full(n, 1e-2)

    def model(th):
        d = pts[None] - th[:, None, 1:4]
        r2 = np.sum(d**2, 2)
        s = np.abs(th[:, 4:5]) + 1e-6
        e = np.exp(-r2 / (2 * s**2))
        f = th[:, 0:1] * e + th[:, 5:6]
        jac = np.empty(d.shape[:2] + (6,))
        jac[..., 0] = e
        jac[..., 1:4] = (th[:, 0:1] * e / s**2)[..., None] * d
        jac[..., 4] = th[:, 0:1] * e * r2 / s**3
        jac[..., 5] = 1.0
        return f, jac

    f, jac = model(theta)
    cost = np.sum((values - f) ** 2, 1)
    for _ in range(int(max_iterations)):
        r = values - f
        jtj = np.matmul(np.swapaxes(jac, 1, 2), jac)
        jtr = np.einsum("nmi,nm->ni", jac, r)
        damp = jtj + lam[:, None, None] * np.einsum("nii->ni", jtj)[:, :, None] * np.eye(6)
        try:
            delta = np.linalg.solve(damp + 1e-12 * np.eye(6), jtr[..., None])[..., 0]
        except np.linalg.LinAlgError:
            delta = np.zeros_like(theta)
        trial = theta + delta
        f_t, jac_t = model(trial)
        cost_t = np.sum((values - f_t) ** 2, 1)
        better = cost_t < cost
        theta[better], f[better], jac[better], cost[better] = (trial[better], f_t[better],
                                                               jac_t[better], cost_t[better])
        lam = np.where(better, lam * 0.3, lam * 10)
    pos = start_up / UPSAMPLE + theta[:, 1:4]
    sigma = np.abs(theta[:, 4])
    ok = (np.linalg.norm(theta[:, 1:4], axis=1) <= max_shift_voxels) & (theta[:, 0] > 0)
    pos[~ok] = start_up[~ok] / UPSAMPLE
    peak = theta[:, 0] + theta[:, 5]
    hess = -(theta[:, 0] / sigma**2)[:, None, None] * np.eye(3)[None]
    return dict(positions=pos, peak=peak, residual=np.sqrt(cost / values.shape[1]),
                hessian=hess, ok=ok, sigma=sigma, iterations=np.full(n, int(max_iterations)))


# --- candidates --------------------------------------------------------------------------------

def face_margin(shape, border_voxels: float) -> np.ndarray:
    """Whole voxels ``(3,)`` ignored at each face: ``border_voxels`` rounded up, at least 1,
    at most a quarter of the side (so a small volume keeps its middle)."""
    shape = np.asarray(shape, int)
    return np.clip(int(np.ceil(float(border_voxels))), 1, np.maximum(shape // 4, 1))


def find_candidates(volume: np.ndarray, patches: SplinePatches, threshold_fraction: float = 0.1,
                    threshold: float | None = None, min_distance_voxels: float | None = None,
                    smooth_sigma_voxels: float = 1.0, border_voxels: float = 1.0):
    """Local maxima above a threshold, each moved to its brightest 3x up-sampled neighbour.

    The threshold is ``base + threshold_fraction * (bright - base)`` where ``base`` is the
    volume's median and ``bright`` the 99th percentile of local maxima above it, unless an
    absolute ``threshold`` is given. Maxima closer than ``border_voxels`` (at least 1) to a
    face of the volume are ignored. With ``min_distance_voxels`` the maxima are pre-selected
    before any up-sampling: brighter first (the volume smoothed by a Gaussian of
    ``smooth_sigma_voxels``, a cheap stand-in for the integrated intensity), a maximum closer
    than the distance to a kept one is dropped; so the cost of what follows grows with the
    number of atoms, not with the number of noise maxima. Returns integer up-sampled start
    positions ``(n, 3)`` sorted brightest first, their up-sampled peak values, and the
    threshold used.
    """
    vmax = ndimage.maximum_filter(volume, size=3, mode="nearest")
    is_max = volume == vmax
    if threshold is None:
        base = float(np.median(volume))
        peaks = volume[is_max & (volume > base)]
        if peaks.size == 0:
            raise ValueError("the volume has no local maxima above its median: nothing to trace")
        bright = float(np.percentile(peaks, 99.0))
        threshold = base + float(threshold_fraction) * (bright - base)
    b = face_margin(volume.shape, border_voxels)  # a maximum on a face is a cut, not a peak
    interior = np.zeros(volume.shape, bool)
    interior[b[0]:-b[0], b[1]:-b[1], b[2]:-b[2]] = True
    idx = np.argwhere(is_max & interior & (volume > threshold))
    if len(idx) == 0:
        return np.zeros((0, 3), np.int64), np.zeros(0), float(threshold)
    if min_distance_voxels is not None and len(idx) > 1:
        smooth = ndimage.gaussian_filter(volume, float(smooth_sigma_voxels), mode="nearest")
        idx = idx[minimum_distance_filter(idx, smooth[tuple(idx.T)], float(min_distance_voxels))]
    offs = np.arange(-UPSAMPLE, UPSAMPLE + 1)
    g0 = idx.astype(np.int64) * UPSAMPLE
    cube = patches.cubes(g0, offs).reshape(len(g0), -1)
    best = np.argmax(cube, axis=1)
    k = np.stack(np.unravel_index(best, (len(offs),) * 3), 1) - UPSAMPLE
    start = g0 + k
    peak = cube[np.arange(len(g0)), best]
    order = np.argsort(-peak, kind="stable")
    return start[order], peak[order], float(threshold)


# --- intensities, minimum distance, classification --------------------------------------------

def integrated_intensities(patches: SplinePatches, positions_vox: np.ndarray,
                           radius_voxels: float, chunk: int = 1024, profiles: bool = False):
    """Sum of the volume within a sphere (up-sampled 3x, thinned for wide spheres unless
    ``profiles``) around each position (voxel units).

    Returns intensities ``(n,)`` in volume units times voxel volume; with ``profiles``
    also the native-spaced samples inside the sphere ``(n, p)`` (for the template test).
    """
    g = np.rint(np.asarray(positions_vox) * UPSAMPLE).astype(np.int64)
    radius_up = max(UPSAMPLE * float(radius_voxels), 1.0)
    offs, mask = _sphere_offsets(radius_up, thin=not profiles)
    cell = (offs[1] - offs[0] if len(offs) > 1 else 1) ** 3 / UPSAMPLE**3  # voxels per sample
    native = (offs % UPSAMPLE) == 0
    pmask = mask & native[:, None, None] & native[None, :, None] & native[None, None, :]
    out = np.empty(len(g))
    prof = np.empty((len(g), int(pmask.sum()))) if profiles else None
    for a in range(0, len(g), chunk):
        cubes = patches.cubes(g[a:a + chunk], offs)
        out[a:a + chunk] = cubes[:, mask].sum(1) * cell
        if profiles:
            prof[a:a + chunk] = cubes[:, pmask]
    return (out, prof) if profiles else out


def minimum_distance_filter(positions_A: np.ndarray, brightness: np.ndarray,
                            min_distance_A: float) -> np.ndarray:
    """Greedy brighter-first selection: a boolean mask of kept points.

    Points are visited from the brightest; one closer than ``min_distance_A`` to an already
    kept point is rejected.
    """
    positions_A = np.asarray(positions_A, float).reshape(-1, 3)
    n = len(positions_A)
    keep = np.ones(n, bool)
    if n < 2:
        return keep
    pairs = cKDTree(positions_A).query_pairs(float(min_distance_A), output_type="ndarray")
    if len(pairs) == 0:
        return keep
    order = np.argsort(-np.asarray(brightness, float), kind="stable")
    rank = np.empty(n, int)
    rank[order] = np.arange(n)
    # Orient each conflict from the brighter to the dimmer point.
    a, b = pairs[:, 0], pairs[:, 1]
    swap = rank[a] > rank[b]
    hi, lo = np.where(swap, b, a), np.where(swap, a, b)
    adj = sparse.csr_matrix((np.ones(len(hi), bool), (hi, lo)), shape=(n, n))
    indptr, indices = adj.indptr, adj.indices
    involved = np.unique(hi)
    for i in involved[np.argsort(rank[involved])]:
        if keep[i]:
            keep[indices[indptr[i]:indptr[i + 1]]] = False
    return keep


@dataclass
class Classification:
    """Class of each candidate: 0 = non-atom, 1.. = species from dimmest to brightest.

    ``centres`` ``(k,)`` and ``boundaries`` ``(k - 1,)`` are in integrated-intensity units,
    ascending; ``margin`` ``(n,)`` in [0, 1] is 0 on a boundary and 1 at (or beyond) the
    centre of the class, relative to half the gap between the centres around the boundary.
    """

    labels: np.ndarray
    centres: np.ndarray
    boundaries: np.ndarray
    margin: np.ndarray


def kmeans_1d(values: np.ndarray, k: int, init: np.ndarray, n_iter: int = 100) -> np.ndarray:
    """Lloyd's k-means in 1D from ``init``; returns sorted centres ``(k,)``."""
    centres = np.sort(np.asarray(init, float))
    for _ in range(n_iter):
        bounds = 0.5 * (centres[1:] + centres[:-1])
        labels = np.searchsorted(bounds, values)
        counts = np.bincount(labels, minlength=k)
        sums = np.bincount(labels, values, minlength=k)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
        new = np.sort(new)
        if np.allclose(new, centres, rtol=0, atol=1e-12 * max(1.0, np.abs(centres).max())):
            break
        centres = new
    return centres


def _class_margin(values, boundaries, centres):
    if len(boundaries) == 0:
        return np.ones(len(values))
    dist = np.abs(values[:, None] - boundaries[None])
    half_gap = np.maximum(0.5 * (centres[1:] - centres[:-1]), 1e-12)
    return np.clip(np.min(dist / half_gap[None], axis=1), 0.0, 1.0)


def classify(intensities, n_species: int, boundaries=None, z_numbers=None,
             non_atom_ratio: float = 0.6) -> Classification:
    """Classify candidates by integrated intensity into non-atoms and ``n_species`` species.

    Parameters
    ----------
    intensities : ``(n,)`` integrated intensities.
    n_species : number of atom species (clusters = ``n_species + 1``).
    boundaries : optional ``(n_species,)`` ascending boundaries (e.g. dragged by the user):
        labels follow them directly and no k-means is run.
    z_numbers : optional atomic numbers of the species (dimmest first) to start k-means at
        the expected Z^1.8 brightness ratios.
    non_atom_ratio : the non-atom cluster is kept only when its centre is below this
        fraction of the dimmest species' centre; otherwise there are no distinct non-atoms
        and the non-atom boundary is half the dimmest species' centre.
    """
    values = np.asarray(intensities, float).reshape(-1)
    k = int(n_species) + 1
    if n_species < 1:
        raise ValueError("n_species must be at least 1")
    if boundaries is not None:
        boundaries = np.asarray(boundaries, float).reshape(-1)
        if len(boundaries) != k - 1:
            raise ValueError(f"{len(boundaries)} boundaries given for {k} classes; need {k - 1}")
        if np.any(np.diff(boundaries) <= 0):
            raise ValueError("class boundaries must be strictly increasing")
        labels = np.searchsorted(boundaries, values)
        edges = np.concatenate([[values.min(initial=boundaries[0]) if len(values) else boundaries[0]],
                                boundaries, [values.max(initial=boundaries[-1])
                                             if len(values) else boundaries[-1]]])
        centres = np.array([values[labels == c].mean() if np.any(labels == c)
                            else 0.5 * (edges[c] + edges[c + 1]) for c in range(k)])
        return Classification(labels, centres, boundaries,
                              _class_margin(values, boundaries, np.sort(centres)))
    if len(values) < k:
        raise ValueError(f"only {len(values)} candidate maxima for {k} classes (non-atoms + "
                         f"{n_species} species); lower the threshold or check the volume")
    if np.ptp(values) <= 0:
        raise ValueError("every candidate has the same intensity: cannot classify")
    z = (np.arange(1, k, dtype=float) if z_numbers is None
         else np.asarray(z_numbers, float).reshape(-1))
    ratio = (z / z.max()) ** 1.8
    centres = _best_kmeans(values, np.concatenate([[0.25 * ratio[0]], ratio]))
    if centres[0] > non_atom_ratio * centres[1]:
        # No distinct population of non-atoms (e.g. a noise-free volume): k-means would split
        # the dimmest species in two. Cluster the species alone; non-atoms lie below half
        # the dimmest species.
        species_centres = (_best_kmeans(values, ratio) if n_species > 1
                           else np.array([values.mean()]))
        centres = np.concatenate([[0.0], species_centres])
    bounds = 0.5 * (centres[1:] + centres[:-1])
    if centres[0] > 0:
        below = values[values < (bounds[1] if n_species > 1 else np.inf)]
        bounds[0] = _mixture_boundary(below, centres[0], centres[1])
    labels = np.searchsorted(bounds, values)
    return Classification(labels, centres, bounds, _class_margin(values, bounds, centres))


def _mixture_boundary(values: np.ndarray, lo: float, hi: float, n_iter: int = 200) -> float:
    """Non-atom / atom boundary from a two-Gaussian mixture started at k-means centres.

    Noise maxima spread much more in intensity than atoms of one species, so the
    equal-posterior point of a mixture fit (each class with its own width and weight) lies
    nearer the atoms than the k-means midpoint and keeps the noise tail out. Falls back to
    the midpoint when the fit does not give a boundary between the two centres.
    """
    mid = 0.5 * (lo + hi)
    if len(values) < 4:
        return mid
    centre = np.array([lo, hi], float)
    width = np.array([np.std(values[values < mid]), np.std(values[values >= mid])])
    width = np.maximum(np.nan_to_num(width), 1e-3 * (hi - lo))
    weight = np.array([np.mean(values < mid), np.mean(values >= mid)])
    for _ in range(n_iter):
        like = weight * np.exp(-0.5 * ((values[:, None] - centre) / width) ** 2) / width
        resp = like / np.maximum(like.sum(1, keepdims=True), 1e-300)
        weight = resp.mean(0)
        centre = (resp * values[:, None]).sum(0) / np.maximum(resp.sum(0), 1e-300)
        width = np.sqrt((resp * (values[:, None] - centre) ** 2).sum(0)
                        / np.maximum(resp.sum(0), 1e-300))
        width = np.maximum(width, 1e-3 * (hi - lo))
    if not centre[0] < centre[1]:
        return mid
    x = np.linspace(centre[0], centre[1], 2001)
    log_ratio = (np.log(weight[1] / width[1]) - 0.5 * ((x - centre[1]) / width[1]) ** 2
                 - np.log(weight[0] / width[0]) + 0.5 * ((x - centre[0]) / width[0]) ** 2)
    above = np.flatnonzero(log_ratio > 0)
    return float(x[above[0]]) if len(above) else mid


def _best_kmeans(values: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """1D k-means from several starts (expected brightness ratios, quantiles); lowest SSE."""
    k = len(ratio)
    inits = [ratio * np.percentile(values, q) for q in (99.0, 97.0, 95.0, 90.0, 80.0)]
    inits.append(np.percentile(values, np.linspace(5, 95, k)))
    best, best_sse = None, np.inf
    for init in inits:
        centres = kmeans_1d(values, k, init)
        labels = np.searchsorted(0.5 * (centres[1:] + centres[:-1]), values)
        sse = float(np.sum((values - centres[labels]) ** 2))
        if best is None or sse < best_sse * (1 - 1e-12):
            best, best_sse = centres, sse
    return best


def template_reclassify(profiles: np.ndarray, labels: np.ndarray, k: int,
                        max_rounds: int = 10) -> np.ndarray:
    """L1 template test: reassign each candidate to the class whose mean profile is nearest.

    ``profiles`` ``(n, p)`` are local samples around each candidate; templates are the mean
    profiles of the current classes; repeated until the labels stop changing.
    """
    labels = labels.copy()
    for _ in range(max_rounds):
        present = [c for c in range(k) if np.any(labels == c)]
        templates = np.stack([profiles[labels == c].mean(0) for c in present])
        dist = np.abs(profiles[:, None, :] - templates[None]).sum(2)
        new = np.asarray(present)[np.argmin(dist, 1)]
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def local_reclassify(positions_A: np.ndarray, intensities: np.ndarray, labels: np.ndarray,
                     k: int, radius_A: float, min_count: int = 3, max_rounds: int = 20) -> np.ndarray:
    """Re-classify each candidate against class means of its neighbours within ``radius_A``.

    Each class's local centre is the mean intensity of its members within the radius (the
    global mean when fewer than ``min_count``); a candidate takes the nearest local centre.
    Repeated until the labels stop changing.
    """
    labels = labels.copy()
    n = len(labels)
    if n == 0:
        return labels
    near = cKDTree(positions_A).sparse_distance_matrix(cKDTree(positions_A), radius_A,
                                                       output_type="coo_matrix")
    adj = sparse.csr_matrix((np.ones(near.nnz), (near.row, near.col)), shape=(n, n))
    adj = adj + sparse.identity(n, format="csr")
    adj.data[:] = 1.0
    for _ in range(max_rounds):
        onehot = np.zeros((n, k))
        onehot[np.arange(n), labels] = 1.0
        counts = adj @ onehot
        sums = adj @ (onehot * intensities[:, None])
        glob = np.array([intensities[labels == c].mean() if np.any(labels == c) else np.nan
                         for c in range(k)])
        local = np.where(counts >= min_count, sums / np.maximum(counts, 1), glob[None])
        dist = np.abs(intensities[:, None] - local)
        dist[np.isnan(dist)] = np.inf
        new = np.argmin(dist, 1)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


# --- the pipeline ------------------------------------------------------------------------------

@dataclass
class TraceResult:
    """Traced atoms and everything needed to revisit the classification.

    ``atoms`` holds the atoms (non-atoms removed) in Angstrom with features; ``candidates``
    every refined candidate kept by the minimum-distance rule (feature ``class_index``: 0 for
    non-atoms, then ``species`` order). ``species`` lists the elements from dimmest to
    brightest; ``centres``/``boundaries`` are the k-means results on integrated intensity.
    """

    atoms: Atoms
    candidates: Atoms
    species: list[str]
    centres: np.ndarray
    boundaries: np.ndarray
    threshold: float
    pixel_size_A: float
    parameters: dict = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return [NON_ATOM] + list(self.species)

    def relabel(self, boundaries) -> Atoms:
        """Atoms under new intensity ``boundaries`` (e.g. dragged in the histogram)."""
        cls = classify(self.candidates.features["integrated_intensity"], len(self.species),
                       boundaries=boundaries)
        return _atoms_from_candidates(self.candidates, cls.labels, cls.margin, self.species)


def _atoms_from_candidates(candidates: Atoms, labels, margin, species) -> Atoms:
    names = np.array(["X"] + list(species))
    cand = Atoms(candidates.positions, names[labels],
                 {**candidates.features, "class_index": labels, "class_margin": margin})
    atoms = cand.select(labels > 0)
    if len(atoms) > 1:
        d, _ = cKDTree(atoms.positions).query(atoms.positions, k=2)
        atoms.features["nn_distance_A"] = d[:, 1]
    else:
        atoms.features["nn_distance_A"] = np.full(len(atoms), np.inf)
    atoms.features.pop("class_index", None)
    atoms.features["source"] = np.full(len(atoms), "auto")
    return atoms


def trace_atoms(volume, pixel_size_A: float, preset: str | dict = "generic", elements=None,
                min_distance_A: float | None = None, **params) -> Generator[Progress, None, TraceResult]:
    """Trace atoms in a volume; a generator yielding progress and returning a TraceResult.

    Parameters
    ----------
    volume : ``(nz, ny, nx)`` reconstruction (any non-negative-ish intensity units).
    pixel_size_A : voxel size in Angstrom.
    preset : material preset name (see :func:`napari_aet.core.presets.preset_names`) or dict.
    elements : expected species (e.g. ``["Si", "O"]`` or ``"Si,O"``); default the preset's.
    min_distance_A : d_min in Angstrom; default the preset's.
    **params : overrides of :data:`DEFAULTS` (``fit_radius_A``, ``integration_radius_A``,
        ``threshold_fraction``, ``threshold`` (absolute), ``method``
        (``"polynomial"``/``"gaussian"``), ``template_test``, ``local_reclassify_radius_A``,
        ``max_iterations``, ``n_small_steps``, ``small_step_voxels``, ``max_step_voxels``).

    Yields
    ------
    Progress ``(step="trace", done=i, total=5, stage=name, message)`` after each stage.

    Returns
    -------
    TraceResult
    """
    px = _check_pixel_size(pixel_size_A)
    volume = check_volume(volume)
    p = trace_parameters(preset, elements=elements, min_distance_A=min_distance_A, **params)
    species = p["elements"]
    n_stages = len(TRACE_STAGES)

    def progress(i, message):
        return Progress("trace", i + 1, n_stages, stage=TRACE_STAGES[i], message=message)

    radius_fit = float(p["fit_radius_A"]) / px
    radius_int = float(p["integration_radius_A"]) / px
    margin = int(np.ceil(max(radius_fit, radius_int, 1.5 * p["blur_sigma_A"] / px,
                             p["max_shift_voxels"]))) + 6
    if float(p["smooth_sigma_A"]) > 0:
        volume = ndimage.gaussian_filter(volume, float(p["smooth_sigma_A"]) / px, mode="nearest")
    patches = SplinePatches(volume, margin=margin)
    start, _, threshold = find_candidates(volume, patches, p["threshold_fraction"], p["threshold"],
                                          min_distance_voxels=float(p["min_distance_A"]) / px,
                                          smooth_sigma_voxels=0.5 * radius_int,
                                          border_voxels=float(p["border_A"]) / px)
    if len(start) == 0:
        raise ValueError(f"no local maxima above the threshold {threshold:.4g}: lower "
                         "threshold_fraction or check the volume")
    yield progress(0, f"{len(start)} candidate maxima above {threshold:.4g}")

    parts = []
    for a in range(0, len(start), REFINE_CHUNK):  # a yield per chunk: Cancel works here too
        chunk = start[a:a + REFINE_CHUNK]
        if p["method"] == "polynomial":
            parts.append(refine_polynomial(patches, chunk, radius_fit, p["max_iterations"],
                                           p["n_small_steps"], p["small_step_voxels"],
                                           p["max_step_voxels"], p["max_shift_voxels"]))
        else:
            parts.append(refine_gaussian(patches, chunk, radius_fit, p["blur_sigma_A"] / px,
                                         max_shift_voxels=p["max_shift_voxels"]))
        if a + len(chunk) < len(start):
            yield progress(0, f"refined {a + len(chunk)} of {len(start)} candidates")
    fit = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    border = face_margin(volume.shape, float(p["border_A"]) / px)
    inside = np.all((fit["positions"] >= border)
                    & (fit["positions"] <= np.asarray(volume.shape) - 1 - border), axis=1)
    fit = {key: value[inside] for key, value in fit.items()}
    sigma_vox = fit["sigma"]
    pos_vox = fit["positions"]
    yield progress(1, f"refined {len(pos_vox)} candidates ({int(np.sum(~fit['ok']))} did not "
                      f"converge and keep their start position; {int(np.sum(~inside))} within "
                      f"{p['border_A']} A of the volume faces dropped)")

    want_profiles = bool(p["template_test"])
    got = integrated_intensities(patches, pos_vox, radius_int, profiles=want_profiles)
    intensity, profiles = got if want_profiles else (got, None)
    keep = minimum_distance_filter(pos_vox * px, intensity, float(p["min_distance_A"]))
    pos_vox, intensity = pos_vox[keep], intensity[keep]
    if profiles is not None:
        profiles = profiles[keep]
    fit = {k: v[keep] for k, v in fit.items()}
    sigma_vox = sigma_vox[keep]
    yield progress(2, f"{int(keep.sum())} candidates kept at d_min {p['min_distance_A']} A")

    z = [ATOMIC_NUMBER.get(s, 1) for s in species]
    cls = classify(intensity, len(species), z_numbers=z)
    labels = cls.labels
    k = len(species) + 1
    if profiles is not None:
        labels = template_reclassify(profiles, labels, k)
    if float(p["local_reclassify_radius_A"]) > 0:
        labels = local_reclassify(pos_vox * px, intensity, labels, k,
                                  float(p["local_reclassify_radius_A"]))
    yield progress(3, "classes: " + ", ".join(
        f"{name} {int(np.sum(labels == c))}" for c, name in enumerate([NON_ATOM] + species)))

    peak = fit["peak"]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_resid = fit["residual"] / np.abs(peak)
    candidates = Atoms(pos_vox * px, np.full(len(pos_vox), "X"), {
        "integrated_intensity": intensity,
        "peak_height": peak,
        "fit_residual": rel_resid,
        # the smoothing adds in quadrature: report the reconstruction's own blur
        "blur_sigma_A": np.sqrt(np.maximum((sigma_vox * px) ** 2
                                           - float(p["smooth_sigma_A"]) ** 2, 0.0)),
        "fit_converged": fit["ok"],
    })
    atoms = _atoms_from_candidates(candidates, labels, cls.margin, species)
    names = np.array(["X"] + species)
    candidates = Atoms(candidates.positions, names[labels],
                       {**candidates.features, "class_index": labels, "class_margin": cls.margin})
    yield progress(4, f"{len(atoms)} atoms: " + ", ".join(
        f"{e} {n}" for e, n in atoms.counts().items()))
    params_out = {k_: (list(v) if isinstance(v, (list, tuple)) else v) for k_, v in p.items()}
    return TraceResult(atoms=atoms, candidates=candidates, species=list(species),
                       centres=cls.centres, boundaries=cls.boundaries, threshold=threshold,
                       pixel_size_A=px, parameters=params_out)


def trace(volume, pixel_size_A: float, preset: str | dict = "generic", elements=None,
          min_distance_A: float | None = None, progress=None, **params) -> TraceResult:
    """Run :func:`trace_atoms` to the end; ``progress(Progress)`` is called at each stage."""
    return run_to_completion(
        trace_atoms(volume, pixel_size_A, preset, elements, min_distance_A, **params), progress)
