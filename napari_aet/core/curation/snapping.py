"""Snapping a click to an atom: sub-voxel maxima of the volume, rays, nearest atoms.

:func:`snap_to_maximum` and :func:`brightest_along_ray` refine a click (2D) or a view ray
(3D) to the sub-voxel intensity maximum with the local quadratic fit of
:func:`refine_positions`; :func:`local_maxima` lists the peaks of a whole volume.

Positions are in Angstrom in the frame of the volume: voxel ``i`` sits at ``i * pixel_size_A``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def as_position(position) -> np.ndarray:
    """One position (z, y, x) Angstrom as a float array; raises ``ValueError`` otherwise."""
    p = np.asarray(position, dtype=float).reshape(-1)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise ValueError(f"a position must be 3 finite numbers (z, y, x) in Angstrom; got {position!r}")
    return p


def _offsets27() -> np.ndarray:
    g = np.arange(-1, 2)
    return np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)


_OFF27 = _offsets27()
_DESIGN = np.column_stack([
    np.ones(27), _OFF27[:, 0], _OFF27[:, 1], _OFF27[:, 2],
    _OFF27[:, 0] ** 2, _OFF27[:, 1] ** 2, _OFF27[:, 2] ** 2,
    _OFF27[:, 0] * _OFF27[:, 1], _OFF27[:, 0] * _OFF27[:, 2], _OFF27[:, 1] * _OFF27[:, 2],
])
# centre-weighted least squares (Gaussian weight, sigma 1 voxel): neighbours' tails in the
# corners of the 3 x 3 x 3 box matter less
_WEIGHT = np.exp(-0.5 * np.sum(_OFF27**2, axis=1))
_PINV = np.linalg.pinv(_DESIGN * _WEIGHT[:, None]) * _WEIGHT[None, :]  # (10, 27)


def check_volume(volume, pixel_size_A):
    """``volume`` as an array after checking it is 3D and ``pixel_size_A`` > 0 Angstrom."""
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"a volume must be (nz, ny, nx); got shape {volume.shape}")
    if pixel_size_A is None or not np.isfinite(pixel_size_A) or pixel_size_A <= 0:
        raise ValueError(f"pixel size must be a positive number of Angstrom; got {pixel_size_A}")
    return volume


def _quadratic_step(volume, centre):
    """Newton step (voxels) to the maximum of a quadratic fitted around integer ``centre``.

    Returns (step (n, 3), ok (n,)); ``ok`` is False where the fit is not concave.
    """
    idx = centre[:, None, :] + _OFF27[None]
    vals = volume[idx[..., 0], idx[..., 1], idx[..., 2]].astype(float)  # (n, 27)
    vmax = vals.max(axis=1, keepdims=True)
    vmin = vals.min(axis=1, keepdims=True)
    use_log = (vmin > 0.05 * vmax) & (vmax > 0)
    fit_vals = np.where(use_log, np.log(np.where(use_log, vals, 1.0)), vals)
    c = fit_vals @ _PINV.T  # (n, 10)
    grad = c[:, 1:4]
    hess = np.empty((len(c), 3, 3))
    hess[:, 0, 0], hess[:, 1, 1], hess[:, 2, 2] = 2 * c[:, 4], 2 * c[:, 5], 2 * c[:, 6]
    hess[:, 0, 1] = hess[:, 1, 0] = c[:, 7]
    hess[:, 0, 2] = hess[:, 2, 0] = c[:, 8]
    hess[:, 1, 2] = hess[:, 2, 1] = c[:, 9]
    ok = np.all(np.linalg.eigvalsh(hess) < -1e-12, axis=1)
    step = np.zeros_like(grad)
    if ok.any():
        step[ok] = -np.linalg.solve(hess[ok], grad[ok][..., None])[..., 0]
    return step, ok


def refine_positions(volume, positions_A, pixel_size_A: float, iterations: int = 12,
                     window_vox: int = 2) -> np.ndarray:
    """Refine positions to the sub-voxel intensity maximum of ``volume``.

    Two stages, vectorised over all positions:

    1. mean shift: each position moves to the centroid of the (positive) intensity in a
       ``(2 w + 1)^3`` window weighted by a Gaussian of one voxel around it, ``iterations``
       times; for a Gaussian atom the fixed point is the atom centre, and neighbours'
       tails pull it far less than a plain window maximum;
    2. polish: a 10-term quadratic fitted by centre-weighted least squares to the 3 x 3 x 3
       neighbourhood (to the logarithm of the intensity when positive there, exact for a
       Gaussian atom); its maximum replaces the mean-shift estimate when the fit is concave
       and the maximum lies within half a voxel of the fitted centre.

    Parameters
    ----------
    volume : (nz, ny, nx) array.
    positions_A : (n, 3) starting positions (z, y, x), Angstrom.
    pixel_size_A : voxel size, Angstrom.

    Returns
    -------
    (n, 3) refined positions, Angstrom.
    """
    volume = check_volume(volume, pixel_size_A)
    pos = np.asarray(positions_A, float).reshape(-1, 3) / pixel_size_A
    shape = np.array(volume.shape)
    w = int(window_vox)
    if np.any(shape < 2 * w + 1):
        raise ValueError(f"volume {volume.shape} is too small to refine positions")
    g = np.arange(-w, w + 1)
    offs = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    for _ in range(iterations):
        centre = np.clip(np.round(pos).astype(int), w, shape - 1 - w)
        idx = centre[:, None, :] + offs[None]
        vals = np.maximum(volume[idx[..., 0], idx[..., 1], idx[..., 2]].astype(float), 0)
        d2 = np.sum((idx - pos[:, None, :]) ** 2, axis=-1)
        wts = vals * np.exp(-0.5 * d2)
        total = wts.sum(axis=1)
        good = total > 0
        new = pos.copy()
        new[good] = np.einsum("nk,nkd->nd", wts[good], idx[good]) / total[good, None]
        moved = np.max(np.abs(new - pos))
        pos = np.clip(new, 0, shape - 1)
        if moved < 1e-4:
            break
    centre = np.clip(np.round(pos).astype(int), 1, shape - 2)
    step, ok = _quadratic_step(volume, centre)
    ok &= np.all(np.abs(step) <= 0.5 + 1e-9, axis=1)
    pos[ok] = centre[ok] + step[ok]
    return pos * pixel_size_A


def sample_volume(volume, positions_A, pixel_size_A: float, smooth: bool = True) -> np.ndarray:
    """Local intensity at positions (Angstrom): trilinear value, averaged with the six
    points half a voxel away along each axis when ``smooth`` (a light low-pass)."""
    volume = check_volume(volume, pixel_size_A)
    pos = np.asarray(positions_A, float).reshape(-1, 3) / pixel_size_A
    if len(pos) == 0:
        return np.zeros(0)
    offsets = [np.zeros(3)]
    if smooth:
        for axis in range(3):
            for s in (-0.5, 0.5):
                o = np.zeros(3)
                o[axis] = s
                offsets.append(o)
    pts = np.concatenate([pos + o for o in offsets])
    vals = ndimage.map_coordinates(np.asarray(volume, np.float32), pts.T, order=1,
                                   mode="nearest")
    return vals.reshape(len(offsets), len(pos)).mean(axis=0)


def snap_to_maximum(volume, position_A, pixel_size_A: float, radius_A: float = 1.0) -> np.ndarray:
    """The sub-voxel intensity maximum near ``position_A`` (a click), in Angstrom.

    The brightest voxel within ``radius_A`` of the click is found first; from there the
    search climbs voxel by voxel to the local maximum of the volume (so a click on the
    slope of an atom, or a voxel of the slope, reaches its peak), and the quadratic fit of
    :func:`refine_positions` gives the sub-voxel position of that maximum. Where the fit
    fails (flat or noisy neighbourhood), the mean-shift refinement is used instead.
    """
    volume = check_volume(volume, pixel_size_A)
    shape = np.array(volume.shape)
    if np.any(shape < 3):
        raise ValueError(f"volume {volume.shape} is too small to snap to a maximum")
    p = as_position(position_A) / pixel_size_A
    r = max(radius_A / pixel_size_A, 0.5)
    lo = np.maximum(np.floor(p - r).astype(int), 0)
    hi = np.minimum(np.ceil(p + r).astype(int) + 1, volume.shape)
    if np.any(hi <= lo):
        raise ValueError(f"position {tuple(np.round(position_A, 2))} A is outside the volume")
    block = np.asarray(volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], float)
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
    d2 = np.sum((grid - p) ** 2, axis=-1)
    inside = d2 <= r * r
    if not inside.any():
        inside = np.ones(block.shape, bool)
    # brightest voxel, mildly favouring those nearest the click
    masked = np.where(inside, block * np.exp(-0.5 * d2 / (r * r)), -np.inf)
    voxel = np.array(np.unravel_index(np.argmax(masked), block.shape)) + lo
    # climb to the local maximum (interior voxels, so the 3 x 3 x 3 fit has its neighbours)
    voxel = np.clip(voxel, 1, shape - 2)
    for _ in range(int(np.ceil(2 * r)) + 4):
        idx = voxel[None] + _OFF27
        idx = idx[np.all((idx >= 1) & (idx <= shape - 2), axis=1)]
        vals = np.asarray(volume[idx[:, 0], idx[:, 1], idx[:, 2]], float)
        top = idx[int(np.argmax(vals))]
        if np.array_equal(top, voxel) or vals.max() <= float(volume[tuple(voxel)]):
            break
        voxel = top
    step, ok = _quadratic_step(volume, voxel[None])
    if ok[0] and np.all(np.abs(step[0]) <= 0.5 + 1e-9):
        return (voxel + step[0]) * pixel_size_A
    return refine_positions(volume, (voxel * pixel_size_A)[None], pixel_size_A)[0]


def brightest_along_ray(volume, pixel_size_A: float, start_A, end_A, step_A: float | None = None,
                        radius_A: float = 1.0):
    """The brightest point along a view ray through the volume, refined (Angstrom).

    Parameters
    ----------
    start_A, end_A : (3,) ends of the ray inside the volume (z, y, x), Angstrom.
    step_A : sampling step along the ray (default a quarter voxel).

    Returns
    -------
    (position (3,) Angstrom, intensity) or ``(None, None)`` when the ray sees nothing.
    """
    volume = check_volume(volume, pixel_size_A)
    a, b = as_position(start_A), as_position(end_A)
    step = step_A or pixel_size_A / 4
    n = max(int(np.ceil(np.linalg.norm(b - a) / step)) + 1, 2)
    pts = a[None] + np.linspace(0, 1, n)[:, None] * (b - a)[None]
    vals = sample_volume(volume, pts, pixel_size_A, smooth=False)
    if not np.any(vals > 0):
        return None, None
    k = int(np.argmax(vals))
    pos = snap_to_maximum(volume, pts[k], pixel_size_A, radius_A=min(radius_A, 2 * pixel_size_A))
    return pos, float(sample_volume(volume, pos[None], pixel_size_A, smooth=False)[0])


def nearest_atom(positions_A, point_A, max_distance_A: float = np.inf):
    """Row of the atom nearest to ``point_A`` within ``max_distance_A``, or None."""
    positions_A = np.asarray(positions_A, float).reshape(-1, 3)
    if len(positions_A) == 0:
        return None
    d2 = np.sum((positions_A - as_position(point_A)) ** 2, axis=1)
    row = int(np.argmin(d2))
    return row if d2[row] <= max_distance_A**2 else None


def nearest_to_ray(positions_A, origin_A, direction, max_distance_A: float = np.inf):
    """Row of the atom nearest to the line ``origin + t * direction``, or None.

    Distance is the perpendicular distance to the ray (Angstrom); ties go to the atom
    nearest the viewer (smallest ``t``).
    """
    positions_A = np.asarray(positions_A, float).reshape(-1, 3)
    if len(positions_A) == 0:
        return None
    d = np.asarray(direction, float).reshape(3)
    norm = np.linalg.norm(d)
    if norm == 0:
        raise ValueError("view direction is zero")
    d = d / norm
    rel = positions_A - as_position(origin_A)
    t = rel @ d
    perp = np.sum(rel**2, axis=1) - t**2
    perp = np.sqrt(np.maximum(perp, 0))
    best = np.lexsort((t, np.round(perp, 6)))[0]
    return int(best) if perp[best] <= max_distance_A else None


# --- review queue ---------------------------------------------------------------------------


def local_maxima(volume, level: float, pixel_size_A: float) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima (3 x 3 x 3) of ``volume`` above ``level``, refined; (positions_A, values)."""
    volume = check_volume(volume, pixel_size_A)
    vol = np.asarray(volume, np.float32)
    above = vol > level
    if not above.any():
        return np.zeros((0, 3)), np.zeros(0)
    # only look inside the bounding box of voxels above the level
    box = ndimage.find_objects(above.astype(np.int8))[0]
    lo = [max(s.start - 1, 0) for s in box]
    sub = vol[tuple(slice(a, min(s.stop + 1, n)) for a, s, n in zip(lo, box, vol.shape))]
    peaks = (sub == ndimage.maximum_filter(sub, size=3, mode="nearest")) & (sub > level)
    idx = np.argwhere(peaks) + np.array(lo)
    # cheap sub-voxel offsets (per-axis parabola through the peak and its two neighbours)
    pos = idx.astype(float)
    inner = np.all((idx > 0) & (idx < np.array(vol.shape) - 1), axis=1)
    for axis in range(3):
        e = np.zeros(3, int)
        e[axis] = 1
        a = vol[tuple((idx[inner] - e).T)].astype(float)
        b = vol[tuple(idx[inner].T)].astype(float)
        c = vol[tuple((idx[inner] + e).T)].astype(float)
        den = a - 2 * b + c
        off = np.where(den < 0, 0.5 * (a - c) / np.where(den < 0, den, -1), 0.0)
        pos[inner, axis] += np.clip(off, -0.5, 0.5)
    pos = pos * pixel_size_A
    return pos, vol[tuple(idx.T)].astype(float)
