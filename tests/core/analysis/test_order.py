import numpy as np
import pytest

from napari_aet.core.analysis.order import (
    REFERENCE_Q,
    bond_orientational_order,
    neighbor_pairs,
    steinhardt,
)
from napari_aet.core.analysis.structure import structure_types

from .conftest import ball, hcp_points, icosahedron, lattice

FCC = lattice([[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]], 4.0)
BCC = lattice([[0, 0, 0], [.5, .5, .5]], 3.0)


def _clusters():
    return {
        "fcc": (ball(FCC, 9.0), 4.0 / np.sqrt(2) * 1.2),
        "hcp": (hcp_points(3.0, 8.0), 3.5),
        "bcc": (ball(BCC, 8.0), 3.0 * 1.2),  # 8 + 6 neighbours
    }


@pytest.mark.parametrize("kind", ["fcc", "hcp", "bcc"])
def test_perfect_clusters_match_steinhardt_values(kind):
    points, cutoff = _clusters()[kind]
    centre = np.argmin(np.linalg.norm(points, axis=1))
    q4_ref, q6_ref = REFERENCE_Q[kind]
    for average in (False, True):  # averaged: centre and its whole shell are bulk-like
        q = steinhardt(points, cutoff, average=average)
        assert q[4][centre] == pytest.approx(q4_ref, abs=1e-4)
        assert q[6][centre] == pytest.approx(q6_ref, abs=1e-4)


def test_icosahedron_centre():
    # Only the centre of a 13-atom icosahedron has an icosahedral shell: plain Steinhardt.
    q = steinhardt(icosahedron(2.0), 2.3, average=False)
    assert q[4][0] == pytest.approx(0.0, abs=1e-4)
    assert q[6][0] == pytest.approx(REFERENCE_Q["icosahedral"][1], abs=1e-4)


def test_fcc_bulk_boo_is_one_and_rotation_invariant():
    points = ball(FCC, 12.0)
    rng = np.random.default_rng(0)
    a, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    bulk = np.linalg.norm(points, axis=1) < 4.5
    for pts in (points, points @ a.T):
        o = bond_orientational_order(pts, 3.4)
        assert np.allclose(o["boo"][bulk], 1.0, atol=1e-4)
        assert o["ordered"][bulk].all()


def test_random_gas_is_disordered():
    rng = np.random.default_rng(1)
    pts = rng.uniform(-15, 15, (3000, 3))
    pts = pts[np.linalg.norm(pts, axis=1) < 15]
    keep = np.ones(len(pts), bool)
    for _i, j in neighbor_pairs(pts, 1.0):
        keep[j] = False
    o = bond_orientational_order(pts[keep], 3.0)
    assert np.nanmean(o["boo"]) < 0.534


def test_structure_types_of_perfect_lattices():
    for kind, (points, _) in _clusters().items():
        centre = np.argmin(np.linalg.norm(points, axis=1))
        st = structure_types(points)
        assert st[centre] == kind
        assert set(st) <= {kind, "other"}
    ico = np.concatenate([icosahedron(2.0), icosahedron(4.5)[1:]])
    assert structure_types(ico)[0] == "icosahedral"


def test_structure_types_tolerate_small_noise():
    pts = ball(FCC, 12.0) + np.random.default_rng(2).normal(0, 0.08, (len(ball(FCC, 12.0)), 3))
    st = structure_types(pts)
    bulk = np.linalg.norm(pts, axis=1) < 7
    assert np.mean(st[bulk] == "fcc") > 0.95


def test_averaged_q_matches_freud():
    freud = pytest.importorskip("freud")
    rng = np.random.default_rng(4)
    pts = ball(FCC, 12.0) + rng.normal(0, 0.15, (len(ball(FCC, 12.0)), 3))
    ours = steinhardt(pts, 3.4, average=True)
    box = freud.box.Box.cube(60)
    for l in (4, 6):
        ql = freud.order.Steinhardt(l, average=True)
        ql.compute((box, pts.astype(np.float32)), neighbors={"r_max": 3.4, "exclude_ii": True})
        assert np.allclose(ours[l], ql.particle_order, atol=2e-4)
