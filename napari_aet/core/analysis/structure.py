"""Per-atom structure type by adaptive common-neighbour analysis (Stukowski 2012).

For fcc/hcp/icosahedral the 12 nearest neighbours are taken with the local cutoff
``(1 + sqrt 2) / 2`` times their mean distance; for bcc the 14 nearest with
``(1 + sqrt 2) / 2`` times the mean of ``2/sqrt 3`` x the first eight and the next six
distances. Each central-atom/neighbour pair gets a signature (common neighbours, bonds
among them, longest bond chain):

* fcc: 12 x (4, 2, 1); hcp: 6 x (4, 2, 1) + 6 x (4, 2, 2); icosahedral: 12 x (5, 5, 5);
* bcc: 8 x (6, 6, 6) + 6 x (4, 4, 4).

Rings (555, 666, 444) are recognised as common-neighbour graphs where every vertex has two
bonds; 421 and 422 by whether the two bonds share an atom.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

STRUCTURE_TYPES = ("fcc", "hcp", "bcc", "icosahedral", "other")


def _signatures(neighbor_xyz: np.ndarray, cutoff: np.ndarray):
    """CNA numbers for each neighbour of each atom.

    ``neighbor_xyz`` (n, M, 3) neighbour positions, ``cutoff`` (n,) local cutoffs. Returns
    common-neighbour counts, bond counts, max and min degree in the common-neighbour graph,
    each ``(n, M)``.
    """
    diff = neighbor_xyz[:, :, None, :] - neighbor_xyz[:, None, :, :]
    bonded = np.einsum("nijk,nijk->nij", diff, diff) < (cutoff**2)[:, None, None]
    m = bonded.shape[1]
    bonded[:, np.arange(m), np.arange(m)] = False
    b = bonded.astype(np.float32)
    b2 = b @ b  # (B^2)[j, k] = common neighbours of j and k among the shell
    n_cn = b.sum(axis=2)
    degree = np.where(bonded, b2, 0)  # degree of k in the common-neighbour graph of j
    n_bonds = degree.sum(axis=2) / 2
    max_deg = degree.max(axis=2)
    min_deg = np.where(bonded, degree, np.inf).min(axis=2)
    return n_cn, n_bonds, max_deg, min_deg


def structure_types(positions) -> np.ndarray:
    """Adaptive-CNA structure type per atom: 'fcc', 'hcp', 'bcc', 'icosahedral' or 'other'.

    Parameters
    ----------
    positions : (n, 3) atom centres (Angstrom). Atoms with fewer than 14 other atoms in the
        model are 'other'.
    """
    positions = np.asarray(positions, float)
    n = len(positions)
    result = np.full(n, "other", dtype="<U11")
    if n < 15:
        return result
    dist, idx = cKDTree(positions).query(positions, k=15)
    factor = (1 + np.sqrt(2)) / 2
    out = np.zeros(n, int) + 4
    chunk = 8192
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        d, nb = dist[sl, 1:], idx[sl, 1:]
        xyz = positions[nb]
        # fcc / hcp / icosahedral: 12 neighbours
        cut12 = factor * d[:, :12].mean(axis=1)
        n_cn, n_b, dmax, dmin = _signatures(xyz[:, :12], cut12)
        s421 = (n_cn == 4) & (n_b == 2) & (dmax == 1)
        s422 = (n_cn == 4) & (n_b == 2) & (dmax == 2)
        s555 = (n_cn == 5) & (n_b == 5) & (dmin == 2) & (dmax == 2)
        c421, c422, c555 = s421.sum(1), s422.sum(1), s555.sum(1)
        kind = np.full(len(d), 4)
        kind[c421 == 12] = 0
        kind[(c421 == 6) & (c422 == 6)] = 1
        kind[c555 == 12] = 3
        # bcc: 14 neighbours, only for atoms not yet typed
        rest = np.flatnonzero(kind == 4)
        if len(rest):
            dr = d[rest]
            cut14 = factor * (2 / np.sqrt(3) * dr[:, :8].mean(1) + dr[:, 8:14].mean(1)) / 2
            n_cn, n_b, dmax, dmin = _signatures(xyz[rest, :14], cut14)
            ring = (dmin == 2) & (dmax == 2)
            s666 = (n_cn == 6) & (n_b == 6) & ring
            s444 = (n_cn == 4) & (n_b == 4) & ring
            bcc = (s666.sum(1) == 8) & (s444.sum(1) == 6)
            kind[rest[bcc]] = 2
        out[sl] = kind
    return np.asarray(STRUCTURE_TYPES)[out].astype("<U11")
