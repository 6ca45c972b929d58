"""Pair distance histogram of the PDF: streamed blocks (``pair_histogram``) against every pair
held at once (``cKDTree.query_pairs``, the former code), peak memory and time.

.venv/bin/python benchmarks/bench_pdf_memory.py [N_ATOMS]   (default 100,000; fcc Pt, 12 A)
"""

import sys
import time
import tracemalloc

import numpy as np
from scipy.spatial import cKDTree

from napari_aet.core.analysis.pdf import pair_histogram


def fcc(n_atoms, a=3.92):
    k = int(np.ceil((n_atoms / 4) ** (1 / 3)))
    base = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    cells = np.stack(np.meshgrid(*[np.arange(k)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    return ((cells + base).reshape(-1, 3) * a)[:n_atoms]


def measure(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak / 2**20


def all_at_once(positions, edges):
    tree = cKDTree(positions)
    pairs = tree.query_pairs(edges[-1], output_type="ndarray")
    dist = np.linalg.norm(positions[pairs[:, 0]] - positions[pairs[:, 1]], axis=1)
    return 2.0 * np.histogram(dist, edges)[0]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    positions = fcc(n) + np.random.default_rng(0).normal(0, 0.05, (n, 3))
    edges = np.arange(0.0, 12.0 + 0.01, 0.02)
    streamed, t_s, m_s = measure(lambda: pair_histogram(positions, edges))
    whole, t_w, m_w = measure(lambda: all_at_once(positions, edges))
    assert np.array_equal(streamed, whole)
    print(f"{n} atoms, {int(whole.sum() / 2)} pairs within 12 A")
    print(f"streamed:    {t_s:6.1f} s, peak {m_s:7.0f} MiB")
    print(f"all at once: {t_w:6.1f} s, peak {m_w:7.0f} MiB")
    print(f"memory ratio {m_w / m_s:.1f}x less streamed; time ratio {t_s / t_w:.2f}")


if __name__ == "__main__":
    main()
