"""Pre-processing of tilt images: frame registration, denoising, background, normalisation.

Units: shifts and drift are pixels (``(dy, dx)``, content moves by ``+shift`` when applied,
as in :mod:`napari_aet.core.align`); intensities keep the input's units (counts when the
data are counts). Every function takes ``(n, ny, nx)`` tilt series (frame registration takes
``(n, n_frames, ny, nx)``) and returns new arrays; inputs are never modified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve

from napari_aet.core.align import apply_shifts, register_translation, validate_tilt_series
from napari_aet.core.parameters import parameter

DENOISE_METHODS = ("nlm", "tv", "bm3d", "gaussian")


# --- frame registration -------------------------------------------------------------------

@dataclass
class FrameRegistration:
    """Result of :func:`register_frames`.

    ``average`` float32 ``(n, ny, nx)``: drift-corrected frames combined (their sum, which
    keeps counts Poisson, or their mean), in the position of the first frame;
    ``drift_px_per_frame`` ``(n, 2)`` fitted linear drift (dy, dx) per
    frame; ``frame_shifts_px`` ``(n, n_frames, 2)`` the shifts applied to each frame
    (``-f * drift``); ``speed_px_per_frame`` ``(n,)`` and ``direction_deg`` ``(n,)`` (angle
    of the drift in the (x, y) plane, counter-clockwise from +x).
    """

    average: np.ndarray
    drift_px_per_frame: np.ndarray
    frame_shifts_px: np.ndarray

    @property
    def speed_px_per_frame(self) -> np.ndarray:
        return np.linalg.norm(self.drift_px_per_frame, axis=1)

    @property
    def direction_deg(self) -> np.ndarray:
        return np.rad2deg(np.arctan2(self.drift_px_per_frame[:, 0], self.drift_px_per_frame[:, 1]))


def register_frames(frames, upsample: int = 100, combine: str = "sum") -> FrameRegistration:
    """Register sequential frames per tilt angle with a linear drift model, then average.

    Every pair of frames ``(f, g)`` is registered by sub-pixel normalised cross-correlation;
    the drift ``v`` (pixels/frame) is the least-squares fit of ``d_fg = (g - f) v`` over all
    pairs. Each frame is resampled (Fourier shift) by ``-f v`` onto the first frame's position
    and the frames are averaged.

    Parameters
    ----------
    frames : ``(n, n_frames, ny, nx)`` (or ``(n_frames, ny, nx)`` for one angle).
    upsample : sub-pixel precision of the registration, 1/``upsample`` pixel.
    combine : ``'sum'`` (total counts, default: keeps Poisson statistics for denoising) or
        ``'mean'``.
    """
    if combine not in ("sum", "mean"):
        raise ValueError(f"combine must be 'sum' or 'mean'; got {combine!r}")
    stack = np.asarray(frames)
    single = stack.ndim == 3
    if single:
        stack = stack[None]
    if stack.ndim != 4:
        raise ValueError(f"frames must be (n, n_frames, ny, nx); got shape {np.shape(frames)}")
    n, n_frames = stack.shape[:2]
    if n_frames < 2:
        raise ValueError("frame registration needs at least 2 frames per tilt angle")
    if not np.all(np.isfinite(stack)):
        raise ValueError("the frames contain NaN or infinite pixels")
    stack = stack.astype(np.float64)
    pairs = [(f, g) for f in range(n_frames) for g in range(f + 1, n_frames)]
    lag = np.array([g - f for f, g in pairs], float)
    drift = np.zeros((n, 2))
    for k in range(n):
        # shift to apply to frame g to match frame f is -(g - f) v
        d = np.array([-register_translation(stack[k, f], stack[k, g], upsample) for f, g in pairs])
        drift[k] = lag @ d / (lag @ lag)
    steps = np.arange(n_frames, dtype=float)
    frame_shifts = -steps[None, :, None] * drift[:, None, :]
    corrected = apply_shifts(stack.reshape(n * n_frames, *stack.shape[2:]),
                             frame_shifts.reshape(-1, 2)).reshape(stack.shape)
    average = (corrected.sum(axis=1) if combine == "sum" else corrected.mean(axis=1)).astype(np.float32)
    if single:
        return FrameRegistration(average[0], drift[0], frame_shifts[0])
    return FrameRegistration(average, drift, frame_shifts)


# --- denoising ------------------------------------------------------------------------------

def anscombe(counts):
    """Anscombe variance-stabilising transform ``2 sqrt(x + 3/8)`` (Poisson -> unit variance)."""
    return 2.0 * np.sqrt(np.maximum(np.asarray(counts, float), 0.0) + 3.0 / 8.0)


def inverse_anscombe(values):
    """Closed-form asymptotically unbiased inverse of :func:`anscombe` (Makitalo & Foi 2011)."""
    y = np.maximum(np.asarray(values, float), 1e-3)
    s = np.sqrt(1.5)
    return np.maximum(0.25 * y**2 + 0.25 * s / y - 11.0 / 8.0 / y**2 + 0.625 * s / y**3 - 0.125, 0.0)


def estimate_noise_sigma(tilt_series, poisson: bool = False) -> np.ndarray:
    """Gaussian noise standard deviation per image from the finest wavelet band.

    Donoho's robust estimate ``median(|HH|) / 0.6745`` of the diagonal Haar detail
    coefficients (the estimator of ``skimage.restoration.estimate_sigma``, without needing
    PyWavelets); 2 x 2 blocks of identical pixels (noise-free vacuum) are left out. With
    ``poisson`` it is computed after the Anscombe transform (then about 1).
    Returns ``(n,)`` in the image's intensity units (Anscombe units with ``poisson``).
    """
    series, _ = validate_tilt_series(tilt_series, min_images=1)
    if poisson:
        series = anscombe(series)
    n, ny, nx = series.shape
    s = series[:, :ny // 2 * 2, :nx // 2 * 2]
    blocks = np.stack([s[:, 0::2, 0::2], s[:, 0::2, 1::2], s[:, 1::2, 0::2], s[:, 1::2, 1::2]])
    hh = np.abs(blocks[0] - blocks[1] - blocks[2] + blocks[3]) / 2.0
    flat = np.ptp(blocks, axis=0) == 0  # noise-free pixels (empty simulated vacuum)
    sigma = np.zeros(n)
    for k in range(n):
        values = hh[k][~flat[k]]
        sigma[k] = np.median(values) / 0.6745 if values.size else 0.0
    return sigma


def _bm3d():
    try:
        import bm3d
    except ImportError as exc:
        raise ImportError("BM3D denoising needs the optional 'bm3d' package: "
                          "pip install 'napari-aet[bm3d]' (or pip install bm3d); "
                          "method='nlm' needs nothing extra") from exc
    return bm3d


def denoise(tilt_series, method: str = "nlm", strength: float = 1.0, poisson: bool | None = None,
            progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Denoise every image; strength follows the estimated noise level.

    Parameters
    ----------
    method : ``'nlm'`` (scikit-image non-local means), ``'tv'`` (total variation,
        Chambolle), ``'gaussian'`` (blur of ``strength`` pixels, a quick baseline) or
        ``'bm3d'`` (optional ``bm3d`` package).
    strength : multiplier of the default filter strength (1 = tuned to the noise estimate).
    poisson : treat the data as counts (Anscombe transform before, exact unbiased inverse
        after). Default: True when every pixel is a non-negative integer.
    progress : optional callable ``progress(k, n)`` after each image.

    Returns
    -------
    denoised : float32 ``(n, ny, nx)`` in the input's units.
    sigma : ``(n,)`` estimated noise standard deviation used (Anscombe units if ``poisson``).
    """
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

    if method not in DENOISE_METHODS:
        raise ValueError(f"unknown denoising method {method!r}; choose one of {DENOISE_METHODS}")
    if not strength > 0:
        raise ValueError(f"strength must be positive; got {strength}")
    series, _ = validate_tilt_series(tilt_series, min_images=1)
    if poisson is None:
        poisson = bool(np.all(series >= 0) and np.all(series == np.round(series)))
    if method == "bm3d":
        bm3d = _bm3d()
    work = anscombe(series) if poisson else series
    sigma = estimate_noise_sigma(work)
    out = np.empty_like(work)
    for k, image in enumerate(work):
        s = max(sigma[k], 1e-12)
        if method == "nlm":
            out[k] = denoise_nl_means(image, h=0.8 * strength * s, sigma=s, patch_size=5,
                                      patch_distance=6, fast_mode=True)
        elif method == "tv":
            out[k] = denoise_tv_chambolle(image, weight=0.5 * strength * s)
        elif method == "gaussian":
            out[k] = ndimage.gaussian_filter(image, strength)
        else:
            out[k] = bm3d.bm3d(image, sigma_psd=strength * s)
        if progress is not None:
            progress(k + 1, len(work))
    if poisson:
        out = inverse_anscombe(out)
        # keep each image's total counts (the inverse transform is biased near zero counts)
        totals = out.sum(axis=(1, 2))
        scale = series.sum(axis=(1, 2)) / np.where(totals > 0, totals, 1)
        out *= np.where(totals > 0, scale, 1.0)[:, None, None]
    return out.astype(np.float32), sigma


# --- background -----------------------------------------------------------------------------

def particle_mask(image, threshold: float | None = None, smooth_px: float = 2.0,
                  dilation_px: int = 4, otsu_fraction: float = 1.0) -> np.ndarray:
    """Boolean mask ``(ny, nx)`` of the particle in one image.

    The image is smoothed (Gaussian, ``smooth_px``), thresholded (Otsu unless ``threshold``
    is given, in the image's units; ``otsu_fraction`` times Otsu's level), holes are filled,
    the largest connected region is kept and dilated by ``dilation_px`` pixels. Raises
    ValueError when nothing is found.
    """
    from skimage.filters import threshold_otsu

    image = np.asarray(image, float)
    smooth = ndimage.gaussian_filter(image, smooth_px) if smooth_px > 0 else image
    level = otsu_fraction * threshold_otsu(smooth) if threshold is None else float(threshold)
    mask = ndimage.binary_fill_holes(smooth > level)
    labels, count = ndimage.label(mask)
    if count == 0:
        raise ValueError("no particle found in the image (the mask is empty): lower the threshold "
                         "or draw a mask")
    sizes = ndimage.sum_labels(mask, labels, np.arange(1, count + 1))
    mask = labels == (1 + int(np.argmax(sizes)))
    if dilation_px > 0:
        mask = ndimage.binary_dilation(mask, iterations=int(dilation_px))
    return mask


def laplace_inpaint(image, mask) -> np.ndarray:
    """Fill the pixels under ``mask`` by solving Laplace's equation from the values outside.

    The 5-point discrete Laplacian is zero at every masked pixel, with the unmasked pixels
    as Dirichlet boundary values (reflecting boundary at the image edge); one sparse linear
    solve. Returns a float64 ``(ny, nx)`` image equal to ``image`` outside the mask.
    """
    image = np.asarray(image, float)
    mask = np.asarray(mask, bool)
    if mask.shape != image.shape:
        raise ValueError(f"mask {mask.shape} does not match the image {image.shape}")
    if not mask.any():
        return image.copy()
    if mask.all():
        raise ValueError("the mask covers the whole image: no background left to inpaint from")
    ny, nx = image.shape
    index = -np.ones(image.shape, int)
    ys, xs = np.nonzero(mask)
    m = len(ys)
    index[ys, xs] = np.arange(m)
    rows, cols, vals = [], [], []
    rhs = np.zeros(m)
    degree = np.zeros(m)
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        y2, x2 = ys + dy, xs + dx
        inside = (y2 >= 0) & (y2 < ny) & (x2 >= 0) & (x2 < nx)
        degree += inside
        y2c, x2c = np.clip(y2, 0, ny - 1), np.clip(x2, 0, nx - 1)
        neighbour = np.where(inside, index[y2c, x2c], -1)
        unknown = inside & (neighbour >= 0)
        known = inside & (neighbour < 0)
        rows.append(np.nonzero(unknown)[0])
        cols.append(neighbour[unknown])
        vals.append(-np.ones(unknown.sum()))
        rhs[known] += image[y2c[known], x2c[known]]
    rows.append(np.arange(m))
    cols.append(np.arange(m))
    vals.append(degree)
    matrix = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(m, m))
    out = image.copy()
    out[ys, xs] = spsolve(matrix.tocsc(), rhs, permc_spec="MMD_AT_PLUS_A")  # symmetric matrix
    return out


def _series_masks(series: np.ndarray, mask, threshold, dilation_px, smooth_px) -> np.ndarray:
    n = len(series)
    if mask is None:
        return np.stack([particle_mask(img, threshold, smooth_px, dilation_px) for img in series])
    mask = np.asarray(mask)
    if mask.ndim == 2 and mask.shape == series.shape[1:]:
        mask = np.broadcast_to(mask, series.shape)
    if mask.shape != series.shape:
        raise ValueError(f"mask {mask.shape} does not match the tilt series {series.shape}")
    mask = mask.astype(bool)
    empty = [k for k in range(n) if not mask[k].any()]
    if empty:
        raise ValueError(f"the particle mask is empty for images {empty[:10]}: draw the particle "
                         "(or let the mask be found automatically)")
    return mask


def subtract_background(tilt_series, mask=None, threshold: float | None = None,
                        dilation_px: int = 12, smooth_px: float = 3.0,
                        background_smooth_px: float = 3.0, mask_iterations: int = 2,
                        refine_fraction: float = 1.0,
                        progress=None):
    """Estimate a smooth background under the particle and subtract it.

    Outside the particle mask the background is the image smoothed over
    ``background_smooth_px`` pixels (normalised convolution of the outside pixels only);
    under the mask it is the solution of Laplace's equation with those values as boundary
    (:func:`laplace_inpaint`).

    Parameters
    ----------
    mask : optional ``(ny, nx)`` or ``(n, ny, nx)`` boolean particle mask (a user's Labels
        layer); default: :func:`particle_mask` of each image.
    threshold, dilation_px, smooth_px : for the automatic mask (image units, pixels).
    mask_iterations : times the automatic mask is re-found on the corrected image, at
        ``refine_fraction`` of its Otsu level (on a background-free image Otsu's level
        splits thick from thin parts of the particle; a lower level keeps its rim).
    progress : optional callable ``progress(k, n)``.

    Returns
    -------
    corrected : float32 ``(n, ny, nx)``; background : float32 ``(n, ny, nx)``;
    masks : bool ``(n, ny, nx)``.
    """
    series, _ = validate_tilt_series(tilt_series, min_images=1)
    masks = _series_masks(series, mask, threshold, dilation_px, smooth_px)
    if mask is None:
        # refine the automatic mask on the background-corrected image (a strong or uneven
        # film background makes the first threshold too generous)
        for _ in range(mask_iterations):
            corrected = series - _background(series, masks, background_smooth_px)
            masks = np.stack([particle_mask(img, threshold, smooth_px, dilation_px,
                                            otsu_fraction=refine_fraction)
                              for img in corrected])
    background = _background(series, masks, background_smooth_px, progress)
    return (series - background).astype(np.float32), background.astype(np.float32), masks


def _background(series, masks, background_smooth_px, progress=None) -> np.ndarray:
    background = np.empty_like(series)
    for k, (image, m) in enumerate(zip(series, masks)):
        if m.all():
            raise ValueError(f"the particle mask of image {k} covers the whole image: no "
                             "background left to estimate")
        outside = (~m).astype(float)
        if background_smooth_px > 0:
            num = ndimage.gaussian_filter(image * outside, background_smooth_px, mode="reflect")
            den = ndimage.gaussian_filter(outside, background_smooth_px, mode="reflect")
            smooth = np.where(den > 1e-3, num / np.maximum(den, 1e-3), 0.0)
        else:
            smooth = image
        background[k] = laplace_inpaint(np.where(m, 0.0, smooth), m)
        if progress is not None:
            progress(k + 1, len(series))
    return background


#: Background settings of the alignment front-ends (command line, widget, ``napari-aet run``):
#: a wide mask margin keeps the particle's tails out of the film estimate, strong smoothing
#: of the film outside the mask keeps its shot noise out of the inpainted background, and one
#: mask refinement is as accurate as two (measured on simulated film data) and faster.
ALIGN_BACKGROUND = {"dilation_px": 20, "background_smooth_px": 16.0, "mask_iterations": 1}
BACKGROUND_MODES = ("auto", "on", "off")


@dataclass
class PreprocessParameters:
    """Preprocessing before alignment: denoising, background subtraction, normalisation."""

    denoise: str = parameter("none", choices=("none", *DENOISE_METHODS),
                             help="denoise first (Anscombe transform for counts); bm3d needs "
                                  "the optional bm3d package")
    denoise_strength: float = parameter(1.0, min=0.05, max=10.0,
                                        help="multiplier of the filter strength tuned to the "
                                             "noise estimate")
    background: str = parameter("auto", choices=BACKGROUND_MODES,
                                help="Laplace-equation inpainting of the background under the "
                                     "particle mask; auto: only when a support film is detected")
    normalize: bool = parameter(False, label="normalise to equal totals",
                                help="scale every image to the same total intensity (after "
                                     "background subtraction)")


def film_level(tilt_series, border_px: int = 8) -> np.ndarray:
    """Support-film level of each image: the mean of its outer ``border_px`` pixels over its
    99.9th-percentile intensity (the particle's peak); 0 for vacuum, ``(n,)``."""
    series, _ = validate_tilt_series(tilt_series, min_images=1)
    b = int(border_px)
    if b < 1 or 2 * b >= min(series.shape[1:]):
        raise ValueError(f"border of {border_px} px does not fit images of {series.shape[1:]}")
    frame = np.ones(series.shape[1:], bool)
    frame[b:-b, b:-b] = False
    peak = np.percentile(series.reshape(len(series), -1), 99.9, axis=1)
    return series[:, frame].mean(axis=1) / np.where(peak > 0, peak, 1.0)


def detect_film(tilt_series, min_level: float = 0.005) -> tuple[bool, float]:
    """Whether the images sit on a support film (or any pedestal): the median
    :func:`film_level` over the series exceeds ``min_level``. Returns ``(found, level)``."""
    level = float(np.median(film_level(tilt_series)))
    return level > min_level, level


def background_for_alignment(tilt_series, mode: str = "auto", mask=None, progress=None):
    """The alignment's background step: ``'auto'`` subtracts when :func:`detect_film` finds a
    film, ``'on'`` always, ``'off'`` never; settings :data:`ALIGN_BACKGROUND` (a ``mask``
    replaces the automatic particle mask).

    Returns
    -------
    corrected : float32 ``(n, ny, nx)`` (the input when nothing was subtracted);
    background : float32 ``(n, ny, nx)`` or None; masks : bool ``(n, ny, nx)`` particle masks or
    None; level : the median film level (fraction of the particle's peak).
    """
    if mode not in BACKGROUND_MODES:
        raise ValueError(f"background must be one of {BACKGROUND_MODES}; got {mode!r}")
    series, _ = validate_tilt_series(tilt_series, min_images=1)
    found, level = detect_film(series)
    if mode == "off" or (mode == "auto" and not found):
        return series.astype(np.float32), None, None, level
    corrected, background, masks = subtract_background(series, mask=mask, progress=progress,
                                                       **ALIGN_BACKGROUND)
    return corrected, background, masks, level


def normalize_intensity(tilt_series, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Scale each image so its total intensity equals the series mean (background-free data).

    The projection of one object has the same total intensity at every tilt angle, so
    differences come from dose or detector gain. With ``mask`` only masked pixels count.

    Returns
    -------
    normalised : float32 ``(n, ny, nx)``; factors : ``(n,)`` the multipliers applied.
    """
    series, _ = validate_tilt_series(tilt_series, min_images=1)
    weights = series if mask is None else series * _series_masks(series, mask, None, 0, 0)
    totals = weights.sum(axis=(1, 2))
    if np.any(totals <= 0):
        bad = np.nonzero(totals <= 0)[0]
        raise ValueError(f"images {bad[:10].tolist()} have no positive total intensity; "
                         "subtract the background first or check the mask")
    factors = totals.mean() / totals
    return (series * factors[:, None, None]).astype(np.float32), factors
