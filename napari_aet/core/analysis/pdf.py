"""Pair distribution function of a finite particle and its first valley (first-shell cutoff).

The finite-particle correction divides the pair-distance histogram by what a uniform density
filling the particle's region would give: the shell volume around each atom that lies inside
the particle (alpha shape). That share is measured by Monte Carlo with uniform random points
inside the region (on coarse 0.25 Angstrom bins; it varies slowly with r), so ``g(r)`` stays
near 1 at large ``r`` instead of falling to 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks
from scipy.spatial import cKDTree

from napari_aet.core.analysis._geometry import (
    ParticleRegion,
    nearest_neighbor_distance,
    particle_region,
    validate_positions,
)


@dataclass
class PairDistribution:
    """A pair distribution function.

    Attributes
    ----------
    r_A : bin centres (Angstrom).
    g : smoothed, finite-particle-corrected g(r), scaled to 1 at large r.
    g_raw : the corrected histogram before smoothing.
    peaks_A : positions of the peaks of ``g`` (Angstrom), nearest first.
    first_peak_A, first_valley_A : first peak and first valley (Angstrom); the valley is the
        first-shell cutoff.
    """

    r_A: np.ndarray
    g: np.ndarray
    g_raw: np.ndarray
    peaks_A: np.ndarray
    first_peak_A: float
    first_valley_A: float
    params: dict = field(default_factory=dict)


def _random_points_inside(region: ParticleRegion, n_points: int, rng) -> np.ndarray:
    """Uniform random points in the particle region: a tetrahedron drawn by volume, then a
    uniform point inside it (Dirichlet barycentric weights)."""
    tets = np.flatnonzero(region.inside)
    vol = region.volumes[tets]
    pick = tets[rng.choice(len(tets), size=n_points, p=vol / vol.sum())]
    weights = rng.dirichlet(np.ones(4), size=n_points)
    return np.einsum("nk,nkd->nd", weights, region.positions[region.simplices[pick]])


#: Pair distances held in memory at once by :func:`pair_histogram` (about 24 bytes each).
PAIR_BLOCK = 4_000_000


def pair_histogram(positions, edges, tree: cKDTree | None = None,
                   block: int = PAIR_BLOCK) -> np.ndarray:
    """Histogram (float counts, on ``edges`` in Angstrom) of the distances of all ordered
    pairs of distinct atoms up to ``edges[-1]``, streamed over blocks of atoms so that about
    ``block`` distances are in memory at once (10^6 atoms need no more than 10^8 bytes)."""
    positions = np.asarray(positions, float)
    tree = tree if tree is not None else cKDTree(positions)
    r_max = float(edges[-1])
    n = len(positions)
    counts = np.zeros(len(edges) - 1)
    if n < 2:
        return counts
    # neighbours per atom, counted around up to 256 atoms spread over the list
    sample = positions[np.linspace(0, n - 1, min(n, 256)).astype(int)]
    per_atom = max(1.0, float(np.mean(tree.query_ball_point(sample, r_max,
                                                            return_length=True))))
    step = int(np.clip(block / per_atom, 1, n))
    for start in range(0, n, step):
        chunk = cKDTree(positions[start:start + step])
        near = chunk.sparse_distance_matrix(tree, r_max, output_type="ndarray")
        distinct = near["i"] + start != near["j"]
        counts += np.histogram(near["v"][distinct], edges)[0]
    return counts


def pair_distribution(positions, r_max_A: float = 12.0, bin_A: float = 0.02,
                      smoothing_A: float = 0.05, region: ParticleRegion | None = None,
                      alpha_A: float | None = None, n_random: int | None = None,
                      seed: int = 0) -> PairDistribution:
    """Finite-particle pair distribution function ``g(r)`` with peaks and first valley.

    Parameters
    ----------
    positions : (n, 3) atom centres (Angstrom).
    r_max_A : largest pair distance (Angstrom).
    bin_A : histogram bin width (Angstrom).
    smoothing_A : Gaussian smoothing sigma (Angstrom); 0 for none.
    region : the particle region for the correction; built with ``alpha_A`` when None.
    alpha_A : alpha radius (Angstrom) for that region; default 1.5 x the median
        nearest-neighbour distance.
    n_random : Monte Carlo points for the shell volumes (default 2 per atom, 5,000-20,000).
    seed : random seed of the Monte Carlo points.
    """
    positions = validate_positions(positions)
    if not (r_max_A > 0 and bin_A > 0 and r_max_A > 10 * bin_A):
        raise ValueError(f"need r_max_A > 10 * bin_A > 0; got r_max_A={r_max_A}, bin_A={bin_A}")
    n = len(positions)
    d_nn = nearest_neighbor_distance(positions)
    if region is None:
        region = particle_region(positions, alpha_A or 1.5 * d_nn)
    rng = np.random.default_rng(seed)
    n_random = int(n_random or np.clip(2 * n, 5_000, 20_000))
    random_points = _random_points_inside(region, n_random, rng)
    volume = region.volume_A3
    edges = np.arange(0.0, r_max_A + bin_A / 2, bin_A)
    tree = cKDTree(positions)
    counts = pair_histogram(positions, edges, tree=tree)
    # Share of each atom's shell that lies inside the particle: smooth in r, so measured on
    # coarse bins from the random points and interpolated.
    coarse = np.arange(0.0, r_max_A + 0.25, 0.25)
    near = tree.sparse_distance_matrix(cKDTree(random_points), r_max_A, output_type="ndarray")
    h_rand = np.histogram(near["v"], coarse)[0].astype(float)
    shell_coarse = 4 / 3 * np.pi * np.diff(coarse**3)
    inside_share = h_rand / (n * len(random_points) / volume * shell_coarse)
    r_coarse = 0.5 * (coarse[1:] + coarse[:-1])
    share = np.interp(0.5 * (edges[1:] + edges[:-1]), np.concatenate([[0.0], r_coarse]),
                      np.concatenate([[1.0], inside_share]))
    shell = 4 / 3 * np.pi * np.diff(edges**3)
    expected = n * (n - 1) / volume * shell * share
    with np.errstate(divide="ignore", invalid="ignore"):
        g_raw = np.where(expected > 0, counts / expected, 0.0)
    r = 0.5 * (edges[1:] + edges[:-1])
    g_raw[r < 0.5 * d_nn] = 0.0  # the self pairs and nothing else live there
    g = gaussian_filter1d(g_raw, smoothing_A / bin_A, mode="nearest") if smoothing_A > 0 else g_raw
    tail = (r > 0.6 * r_max_A) & (expected > 0)
    scale = g[tail].mean() if tail.any() and g[tail].mean() > 0 else 1.0
    g = g / scale
    g_raw = g_raw / scale
    peak_idx, _ = find_peaks(g, prominence=0.05 * g.max())
    peaks = r[peak_idx]
    first_peak, valley = _first_peak_and_valley(r, g, peak_idx, d_nn)
    return PairDistribution(r, g, g_raw, peaks, first_peak, valley,
                            {"r_max_A": r_max_A, "bin_A": bin_A, "smoothing_A": smoothing_A,
                             "alpha_A": region.alpha_A, "n_random": len(random_points)})


def _first_peak_and_valley(r, g, peak_idx, d_nn):
    """First peak near the nearest-neighbour distance, and the deepest point of ``g`` between
    it and 1.55 times its distance (the centre of the flat bottom when there is one)."""
    window = (r > 0.7 * d_nn) & (r < 1.6 * d_nn)
    if not window.any() or g[window].max() <= 0:
        return float("nan"), float("nan")
    i1 = np.flatnonzero(window)[np.argmax(g[window])]
    i2 = min(int(np.searchsorted(r, 1.55 * r[i1])), len(r) - 1)
    if i2 <= i1 + 1:
        return float(r[i1]), float("nan")
    seg = g[i1:i2 + 1]
    low = seg.min()
    flat = np.flatnonzero(seg <= low + 1e-3 * (g[i1] - low))
    run = flat[: np.argmax(np.diff(np.concatenate([flat, [flat[-1] + 2]])) > 1) + 1]
    return float(r[i1]), float(np.mean(r[i1 + run]))
