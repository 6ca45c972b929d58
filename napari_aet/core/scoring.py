"""Scoring traced atoms against a known model: one-to-one matching, recall, precision, RMSD.

Matching is one-to-one within a cutoff (Angstrom) after removing a global shift: candidate
pairs within the cutoff come from a k-d tree, the bipartite graph splits into connected
components, and each component is solved exactly by the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``), maximising the number of matches first and then
minimising the summed squared distance. The shift is the mean displacement of matched pairs,
re-estimated until it settles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from napari_aet.core.atoms import Atoms
from napari_aet.core.parameters import parameter


@dataclass
class ScoreParameters:
    """Settings of scoring traced atoms against known ones."""

    cutoff_A: float = parameter(1.0, unit="A", min=0.1, max=5.0,
                                help="a traced atom within this distance of a true one (after "
                                     "the global shift) matches it; one-to-one")


def match_points(traced_A: np.ndarray, truth_A: np.ndarray,
                 cutoff_A: float = ScoreParameters.cutoff_A):
    """One-to-one matching of two point sets within ``cutoff_A``.

    Returns
    -------
    pairs : ``(k, 2)`` int array of (traced index, truth index).
    distances_A : ``(k,)`` distances of the pairs.
    """
    traced_A = np.asarray(traced_A, float).reshape(-1, 3)
    truth_A = np.asarray(truth_A, float).reshape(-1, 3)
    if not cutoff_A > 0:
        raise ValueError(f"cutoff must be a positive distance in Angstrom; got {cutoff_A}")
    n_a, n_b = len(traced_A), len(truth_A)
    if n_a == 0 or n_b == 0:
        return np.zeros((0, 2), int), np.zeros(0)
    near = cKDTree(traced_A).sparse_distance_matrix(cKDTree(truth_A), cutoff_A,
                                                    output_type="coo_matrix")
    rows, cols = near.row, near.col
    d = np.linalg.norm(traced_A[rows] - truth_A[cols], axis=1)
    ok = d <= cutoff_A
    rows, cols, d = rows[ok], cols[ok], d[ok]
    if len(rows) == 0:
        return np.zeros((0, 2), int), np.zeros(0)
    # Components of the bipartite graph (traced nodes 0..n_a-1, truth nodes n_a..).
    graph = sparse.coo_matrix((np.ones(len(rows)), (rows, cols + n_a)), shape=(n_a + n_b,) * 2)
    _, comp = connected_components(graph, directed=False)
    edge_comp = comp[rows]
    order = np.argsort(edge_comp, kind="stable")
    rows, cols, d, edge_comp = rows[order], cols[order], d[order], edge_comp[order]
    starts = np.flatnonzero(np.r_[True, edge_comp[1:] != edge_comp[:-1]])
    ends = np.r_[starts[1:], len(rows)]
    sizes = ends - starts
    pairs, dists = [], []
    single = sizes == 1  # the common case: one traced atom near one true atom
    s = starts[single]
    pairs.append(np.stack([rows[s], cols[s]], 1))
    dists.append(d[s])
    big = 1e6
    for a, b in zip(starts[~single], ends[~single]):
        r, c, dd = rows[a:b], cols[a:b], d[a:b]
        ur, ir = np.unique(r, return_inverse=True)
        uc, ic = np.unique(c, return_inverse=True)
        cost = np.full((len(ur), len(uc)), big)
        cost[ir, ic] = dd**2
        ri, ci = linear_sum_assignment(cost)
        real = cost[ri, ci] < big
        pairs.append(np.stack([ur[ri[real]], uc[ci[real]]], 1))
        dists.append(np.sqrt(cost[ri[real], ci[real]]))
    pairs = np.concatenate(pairs).astype(int)
    dists = np.concatenate(dists)
    order = np.argsort(pairs[:, 0], kind="stable")
    return pairs[order], dists[order]


@dataclass
class MatchScore:
    """Outcome of matching traced atoms to a known model.

    ``recall`` = matched / true atoms, ``precision`` = matched / traced atoms (by position,
    whatever the labels); ``rmsd_A`` over matched pairs after removing ``shift_A`` (z, y, x,
    Angstrom, traced minus truth). ``label_accuracy``: share of matched pairs with the same
    element. ``confusion[(true, traced)]``: counts of matched pairs. ``by_element[e]``:
    ``n_true``, ``n_traced`` (labelled e), ``found`` (true e matched to any label),
    ``recall`` (true e matched and labelled e), ``precision`` (labelled e matched to a true e).
    """

    recall: float
    precision: float
    rmsd_A: float
    n_true: int
    n_traced: int
    n_matched: int
    shift_A: np.ndarray
    label_accuracy: float
    confusion: dict = field(default_factory=dict)
    by_element: dict = field(default_factory=dict)
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), int))
    distances_A: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def summary(self) -> str:
        """One line per figure, for logs and benchmark output."""
        lines = [f"recall {100 * self.recall:.2f}% ({self.n_matched}/{self.n_true}), precision "
                 f"{100 * self.precision:.2f}% ({self.n_matched}/{self.n_traced}), RMSD "
                 f"{100 * self.rmsd_A:.1f} pm, labels {100 * self.label_accuracy:.2f}%"]
        for e, s in self.by_element.items():
            lines.append(f"  {e}: {s['n_true']} true, {s['n_traced']} traced, found "
                         f"{100 * s['found']:.2f}%, recall {100 * s['recall']:.2f}%, precision "
                         f"{100 * s['precision']:.2f}%")
        return "\n".join(lines)


def score_atoms(traced: Atoms, truth: Atoms, cutoff_A: float = ScoreParameters.cutoff_A,
                remove_shift: bool = True,
                max_rounds: int = 10, initial_shift_A=None) -> MatchScore:
    """Match ``traced`` to ``truth`` one-to-one within ``cutoff_A`` and score it.

    Parameters
    ----------
    traced, truth : atom models in the same frame (Angstrom).
    cutoff_A : largest distance of a match (about 1 Angstrom in the literature).
    remove_shift : estimate and remove a global shift (mean displacement of matched pairs,
        iterated) before the final matching.
    initial_shift_A : starting guess of that shift (z, y, x), e.g. the difference of the
        centroids when the traced model comes from re-centred (aligned) data.
    """
    shift = np.zeros(3) if initial_shift_A is None else np.asarray(initial_shift_A, float).copy()
    pairs, dist = match_points(traced.positions - shift, truth.positions, cutoff_A)
    if remove_shift:
        for _ in range(int(max_rounds)):
            if len(pairs) == 0:
                break
            new = np.mean(traced.positions[pairs[:, 0]] - truth.positions[pairs[:, 1]], axis=0)
            moved = np.linalg.norm(new - shift)
            shift = new
            pairs, dist = match_points(traced.positions - shift, truth.positions, cutoff_A)
            if moved < 1e-5:
                break
    n_true, n_traced, n_m = len(truth), len(traced), len(pairs)
    t_el = truth.elements[pairs[:, 1]] if n_m else np.zeros(0, "<U3")
    r_el = traced.elements[pairs[:, 0]] if n_m else np.zeros(0, "<U3")
    confusion: dict = {}
    for a, b in zip(t_el, r_el):
        confusion[(str(a), str(b))] = confusion.get((str(a), str(b)), 0) + 1
    by_element = {}
    for e in sorted(set(truth.elements.tolist()) | set(traced.elements.tolist())):
        nt = int(np.sum(truth.elements == e))
        nr = int(np.sum(traced.elements == e))
        correct = int(np.sum((t_el == e) & (r_el == e)))
        by_element[e] = dict(n_true=nt, n_traced=nr,
                             found=float(np.sum(t_el == e) / nt) if nt else float("nan"),
                             recall=correct / nt if nt else float("nan"),
                             precision=correct / nr if nr else float("nan"))
    return MatchScore(
        recall=n_m / n_true if n_true else float("nan"),
        precision=n_m / n_traced if n_traced else float("nan"),
        rmsd_A=float(np.sqrt(np.mean(dist**2))) if n_m else float("nan"),
        n_true=n_true, n_traced=n_traced, n_matched=n_m, shift_A=shift,
        label_accuracy=float(np.mean(t_el == r_el)) if n_m else float("nan"),
        confusion=confusion, by_element=by_element, pairs=pairs, distances_A=dist,
    )


def volume_correlation(volume, reference, invariant: bool = True) -> float:
    """Pearson correlation of two volumes of the same size.

    With ``invariant`` the best value over every axis flip and every axis permutation that
    keeps the shape (48 signed permutations for a cube), for volumes written in another frame
    convention (MATLAB ``(x, y, z)`` against ours, a flipped tilt direction).
    """
    from itertools import permutations, product

    volume = np.asarray(volume, np.float64)
    reference = np.asarray(reference, np.float64)
    if volume.ndim != reference.ndim or sorted(volume.shape) != sorted(reference.shape):
        raise ValueError(f"volumes of shapes {volume.shape} and {reference.shape} cannot be "
                         "compared")
    ref = (reference - reference.mean()).ravel()
    ref /= np.linalg.norm(ref)
    best = -1.0
    orders = permutations(range(volume.ndim)) if invariant else [tuple(range(volume.ndim))]
    for order in orders:
        moved = np.transpose(volume, order)
        if moved.shape != reference.shape:
            continue
        for flips in (product((False, True), repeat=volume.ndim) if invariant else [()]):
            axes = tuple(i for i, f in enumerate(flips) if f)
            candidate = np.flip(moved, axes) if axes else moved
            c = candidate.ravel() - candidate.mean()
            best = max(best, float(c @ ref / np.linalg.norm(c)))
    return best
