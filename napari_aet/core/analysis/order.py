"""Bond-orientational order: local Q4/Q6 averaged over the first shell (Lechner & Dellago 2008).

``q_lm(i) = (1/N_b(i)) sum_j Y_lm(r_ij)`` over the neighbours within the first-shell cutoff;
the averaged ``qbar_lm(i)`` is the mean of ``q_lm`` over ``i`` itself and its neighbours, and
``Q_l(i) = sqrt(4 pi / (2l + 1) sum_m |qbar_lm(i)|^2)``. The normalised BOO is
``sqrt(Q4^2 + Q6^2) / sqrt(Q4_fcc^2 + Q6_fcc^2)``, 1 for perfect fcc.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import sph_harm_y

#: Steinhardt values of perfect first shells (Steinhardt, Nelson & Ronchetti 1983).
REFERENCE_Q = {
    "fcc": (0.19094, 0.57452),
    "hcp": (0.09722, 0.48476),
    "bcc": (0.03637, 0.51069),
    "icosahedral": (0.0, 0.66332),
}
Q4_FCC, Q6_FCC = REFERENCE_Q["fcc"]
#: Normalised BOO below which an atom counts as disordered.
BOO_THRESHOLD = 0.534


def neighbor_pairs(positions, cutoff_A: float) -> np.ndarray:
    """Unordered pairs ``(k, 2)`` of atoms closer than ``cutoff_A`` (Angstrom)."""
    if not cutoff_A > 0:
        raise ValueError(f"first-shell cutoff must be a positive length in Angstrom; got {cutoff_A}")
    return cKDTree(positions).query_pairs(cutoff_A, output_type="ndarray").reshape(-1, 2)


def _qlm(positions, pairs, l):
    """Per-atom ``q_lm`` for m = 0..l (complex ``(n, l + 1)``) and neighbour counts."""
    n = len(positions)
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    d = positions[j] - positions[i]
    r = np.linalg.norm(d, axis=1)
    polar = np.arccos(np.clip(d[:, 0] / r, -1, 1))  # any fixed axis: Q_l is rotation invariant
    azimuth = np.arctan2(d[:, 1], d[:, 2])
    counts = np.bincount(i, minlength=n).astype(float)
    q = np.zeros((n, l + 1), complex)
    for m in range(l + 1):
        y = sph_harm_y(l, m, polar, azimuth)
        q[:, m] = np.bincount(i, y.real, n) + 1j * np.bincount(i, y.imag, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        q /= counts[:, None]
    return q, counts


def _ql_from_qlm(q, l):
    power = np.abs(q[:, 0]) ** 2 + 2 * np.sum(np.abs(q[:, 1:]) ** 2, axis=1)
    return np.sqrt(4 * np.pi / (2 * l + 1) * power)


def steinhardt(positions, cutoff_A: float, ls=(4, 6), average: bool = True,
               pairs: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """Per-atom ``Q_l`` for each ``l`` in ``ls``.

    Parameters
    ----------
    positions : (n, 3) atom centres (Angstrom).
    cutoff_A : first-shell cutoff (Angstrom).
    average : Lechner-Dellago average over the atom and its neighbours (True) or the plain
        Steinhardt local value (False).
    pairs : precomputed neighbour pairs (from :func:`neighbor_pairs`).

    Atoms without neighbours get NaN.
    """
    positions = np.asarray(positions, float)
    if pairs is None:
        pairs = neighbor_pairs(positions, cutoff_A)
    n = len(positions)
    out = {}
    for l in ls:
        q, counts = _qlm(positions, pairs, l)
        if average:
            lonely = counts == 0
            q = np.where(lonely[:, None], 0, q)
            total = q.copy()
            for a, b in ((0, 1), (1, 0)):
                src, dst = pairs[:, a], pairs[:, b]
                for m in range(l + 1):
                    total[:, m] += np.bincount(dst, q[src, m].real, n) + 1j * np.bincount(
                        dst, q[src, m].imag, n)
            q = total / (counts + 1)[:, None]
            q[lonely] = np.nan
        out[l] = _ql_from_qlm(q, l)
    return out


def normalized_boo(q4, q6) -> np.ndarray:
    """``sqrt(Q4^2 + Q6^2) / sqrt(Q4_fcc^2 + Q6_fcc^2)``: 1 for perfect fcc."""
    return np.hypot(q4, q6) / np.hypot(Q4_FCC, Q6_FCC)


def bond_orientational_order(positions, cutoff_A: float, threshold: float = BOO_THRESHOLD,
                             pairs: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Averaged local Q4, Q6, normalised BOO and the ordered/disordered flag per atom.

    Returns a dict with ``q4``, ``q6``, ``boo`` and ``ordered`` (``boo >= threshold``).
    """
    q = steinhardt(positions, cutoff_A, (4, 6), average=True, pairs=pairs)
    boo = normalized_boo(q[4], q[6])
    return {"q4": q[4], "q6": q[6], "boo": boo, "ordered": np.nan_to_num(boo) >= threshold}
