"""Per-atom phases, distance from the metal core surface, radial profiles and a phase volume.

Phase rules (METHODS.md section 7): an atom is *ordered* when its normalised BOO reaches the
disorder threshold; ordered atoms with a high atomic concentration (first-shell mean of rho_N
at least ``rho_metal_min``) are crystalline metal, ordered atoms with a lower one crystalline
oxide, disordered atoms amorphous oxide. One majority vote over each atom's first shell then
removes isolated labels (surface atoms with truncated shells). The core is the largest
connected cluster of metal atoms; the signed distance from its surface is negative inside.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

PHASES = ("metal", "crystalline_oxide", "amorphous_oxide")
#: Display colours of the phases.
PHASE_COLORS = {"metal": "#5ac8fa", "crystalline_oxide": "#34c759", "amorphous_oxide": "#ff9500",
                "": "#8e8e93"}
#: Default split (A^-3) between metal (Zr about 0.041) and oxide (cubic ZrO2 Zr 0.030).
RHO_METAL_MIN = 0.035


def _shell_mean(values, pairs, n):
    """Mean of ``values`` over each atom and its first-shell neighbours (NaN ignored)."""
    v = np.nan_to_num(values)
    w = np.isfinite(values).astype(float)
    total, count = v.copy(), w.copy()
    for a, b in ((0, 1), (1, 0)):
        total += np.bincount(pairs[:, a], v[pairs[:, b]], n)
        count += np.bincount(pairs[:, a], w[pairs[:, b]], n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return total / count


def assign_phases(boo, rho_n, pairs, boo_threshold: float = 0.534,
                  rho_metal_min: float = RHO_METAL_MIN, smooth: bool = True) -> np.ndarray:
    """Phase label per atom ('metal', 'crystalline_oxide', 'amorphous_oxide').

    Parameters
    ----------
    boo : (n,) normalised bond-orientational order.
    rho_n : (n,) atomic concentration (A^-3).
    pairs : (k, 2) first-shell neighbour pairs.
    boo_threshold : BOO below which an atom is disordered.
    rho_metal_min : first-shell mean rho_N (A^-3) separating metal from oxide.
    smooth : majority vote over each atom's first shell (one pass).
    """
    boo = np.asarray(boo, float)
    n = len(boo)
    rho_shell = _shell_mean(np.asarray(rho_n, float), pairs, n)
    ordered = np.nan_to_num(boo) >= boo_threshold
    code = np.where(ordered, np.where(rho_shell >= rho_metal_min, 0, 1), 2)
    if smooth and len(pairs):
        votes = np.zeros((n, 3))
        votes[np.arange(n), code] += 1.5  # the atom's own label wins ties
        for a, b in ((0, 1), (1, 0)):
            np.add.at(votes, (pairs[:, a], code[pairs[:, b]]), 1.0)
        code = votes.argmax(axis=1)
    return np.asarray(PHASES)[code]


def core_distance(positions, phase, pairs, core_phase: str = "metal") -> np.ndarray:
    """Signed distance (Angstrom) of each atom from the surface of the metal core.

    The core is the largest cluster of ``core_phase`` atoms connected by first-shell
    ``pairs``; an outside atom's distance is that to the nearest core atom, a core atom's is
    minus the distance to the nearest non-core atom. All NaN when there is no core or nothing
    outside it.
    """
    positions = np.asarray(positions, float)
    n = len(positions)
    metal = np.asarray(phase) == core_phase
    out = np.full(n, np.nan)
    if metal.sum() < 4 or metal.all():
        return out
    keep = metal[pairs[:, 0]] & metal[pairs[:, 1]]
    graph = coo_matrix((np.ones(keep.sum()), (pairs[keep, 0], pairs[keep, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels[metal])
    core = metal & (labels == np.argmax(sizes))
    d_out, _ = cKDTree(positions[core]).query(positions[~core])
    d_in, _ = cKDTree(positions[~core]).query(positions[core])
    out[~core] = d_out
    out[core] = -d_in
    return out


def core_shell(distance_A, shell_width_A: float = 5.0) -> np.ndarray:
    """Shell index from the signed core distance (Angstrom): 0 in the core, ``1 + floor(d /
    shell_width_A)`` outside, -1 where the distance is unknown (NaN)."""
    d = np.asarray(distance_A, float)
    outside = 1 + np.floor(np.nan_to_num(d) / shell_width_A)
    return np.where(np.isfinite(d), np.where(d <= 0, 0, outside), -1).astype(int)


def vacancy_core_distance(positions, distance_A, voids) -> np.ndarray:
    """Core distance (Angstrom) of each vacancy of ``voids`` (a ``VoidResult``): that of the
    atom nearest its centre."""
    vac = np.array([v.center for v in voids.voids if v.kind == "vacancy"]).reshape(-1, 3)
    nearest = cKDTree(positions).query(vac)[1] if len(vac) else np.zeros(0, int)
    return np.asarray(distance_A)[nearest]


def profiles(distance_A, values: dict[str, np.ndarray], bin_A: float = 2.0,
             void_distance_A=None, min_atoms: int = 5) -> dict[str, np.ndarray]:
    """Means of per-atom ``values`` in bins of distance from the core surface.

    Returns ``distance_A`` (bin centres), ``n_atoms``, one mean per value and, when
    ``void_distance_A`` (distances of vacancy centres) is given, ``vacancies_per_1000_atoms``.
    Bins with fewer than ``min_atoms`` atoms are left out.
    """
    d = np.asarray(distance_A, float)
    ok = np.isfinite(d)
    if not ok.any():
        return {"distance_A": np.zeros(0), "n_atoms": np.zeros(0, int)}
    lo = np.floor(d[ok].min() / bin_A) * bin_A
    edges = np.arange(lo, d[ok].max() + bin_A, bin_A)
    if len(edges) < 2:
        edges = np.array([lo, lo + bin_A])
    idx = np.clip(np.digitize(d[ok], edges) - 1, 0, len(edges) - 2)
    nb = len(edges) - 1
    count = np.bincount(idx, minlength=nb)
    out = {"distance_A": 0.5 * (edges[1:] + edges[:-1]), "n_atoms": count}
    for name, v in values.items():
        v = np.asarray(v, float)[ok]
        fin = np.isfinite(v)
        s = np.bincount(idx[fin], v[fin], nb)
        c = np.bincount(idx[fin], minlength=nb)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[name] = np.where(c > 0, s / c, np.nan)
    if void_distance_A is not None:
        vd = np.asarray(void_distance_A, float)
        vd = vd[np.isfinite(vd)]
        vi = np.clip(np.digitize(vd, edges) - 1, 0, nb - 1)
        nv = np.bincount(vi, minlength=nb)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["vacancies_per_1000_atoms"] = np.where(count > 0, 1000.0 * nv / count, np.nan)
    keep = count >= min_atoms
    return {k: v[keep] for k, v in out.items()}


def phase_label_volume(positions, phase, shape, pixel_size_A: float, radius_A: float,
                       region=None) -> np.ndarray:
    """Labels volume ``shape`` (nz, ny, nx): each voxel within ``radius_A`` of an atom gets the
    phase code (1 + index in :data:`PHASES`) of its nearest atom; 0 elsewhere.

    Voxel ``(k, j, i)`` sits at ``(k, j, i) * pixel_size_A`` (the atoms' frame). With
    ``region`` only voxels inside the particle region are labelled.
    """
    if len(shape) != 3 or not pixel_size_A > 0:
        raise ValueError(f"need a 3D shape and a positive pixel size; got {shape}, {pixel_size_A}")
    positions = np.asarray(positions, float)
    code = np.array([PHASES.index(p) + 1 if p in PHASES else 0 for p in phase], np.uint8)
    tree = cKDTree(positions)
    labels = np.zeros(shape, np.uint8)
    zs = np.arange(shape[0]) * pixel_size_A
    yy, xx = np.meshgrid(np.arange(shape[1]) * pixel_size_A, np.arange(shape[2]) * pixel_size_A,
                         indexing="ij")
    lo, hi = positions.min(0) - radius_A, positions.max(0) + radius_A
    for k, z in enumerate(zs):
        if z < lo[0] or z > hi[0]:
            continue
        pts = np.column_stack([np.full(yy.size, z), yy.ravel(), xx.ravel()])
        d, idx = tree.query(pts, distance_upper_bound=radius_A)
        hit = np.isfinite(d)
        if region is not None and hit.any():
            inside = np.zeros_like(hit)
            inside[hit] = region.contains(pts[hit])
            hit &= inside | (d < 0.5 * radius_A)
        plane = np.zeros(yy.size, np.uint8)
        plane[hit] = code[idx[hit]]
        labels[k] = plane.reshape(yy.shape)
    return labels
