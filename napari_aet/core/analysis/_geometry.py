"""Shared geometry of the structure analysis: input checks, Delaunay tetrahedra, particle region.

The particle region is the alpha shape of the atom centres (tetrahedra with circumsphere
radius below ``alpha_A``) with every enclosed cavity filled in: a tetrahedron is *outside*
only when it can be reached from the convex hull through tetrahedra that are not in the alpha
complex. Enclosed pores therefore stay inside the particle while surface pockets do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import Delaunay, cKDTree

#: The four triangular faces of a tetrahedron; face k is opposite vertex k (scipy's convention
#: for ``Delaunay.neighbors``).
TET_FACES = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])


def validate_positions(positions, min_atoms: int = 5, min_separation_A: float = 0.5) -> np.ndarray:
    """Check atom positions ``(n, 3)`` (Angstrom) and return them as a float array.

    Raises ``ValueError`` naming the problem: wrong shape, NaN/inf, fewer than ``min_atoms``
    atoms, or duplicate atoms (pairs closer than ``min_separation_A``).
    """
    positions = np.asarray(positions, dtype=float)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"atom positions must have shape (n, 3); got {positions.shape}")
    bad = ~np.all(np.isfinite(positions), axis=1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} atom position(s) are NaN or infinite "
                         f"(first at row {int(np.flatnonzero(bad)[0])})")
    if len(positions) < min_atoms:
        raise ValueError(f"structure analysis needs at least {min_atoms} atoms; got {len(positions)}")
    close = cKDTree(positions).query_pairs(min_separation_A, output_type="ndarray")
    if len(close):
        i, j = close[0]
        d = np.linalg.norm(positions[i] - positions[j])
        raise ValueError(f"{len(close)} pair(s) of atoms closer than {min_separation_A} A (duplicate "
                         f"positions?), e.g. atoms {i} and {j} at {d:.3f} A")
    if np.linalg.matrix_rank(positions - positions.mean(0), tol=1e-6) < 3:
        raise ValueError("atom positions are coplanar or collinear: a 3D particle is needed")
    return positions


def tetrahedron_volumes(tets: np.ndarray) -> np.ndarray:
    """Unsigned volumes (A^3) of tetrahedra ``(n, 4, 3)``."""
    a = tets[:, 1] - tets[:, 0]
    b = tets[:, 2] - tets[:, 0]
    c = tets[:, 3] - tets[:, 0]
    return np.abs(np.einsum("ij,ij->i", a, np.cross(b, c))) / 6.0


def tetrahedron_edges(tets: np.ndarray) -> np.ndarray:
    """The six edge lengths ``(n, 6)`` of tetrahedra ``(n, 4, 3)``."""
    return np.linalg.norm(tets[:, [0, 0, 0, 1, 1, 2]] - tets[:, [1, 2, 3, 2, 3, 3]], axis=2)


def _triangle_circumradii(p0, p1, p2):
    a = np.linalg.norm(p1 - p2, axis=-1)
    b = np.linalg.norm(p0 - p2, axis=-1)
    c = np.linalg.norm(p0 - p1, axis=-1)
    area2 = np.linalg.norm(np.cross(p1 - p0, p2 - p0), axis=-1)  # twice the area
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(area2 > 1e-12, a * b * c / (2 * area2), np.inf)


def circumspheres(tets: np.ndarray, volumes: np.ndarray | None = None):
    """Circumcentres ``(n, 3)`` and circumradii ``(n,)`` (Angstrom) of tetrahedra ``(n, 4, 3)``.

    Flat tetrahedra (volume below 1e-6 of the cube of their mean edge; they occur where a
    perfect lattice has four coplanar, cocircular atoms) get the largest circumradius of their
    faces and the centroid as centre, so a perfect crystal never shows a spurious huge sphere.
    """
    if volumes is None:
        volumes = tetrahedron_volumes(tets)
    mean_edge = tetrahedron_edges(tets).mean(axis=1)
    flat = volumes < 1e-6 * mean_edge**3
    a = tets[:, 1:] - tets[:, :1]
    rhs = 0.5 * np.sum(a * a, axis=2)
    centre = tets.mean(axis=1).copy()
    radius = np.empty(len(tets))
    ok = ~flat
    if ok.any():
        local = np.linalg.solve(a[ok], rhs[ok][..., None])[..., 0]
        centre[ok] = local + tets[ok, 0]
        radius[ok] = np.linalg.norm(local, axis=1)
    if flat.any():
        t = tets[flat]
        radius[flat] = np.max([_triangle_circumradii(*t[:, f].transpose(1, 0, 2)) for f in TET_FACES],
                              axis=0)
    return centre, radius


@dataclass
class ParticleRegion:
    """Delaunay tetrahedra of the atoms and which of them lie inside the particle.

    Attributes
    ----------
    positions : (n, 3) atom centres (Angstrom).
    simplices : (m, 4) atom indices of the Delaunay tetrahedra.
    neighbors : (m, 4) neighbouring tetrahedron across each face (-1 on the convex hull).
    centres, radii : circumsphere centres (Angstrom) and radii (Angstrom).
    volumes : tetrahedron volumes (A^3).
    inside : (m,) bool, tetrahedra inside the particle (alpha shape with cavities filled).
    alpha_A : the alpha radius used (Angstrom).
    """

    positions: np.ndarray
    delaunay: Delaunay
    simplices: np.ndarray
    neighbors: np.ndarray
    centres: np.ndarray
    radii: np.ndarray
    volumes: np.ndarray
    inside: np.ndarray
    alpha_A: float

    @property
    def volume_A3(self) -> float:
        """Volume of the particle region (A^3)."""
        return float(self.volumes[self.inside].sum())

    def contains(self, points) -> np.ndarray:
        """Whether points ``(k, 3)`` (Angstrom) lie inside the particle region."""
        points = np.asarray(points, float).reshape(-1, 3)
        simplex = self.delaunay.find_simplex(points)
        out = np.zeros(len(points), bool)
        hit = simplex >= 0
        out[hit] = self.inside[simplex[hit]]
        return out

    def boundary_faces(self) -> np.ndarray:
        """Triangles ``(f, 3)`` (atom indices) between inside and outside, wound outward."""
        nb = self.neighbors
        inside = self.inside
        outer = np.where(nb >= 0, ~inside[np.maximum(nb, 0)], True) & inside[:, None]
        t, k = np.nonzero(outer)
        faces = self.simplices[t[:, None], TET_FACES[k]]
        opposite = self.simplices[t, k]
        p = self.positions
        normal = np.cross(p[faces[:, 1]] - p[faces[:, 0]], p[faces[:, 2]] - p[faces[:, 0]])
        inward = np.einsum("ij,ij->i", normal, p[opposite] - p[faces[:, 0]]) > 0
        faces[inward] = faces[inward][:, [0, 2, 1]]
        return faces

    def surface_atoms(self) -> np.ndarray:
        """Bool mask of atoms on the particle surface (vertices of boundary faces)."""
        mask = np.zeros(len(self.positions), bool)
        mask[np.unique(self.boundary_faces())] = True
        return mask


def face_components(mask: np.ndarray, neighbors: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of the tetrahedra in ``mask`` joined through shared faces.

    Returns ``(n_components, labels)`` with ``labels`` -1 outside ``mask``.
    """
    idx = np.flatnonzero(mask)
    labels = np.full(len(mask), -1)
    if len(idx) == 0:
        return 0, labels
    local = np.full(len(mask), -1)
    local[idx] = np.arange(len(idx))
    nb = neighbors[idx]
    t = np.repeat(np.arange(len(idx)), 4)
    other = nb.ravel()
    ok = other >= 0
    ok[ok] = mask[other[ok]]
    rows, cols = t[ok], local[other[ok]]
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(idx), len(idx)))
    n, lab = connected_components(graph, directed=False)
    labels[idx] = lab
    return n, labels


def particle_region(positions, alpha_A: float) -> ParticleRegion:
    """Delaunay tetrahedra of ``positions`` and the particle region for alpha radius ``alpha_A``.

    A tetrahedron is in the alpha complex when its circumradius is below ``alpha_A``; the
    particle is the alpha complex plus every other tetrahedron that cannot be reached from the
    convex hull through tetrahedra outside the alpha complex (enclosed voids).
    """
    positions = np.asarray(positions, float)
    if not alpha_A > 0:
        raise ValueError(f"alpha radius must be a positive length in Angstrom; got {alpha_A}")
    tri = Delaunay(positions)
    simplices = tri.simplices
    tets = positions[simplices]
    volumes = tetrahedron_volumes(tets)
    centres, radii = circumspheres(tets, volumes)
    open_tet = radii >= alpha_A
    n, labels = face_components(open_tet, tri.neighbors)
    on_hull = np.any(tri.neighbors < 0, axis=1) & open_tet
    outside_components = np.unique(labels[on_hull])
    outside = np.isin(labels, outside_components) & open_tet
    return ParticleRegion(positions, tri, simplices, tri.neighbors, centres, radii, volumes,
                          ~outside, float(alpha_A))


def nearest_neighbor_distance(positions) -> float:
    """Median nearest-neighbour distance (Angstrom)."""
    d, _ = cKDTree(positions).query(positions, k=2)
    return float(np.median(d[:, 1]))
