"""Fixtures of the structure-analysis tests: perfect lattices, the Zr-ZrO2 phantom analysed."""

from pathlib import Path

import numpy as np
import pytest

from napari_aet.core.phantoms import _FCC, cubic_lattice, random_rotation

SHARED_DATA = Path(__file__).parents[3] / ".." / "shared" / "data"
ZRO2_A = 5.09


def lattice(basis, a, n=4):
    """Points of a cubic lattice with fractional ``basis`` in ``2n+1`` cells per axis."""
    cells = np.stack(np.meshgrid(*[np.arange(-n, n + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return ((cells[:, None] + np.asarray(basis, float)[None]) * a).reshape(-1, 3)


def ball(points, radius):
    return points[np.linalg.norm(points, axis=1) < radius]


def hcp_points(a=3.0, radius=8.0):
    c = a * np.sqrt(8 / 3)
    r = np.arange(-6, 7)
    i, j, k = (g.ravel() for g in np.meshgrid(r, r, np.arange(-4, 5), indexing="ij"))
    base = np.stack([i * a + j * a / 2, j * a * np.sqrt(3) / 2, k * c], 1)
    pts = np.concatenate([base, base + [a / 2, a / (2 * np.sqrt(3)), c / 2]])
    return ball(pts, radius)


def icosahedron(r=1.0):
    phi = (1 + 5**0.5) / 2
    v = [[0, s1, s2 * phi] for s1 in (1, -1) for s2 in (1, -1)]
    v += [[s1, s2 * phi, 0] for s1 in (1, -1) for s2 in (1, -1)]
    v += [[s2 * phi, 0, s1] for s1 in (1, -1) for s2 in (1, -1)]
    v = np.array(v, float)
    return np.concatenate([[[0, 0, 0]], r * v / np.linalg.norm(v[0])])


@pytest.fixture(scope="session")
def zro2_sublattice():
    """Zr sublattice of ideal cubic ZrO2 (fcc, a = 5.09 A), a randomly rotated 20 A ball."""
    rot = random_rotation(np.random.default_rng(3))
    return ball(cubic_lattice(_FCC, ZRO2_A, 24, rotation=rot), 20.0)


@pytest.fixture(scope="session")
def zr_phantom():
    from napari_aet.core.simulate import phantom

    return phantom("zr")


@pytest.fixture(scope="session")
def zr_result(zr_phantom):
    """All analyses of the phantom's Zr atoms with the Zr preset values of METHODS.md."""
    from napari_aet.core.analysis import AnalysisParameters, run_analysis

    return run_analysis(zr_phantom.atoms, AnalysisParameters(elements=["Zr"], first_shell_A=4.5))
