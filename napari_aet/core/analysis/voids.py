"""Voids: empty regions between atoms, from Delaunay tetrahedra with large circumspheres.

A Delaunay tetrahedron inside the particle whose circumsphere radius exceeds ``r_void_A``
(3.19 Angstrom for ZrO2: between the octahedral hole, a/2 = 2.55, and a Zr vacancy,
a/sqrt 2 = 3.60) is void; void tetrahedra sharing a face form one void, whose volume is the
sum of its tetrahedra. A void that touches the outside of the particle is a surface pocket,
not a void, and is dropped. Classes by volume: vacancy 45-125 A^3 (one or two atoms missing),
nano-pore 125-4500 A^3, pore above; smaller ones are 'interstitial' (open holes too small for
an atom).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_aet.core.analysis._geometry import (
    TET_FACES,
    ParticleRegion,
    face_components,
    particle_region,
    validate_positions,
)

VOID_CLASSES = ("interstitial", "vacancy", "nano-pore", "pore")
#: Display colours of the void classes (RGBA hex).
VOID_COLORS = {"interstitial": "#8e8e93", "vacancy": "#ffd60a", "nano-pore": "#ff9500",
               "pore": "#ff3b30"}


@dataclass
class Void:
    """One void: ``kind``, ``volume_A3``, ``center`` (z, y, x Angstrom, volume-weighted),
    ``tetrahedra`` (indices into the region's simplices), ``lining`` (atom indices around it),
    ``max_radius_A`` (largest circumsphere radius)."""

    kind: str
    volume_A3: float
    center: np.ndarray
    tetrahedra: np.ndarray
    lining: np.ndarray
    max_radius_A: float

    @property
    def equivalent_radius_A(self) -> float:
        return float((3 * self.volume_A3 / (4 * np.pi)) ** (1 / 3))


@dataclass
class VoidResult:
    """Voids of an atom model and the region they were found in."""

    voids: list[Void]
    region: ParticleRegion
    n_surface_pockets: int
    params: dict = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return sum(v.kind == kind for v in self.voids)

    def total_volume_A3(self, kinds=("vacancy", "nano-pore", "pore")) -> float:
        return float(sum(v.volume_A3 for v in self.voids if v.kind in kinds))

    @property
    def porosity(self) -> float:
        """Volume of vacancies, nano-pores and pores over the particle volume."""
        return self.total_volume_A3() / max(self.region.volume_A3, 1e-12)

    def mesh(self, kinds=("vacancy", "nano-pore", "pore")):
        """Triangle mesh of the chosen voids for a napari Surface layer.

        Returns ``(vertices (v, 3) z, y, x Angstrom, faces (f, 3), values (v,))`` with
        ``values`` the index of the void's class in :data:`VOID_CLASSES`.
        """
        vertices, faces, values = [], [], []
        offset = 0
        simp, nb = self.region.simplices, self.region.neighbors
        for v in self.voids:
            if v.kind not in kinds:
                continue
            member = np.zeros(len(simp), bool)
            member[v.tetrahedra] = True
            t = np.repeat(v.tetrahedra, 4)
            k = np.tile(np.arange(4), len(v.tetrahedra))
            other = nb[t, k]
            open_face = (other < 0) | ~member[np.maximum(other, 0)]
            tri = simp[t[open_face][:, None], TET_FACES[k[open_face]]]
            # Wind each triangle so its normal points into the void (towards the opposite vertex)
            opp = self.region.positions[simp[t[open_face], k[open_face]]]
            p = self.region.positions
            normal = np.cross(p[tri[:, 1]] - p[tri[:, 0]], p[tri[:, 2]] - p[tri[:, 0]])
            flip = np.einsum("ij,ij->i", normal, opp - p[tri[:, 0]]) < 0
            tri[flip] = tri[flip][:, [0, 2, 1]]
            used, local = np.unique(tri, return_inverse=True)
            vertices.append(p[used])
            faces.append(local.reshape(-1, 3) + offset)
            values.append(np.full(len(used), VOID_CLASSES.index(v.kind), float))
            offset += len(used)
        if not vertices:
            return np.zeros((0, 3)), np.zeros((0, 3), int), np.zeros(0)
        return np.concatenate(vertices), np.concatenate(faces), np.concatenate(values)

    def table(self) -> dict[str, np.ndarray]:
        """Columns for a voids table: id, kind, volume_A3, z, y, x, radius, n_tetrahedra, n_lining."""
        c = np.array([v.center for v in self.voids]).reshape(-1, 3)
        return {
            "id": np.arange(len(self.voids)),
            "kind": np.array([v.kind for v in self.voids], dtype=str),
            "volume_A3": np.array([v.volume_A3 for v in self.voids]),
            "z": c[:, 0], "y": c[:, 1], "x": c[:, 2],
            "equivalent_radius_A": np.array([v.equivalent_radius_A for v in self.voids]),
            "max_circumradius_A": np.array([v.max_radius_A for v in self.voids]),
            "n_tetrahedra": np.array([len(v.tetrahedra) for v in self.voids], int),
            "n_lining_atoms": np.array([len(v.lining) for v in self.voids], int),
        }


def classify_void(volume_A3: float, vacancy_A3=(45.0, 125.0), nanopore_max_A3: float = 4500.0) -> str:
    """Class of a void by volume (A^3): interstitial / vacancy / nano-pore / pore."""
    if volume_A3 < vacancy_A3[0]:
        return "interstitial"
    if volume_A3 <= vacancy_A3[1]:
        return "vacancy"
    if volume_A3 <= nanopore_max_A3:
        return "nano-pore"
    return "pore"


def find_voids(positions, r_void_A: float = 3.19, alpha_A: float = 4.5,
               region: ParticleRegion | None = None, vacancy_A3=(45.0, 125.0),
               nanopore_max_A3: float = 4500.0) -> VoidResult:
    """Voids among the atoms of a particle.

    Parameters
    ----------
    positions : (n, 3) atom centres (Angstrom), usually the heavy atoms only.
    r_void_A : circumsphere radius (Angstrom) above which a tetrahedron is void.
    alpha_A : alpha radius (Angstrom) of the particle region (the first-shell cutoff);
        ignored when ``region`` is given.
    vacancy_A3 : (min, max) volume (A^3) of the vacancy class.
    nanopore_max_A3 : largest nano-pore volume (A^3); bigger voids are pores.
    """
    positions = validate_positions(positions)
    if not r_void_A > 0:
        raise ValueError(f"r_void must be a positive length in Angstrom; got {r_void_A}")
    lo, hi = vacancy_A3
    if not 0 <= lo < hi < nanopore_max_A3:
        raise ValueError(f"need 0 <= vacancy min < vacancy max < nano-pore max; got {lo}, {hi}, "
                         f"{nanopore_max_A3}")
    if region is None:
        region = particle_region(positions, alpha_A)
    void_tet = region.inside & (region.radii > r_void_A)
    n_comp, labels = face_components(void_tet, region.neighbors)
    # Surface pockets: components with a face on the hull or against an outside tetrahedron.
    nb = region.neighbors
    touches = void_tet[:, None] & ((nb < 0) | ~region.inside[np.maximum(nb, 0)])
    pocket = np.zeros(n_comp, bool)
    pocket[labels[np.any(touches, axis=1)]] = True
    voids: list[Void] = []
    if n_comp:
        idx = np.flatnonzero(void_tet)
        order = np.argsort(labels[idx], kind="stable")
        idx = idx[order]
        splits = np.flatnonzero(np.diff(labels[idx])) + 1
        for tets in np.split(idx, splits):
            comp = labels[tets[0]]
            if pocket[comp]:
                continue
            vol = region.volumes[tets]
            volume = float(vol.sum())
            centroid = region.positions[region.simplices[tets]].mean(axis=1)
            center = (centroid * vol[:, None]).sum(0) / max(volume, 1e-12)
            voids.append(Void(classify_void(volume, vacancy_A3, nanopore_max_A3), volume, center,
                              tets, np.unique(region.simplices[tets]),
                              float(region.radii[tets].max())))
    voids.sort(key=lambda v: -v.volume_A3)
    return VoidResult(voids, region, int(pocket.sum()),
                      {"r_void_A": r_void_A, "alpha_A": region.alpha_A,
                       "vacancy_A3": list(vacancy_A3), "nanopore_max_A3": nanopore_max_A3})
