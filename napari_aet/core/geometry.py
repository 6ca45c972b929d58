"""Tomographic geometry: Euler angles, rotation matrices, tilt schemes and frame conventions.

Conventions (shared by the simulator, projectors, readers and widgets)
-----------------------------------------------------------------------
* Arrays are C-ordered: a volume is ``(nz, ny, nx)``, a tilt series ``(n_angles, ny, nx)``,
  and positions are ``(z, y, x)`` in Angstrom, as napari expects.
* Object axes: ``x`` across the tilt axis, ``y`` along the tilt axis, ``z`` along the beam at
  0 degrees. The 0-degree projection of a volume is ``volume.sum(axis=0)``.
* Each projection has Euler angles ``(phi, theta, psi)`` in degrees. Its rotation matrix
  ``R`` (acting on ``(x, y, z)`` column vectors) maps detector coordinates ``p`` to object
  coordinates: ``r = R @ p``, so ``p = R.T @ r``; the image samples ``p_x`` (columns) and
  ``p_y`` (rows) and integrates along ``p_z``. This is the convention of the published AET
  codes (RESIRE, GENFIRE MATLAB), so their angle files are read unchanged.
* The default Euler convention is ``"zyx"``: ``R = Rz(phi) @ Ry(theta) @ Rx(psi)``;
  ``"zyz"`` (``R = Rz(phi) @ Ry(theta) @ Rz(psi)``) is available for other data sets.
  With ``phi = psi = 0`` both are a single tilt about ``y``.
* The rotation centre is voxel ``n // 2`` along every axis of the volume and pixel
  ``n // 2`` along both axes of each image (the FFT centre).
"""

from __future__ import annotations

import numpy as np

EULER_CONVENTIONS = ("zyx", "zyz")


def _axis_rotation(axis: str, angle_rad: np.ndarray) -> np.ndarray:
    """Right-handed rotation matrices ``(..., 3, 3)`` about ``axis`` in (x, y, z) order."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    one, zero = np.ones_like(c), np.zeros_like(c)
    if axis == "x":
        rows = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
    elif axis == "y":
        rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
    else:
        rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
    return np.moveaxis(np.array(rows, dtype=float), (0, 1), (-2, -1))


def as_euler_angles(angles_deg) -> np.ndarray:
    """Return angles as an ``(n, 3)`` float array of ``(phi, theta, psi)`` in degrees.

    A 1-D array (or an ``(n, 1)`` column) is taken as tilt angles theta, with phi = psi = 0.
    """
    angles = np.asarray(angles_deg, dtype=float)
    if angles.ndim == 2 and angles.shape[1] == 1:
        angles = angles[:, 0]
    if angles.ndim == 1:
        angles = np.stack([np.zeros_like(angles), angles, np.zeros_like(angles)], axis=1)
    if angles.ndim != 2 or angles.shape[1] != 3:
        raise ValueError(
            f"angles must be (n,) tilt angles or (n, 3) Euler triplets (phi, theta, psi) in "
            f"degrees; got shape {angles.shape}"
        )
    if not np.all(np.isfinite(angles)):
        raise ValueError("angles contain NaN or infinite values")
    return angles


def check_tilt_angles(angles_deg) -> np.ndarray:
    """Refuse tilt angles that cannot be right; warn about repeated ones. Returns them as
    ``(n, 3)`` Euler triplets (degrees).

    Refused (``ValueError``): an angle outside -360..360 degrees (tilts beyond +-90 are
    kept: a full-rotation series spans 0..180 and more); two or more projections
    whose angles are all 0; three or more whose tilts span at most pi (3.14) degrees and lie
    within +-pi/2, i.e. radians. Warned (``UserWarning``): the same triplet twice.
    """
    import warnings

    angles = as_euler_angles(angles_deg)
    theta = angles[:, 1]
    outside = np.argwhere(np.abs(angles) > 360)
    if len(outside):
        row, col = outside[0]
        raise ValueError(f"angle {angles[row, col]:g} ({('phi', 'theta', 'psi')[col]}, row "
                         f"{row + 1}) is outside -360..360 degrees")
    if len(angles) >= 2 and not np.any(angles):
        raise ValueError(f"all {len(angles)} angles are 0: no tilt (wrong file or column?)")
    if (len(angles) >= 3 and 0 < np.ptp(theta) <= np.pi
            and np.all(np.abs(theta) <= np.pi / 2 + 1e-9)):
        raise ValueError(f"tilt angles span {theta.min():g}..{theta.max():g}: they look like "
                         "radians, but degrees are expected (multiply by 57.2958)")
    _, first, counts = np.unique(np.round(angles, 6), axis=0, return_index=True,
                                 return_counts=True)
    if np.any(counts > 1):
        k = int(first[np.argmax(counts > 1)])
        warnings.warn(f"the angles {tuple(float(a) for a in angles[k])} (row {k + 1}) appear "
                      f"{int(counts.max())} times: repeated images?", UserWarning, stacklevel=2)
    return angles


def rotation_matrices(angles_deg, convention: str = "zyx") -> np.ndarray:
    """Rotation matrices ``(n, 3, 3)`` (x, y, z order) for Euler angles in degrees.

    ``r_object = R @ p_detector`` (see the module docstring).
    """
    if convention not in EULER_CONVENTIONS:
        raise ValueError(f"unknown Euler convention {convention!r}; use one of {EULER_CONVENTIONS}")
    phi, theta, psi = np.deg2rad(as_euler_angles(angles_deg)).T
    third = "x" if convention == "zyx" else "z"
    return _axis_rotation("z", phi) @ _axis_rotation("y", theta) @ _axis_rotation(third, psi)


def is_single_axis(angles_deg, tol_deg: float = 1e-6) -> bool:
    """True when every projection is a pure tilt about y (phi and psi all within ``tol_deg``)."""
    angles = as_euler_angles(angles_deg)
    return bool(np.all(np.abs(angles[:, [0, 2]]) <= tol_deg))


def linear_tilt_angles(n_angles: int, min_deg: float, max_deg: float) -> np.ndarray:
    """Linearly stepped tilt angles as ``(n, 3)`` Euler triplets in degrees."""
    if n_angles < 2:
        raise ValueError("a tilt series needs at least 2 angles")
    return as_euler_angles(np.linspace(min_deg, max_deg, n_angles))


def equal_slope_tilt_angles(n_angles: int, max_deg: float) -> np.ndarray:
    """Equally sloped tilt angles (as in equally sloped tomography), ``(n, 3)`` in degrees.

    ``tan(theta)`` steps linearly up to 45 degrees and ``cot(theta)`` beyond, with one common
    step chosen so the series spans ``+-max_deg``. For 55 angles over +-72.6 degrees this is
    the pseudo-polar grid of a 32-pixel object (slope step 2/32).
    """
    if n_angles < 2:
        raise ValueError("a tilt series needs at least 2 angles")
    if not 0 < max_deg < 90:
        raise ValueError(f"max_deg must be in (0, 90) degrees; got {max_deg}")
    t_max = np.tan(np.deg2rad(max_deg)) if max_deg <= 45 else 2.0 - np.tan(np.deg2rad(90 - max_deg))
    t = np.linspace(-t_max, t_max, n_angles)
    a = np.abs(t)
    theta = np.where(a <= 1, np.rad2deg(np.arctan(a)), 90.0 - np.rad2deg(np.arctan(2.0 - a)))
    return as_euler_angles(np.sign(t) * theta)


def grid_center(shape) -> np.ndarray:
    """Rotation centre in voxel/pixel index units: ``n // 2`` along each axis."""
    return np.array([n // 2 for n in shape], dtype=float)


def zyx_to_xyz(positions) -> np.ndarray:
    """Swap ``(..., 3)`` positions between napari's (z, y, x) and the (x, y, z) of files."""
    return np.asarray(positions)[..., ::-1]



def project_points(positions_zyx, rotation: np.ndarray, center_zyx) -> np.ndarray:
    """Detector coordinates ``(n_points, 3)`` as ``(p_z, p_y, p_x)`` of object points.

    ``positions_zyx`` and ``center_zyx`` share units (pixels or Angstrom); the result is in
    the same units, relative to the rotation centre (add the image centre to index pixels).
    """
    rel = zyx_to_xyz(np.asarray(positions_zyx, dtype=float) - np.asarray(center_zyx, dtype=float))
    return zyx_to_xyz(rel @ rotation)  # (R.T @ r) for each row r
