"""Degree of oxidation from the metal sublattice alone (oxygen is not seen in AET).

Delaunay tetrahedra of the metal atoms inside the particle whose distortion
``max edge / mean edge - 1`` exceeds ``max_distortion`` (0.255) are dropped; a remaining
tetrahedron with volume above ``oxygen_volume_A3`` (4.68 A^3 for Zr) holds one oxygen at its
centroid. An atom's degree of oxidation is the share of its surrounding tetrahedra (those
inside the particle with the atom as a vertex) that hold oxygen. In ideal cubic ZrO2 every Zr
has 8 oxygen tetrahedra (the regular tetrahedral sites) out of 24 (the octahedral holes split
into four distorted tetrahedra each), so the degree is 1/3 and the O/Zr ratio 2; in fcc Zr
metal the tetrahedral sites are too small (4.05 A^3) and the degree is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_aet.core.analysis._geometry import (
    ParticleRegion,
    particle_region,
    tetrahedron_edges,
    validate_positions,
)

#: Tetrahedron distortion above which no oxygen sits in it.
MAX_DISTORTION = 0.255
#: Smallest Zr tetrahedron (A^3) that holds an oxygen.
OXYGEN_VOLUME_A3 = 4.68


@dataclass
class OxidationResult:
    """Per-atom degree of oxidation and the predicted oxygen sites.

    Attributes
    ----------
    degree : (n,) share of the atom's tetrahedra holding oxygen (NaN for atoms in none).
    n_oxygen : (n,) oxygen tetrahedra around each atom.
    oxygen_positions : (m, 3) predicted oxygen sites (z, y, x Angstrom).
    o_per_metal : total oxygen sites / metal atoms (2 for ZrO2).
    """

    degree: np.ndarray
    n_oxygen: np.ndarray
    oxygen_positions: np.ndarray
    o_per_metal: float


def degree_of_oxidation(positions, max_distortion: float = MAX_DISTORTION,
                        oxygen_volume_A3: float = OXYGEN_VOLUME_A3,
                        region: ParticleRegion | None = None, alpha_A: float = 4.5
                        ) -> OxidationResult:
    """Degree of oxidation per metal atom and the O/metal ratio.

    Parameters
    ----------
    positions : (n, 3) metal atom centres (Angstrom).
    max_distortion : tetrahedra with ``max edge / mean edge - 1`` above this hold no oxygen.
    oxygen_volume_A3 : smallest tetrahedron volume (A^3) that holds an oxygen.
    region : particle region (built with ``alpha_A`` when None).
    """
    positions = validate_positions(positions)
    if not (max_distortion >= 0 and oxygen_volume_A3 > 0):
        raise ValueError(f"need max_distortion >= 0 and oxygen_volume_A3 > 0; got "
                         f"{max_distortion}, {oxygen_volume_A3}")
    if region is None:
        region = particle_region(positions, alpha_A)
    n = len(positions)
    tets = np.flatnonzero(region.inside)
    xyz = positions[region.simplices[tets]]
    edges = tetrahedron_edges(xyz)
    distortion = edges.max(1) / edges.mean(1) - 1
    holds = (distortion <= max_distortion) & (region.volumes[tets] > oxygen_volume_A3)
    verts = region.simplices[tets]
    total = np.bincount(verts.ravel(), minlength=n).astype(float)
    n_oxygen = np.bincount(verts[holds].ravel(), minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        degree = np.where(total > 0, n_oxygen / total, np.nan)
    oxygen = xyz[holds].mean(axis=1)
    return OxidationResult(degree, n_oxygen, oxygen, float(holds.sum()) / n)
