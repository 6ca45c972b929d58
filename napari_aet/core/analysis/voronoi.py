"""Voronoi cells bounded by the particle: per-atom volume, rho_N = 1 / V and Voronoi bonds.

Surface atoms' cells are closed by mirror ("ghost") points placed about one layer spacing
outside the particle surface along the local outward normal, so each surface cell
ends half a layer outside its atom, the way the particle ends, instead of at a box wall or at
infinity. Faces smaller than ``min_face_fraction`` of their cell's total face area are dropped
from the bonds (they come from near-degenerate vertices and noise); a Voronoi bond needs a
kept shared face and a length below the first-shell cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import Voronoi, cKDTree

from napari_aet.core.analysis._geometry import (
    ParticleRegion,
    nearest_neighbor_distance,
    particle_region,
    validate_positions,
)


@dataclass
class VoronoiResult:
    """Per-atom Voronoi cells.

    Attributes
    ----------
    volume_A3 : (n,) cell volumes (A^3); NaN where the cell could not be closed.
    rho_n : (n,) atomic concentration 1 / volume (A^-3).
    n_faces : (n,) faces kept (area >= the fraction of the cell's face area).
    bonds : (k, 2) Voronoi bonds (atom index pairs, i < j).
    surface : (n,) bool, atoms on the particle surface (their cells were closed by ghosts).
    """

    volume_A3: np.ndarray
    rho_n: np.ndarray
    n_faces: np.ndarray
    bonds: np.ndarray
    surface: np.ndarray


def _ghost_points(region: ParticleRegion, distance_A: float):
    """Mirror points one ``distance_A`` outside each surface atom along its outward normal."""
    faces = region.boundary_faces()
    p = region.positions
    normals = np.cross(p[faces[:, 1]] - p[faces[:, 0]], p[faces[:, 2]] - p[faces[:, 0]])
    acc = np.zeros_like(p)
    for k in range(3):
        for axis in range(3):
            acc[:, axis] += np.bincount(faces[:, k], normals[:, axis], len(p))
    surface = np.zeros(len(p), bool)
    surface[np.unique(faces)] = True
    norm = np.linalg.norm(acc, axis=1)
    use = surface & (norm > 0)
    unit = acc[use] / norm[use, None]
    ghosts = [p[use] + unit * distance_A, p[use] + unit * 2.5 * distance_A]
    # A loose outer shell so that corner cells stay closed: convex-hull directions far out.
    centre = p.mean(axis=0)
    extent = np.linalg.norm(p - centre, axis=1).max() + 4 * distance_A
    golden = np.pi * (3 - np.sqrt(5))
    k = np.arange(400)
    z = 1 - 2 * (k + 0.5) / 400
    rr = np.sqrt(1 - z * z)
    sphere = np.stack([z, rr * np.cos(golden * k), rr * np.sin(golden * k)], 1)
    ghosts.append(centre + extent * sphere)
    return np.concatenate(ghosts), surface


def voronoi_cells(positions, first_shell_A: float, region: ParticleRegion | None = None,
                  min_face_fraction: float = 0.01, ghost_distance_A: float | None = None
                  ) -> VoronoiResult:
    """Voronoi volumes, rho_N and bonds of atoms, with cells bounded by the particle.

    Parameters
    ----------
    positions : (n, 3) atom centres (Angstrom).
    first_shell_A : first-shell cutoff (Angstrom): longest Voronoi bond, and the alpha radius
        of the particle region when ``region`` is None.
    min_face_fraction : faces below this fraction of the cell's total face area are dropped.
    ghost_distance_A : distance of the mirror points outside the surface (default 0.85 x the
        median nearest-neighbour distance, about one close-packed layer spacing, so a surface
        cell reaches half a layer outside its atom like a bulk cell does).
    """
    positions = validate_positions(positions)
    if not 0 <= min_face_fraction < 0.5:
        raise ValueError(f"min_face_fraction must be in [0, 0.5); got {min_face_fraction}")
    n = len(positions)
    if region is None:
        region = particle_region(positions, first_shell_A)
    ghost_distance_A = ghost_distance_A or 0.85 * nearest_neighbor_distance(positions)
    ghosts, surface = _ghost_points(region, ghost_distance_A)
    # A ghost nearer to another atom than to its own (concave spots) would cut that cell.
    d, _ = cKDTree(positions).query(ghosts)
    ghosts = ghosts[d > 0.99 * ghost_distance_A]
    vor = Voronoi(np.concatenate([positions, ghosts]))
    ridge_points = vor.ridge_points
    keep = (ridge_points[:, 0] < n) | (ridge_points[:, 1] < n)
    ridge_points = ridge_points[keep]
    ridges = [vor.ridge_vertices[k] for k in np.flatnonzero(keep)]
    lengths = np.fromiter((len(rv) for rv in ridges), int, len(ridges))
    flat = np.fromiter((v for rv in ridges for v in rv), int, int(lengths.sum()))
    open_ridge = np.zeros(len(ridges), bool)
    owner = np.repeat(np.arange(len(ridges)), lengths)
    open_ridge[owner[flat < 0]] = True
    # Fan triangulation of each (convex, cyclically ordered) face polygon.
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    verts = vor.vertices
    safe = np.where(flat < 0, 0, flat)
    first = verts[safe[starts]]
    pos_in = np.arange(len(flat)) - starts[owner]
    tri = (pos_in >= 1) & (pos_in < lengths[owner] - 1)
    a_idx = np.flatnonzero(tri)
    cross = np.cross(verts[safe[a_idx]] - first[owner[a_idx]], verts[safe[a_idx + 1]] - first[owner[a_idx]])
    area_vec = np.zeros((len(ridges), 3))
    for axis in range(3):
        area_vec[:, axis] = np.bincount(owner[a_idx], cross[:, axis], len(ridges))
    area = 0.5 * np.linalg.norm(area_vec, axis=1)
    i, j = ridge_points[:, 0], ridge_points[:, 1]
    dist = np.linalg.norm(vor.points[i] - vor.points[j], axis=1)
    pyramid = area * dist / 6.0  # (1/3) * area * (dist / 2)
    volume = np.zeros(n)
    face_area = np.zeros(n)
    is_open = np.zeros(n, bool)
    for a in (i, j):
        real = a < n
        volume += np.bincount(a[real], pyramid[real], n)
        face_area += np.bincount(a[real], area[real], n)
        is_open |= np.bincount(a[real], open_ridge[real], n) > 0
    # A cell reaching further than 3 first shells from its atom was not closed by the ghosts.
    far = np.zeros(n, bool)
    for a in (i, j):
        real = (a < n) & ~open_ridge
        if real.any():
            rid = np.flatnonzero(real)
            vmask = np.isin(owner, rid)
            atom_of_vertex = np.repeat(a[rid], lengths[rid])
            reach = np.linalg.norm(verts[safe[vmask]] - positions[atom_of_vertex], axis=1)
            far |= np.bincount(atom_of_vertex, reach > 3 * first_shell_A, n) > 0
    bad = is_open | far
    volume[bad] = np.nan
    # Faces and bonds.
    both_real = (i < n) & (j < n) & ~open_ridge
    frac_i = area / np.where(i < n, face_area[np.minimum(i, n - 1)], np.inf)
    frac_j = area / np.where(j < n, face_area[np.minimum(j, n - 1)], np.inf)
    kept_i = (i < n) & (frac_i >= min_face_fraction)
    kept_j = (j < n) & (frac_j >= min_face_fraction)
    n_faces = np.bincount(i[kept_i], minlength=n) + np.bincount(j[kept_j], minlength=n)
    bond = both_real & (frac_i >= min_face_fraction) & (frac_j >= min_face_fraction) & (
        dist < first_shell_A)
    bonds = np.sort(np.stack([i[bond], j[bond]], 1), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 / volume
    return VoronoiResult(volume, rho, n_faces, bonds, surface)
