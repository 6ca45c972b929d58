"""Scoring against a known model: matching, shift removal, recall, precision, RMSD, confusion."""

import numpy as np
import pytest

from napari_aet.core.atoms import Atoms
from napari_aet.core.scoring import match_points, score_atoms
from napari_aet.core.simulate import phantom


@pytest.fixture(scope="module")
def silica():
    return phantom("silica").atoms


def test_perfect_match_after_a_global_shift(silica):
    shift = np.array([0.3, -0.2, 0.25])
    score = score_atoms(silica.shifted(shift), silica, cutoff_A=1.0)
    assert score.recall == 1.0 and score.precision == 1.0
    assert score.rmsd_A < 1e-9
    np.testing.assert_allclose(score.shift_A, shift, atol=1e-9)
    assert score.label_accuracy == 1.0
    assert score.confusion == {("O", "O"): 668, ("Si", "Si"): 334}


def test_rmsd_of_known_jitter(silica):
    rng = np.random.default_rng(0)
    sigma = 0.05  # per axis, Angstrom: 3D RMSD sqrt(3) * 0.05 = 8.7 pm
    jittered = Atoms(silica.positions + rng.normal(0, sigma, silica.positions.shape),
                     silica.elements)
    score = score_atoms(jittered, silica)
    assert score.rmsd_A == pytest.approx(np.sqrt(3) * sigma, rel=0.06)
    assert score.n_matched == len(silica)


def test_missing_extra_and_mislabelled_atoms(silica):
    rng = np.random.default_rng(1)
    keep = np.ones(len(silica), bool)
    keep[rng.choice(len(silica), 20, replace=False)] = False  # 20 missed
    traced = silica.select(keep)
    elements = traced.elements.copy()
    o_idx = np.flatnonzero(elements == "O")[:5]
    elements[o_idx] = "Si"  # 5 O called Si
    far = silica.positions.max(0) + 10 + rng.uniform(0, 5, (7, 3))  # 7 spurious, far away
    traced = Atoms(np.concatenate([traced.positions, far]),
                   np.concatenate([elements, ["O"] * 7]))
    score = score_atoms(traced, silica, remove_shift=False)
    assert score.n_matched == len(silica) - 20
    assert score.recall == pytest.approx((len(silica) - 20) / len(silica))
    assert score.precision == pytest.approx((len(silica) - 20) / (len(silica) - 20 + 7))
    assert score.confusion[("O", "Si")] == 5
    assert score.label_accuracy == pytest.approx(1 - 5 / (len(silica) - 20))
    o = score.by_element["O"]
    n_o_missing = int(np.sum(silica.elements[~keep] == "O"))
    assert o["n_true"] == 668
    assert o["found"] == pytest.approx((668 - n_o_missing) / 668)
    assert o["recall"] == pytest.approx((668 - n_o_missing - 5) / 668)


def test_one_to_one_matching_is_optimal_where_greedy_fails():
    """Traced a sits 0.4 A from truth 1 and 0.5 A from truth 0; traced b only reaches
    truth 1. Nearest-first would give a->1 and leave b unmatched; optimal is a->0, b->1."""
    truth = np.array([[0, 0, 0.0], [0, 0, 0.9]])
    traced = np.array([[0, 0, 0.5], [0, 0, 1.7]])
    pairs, dist = match_points(traced, truth, cutoff_A=0.85)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 0), (1, 1)]
    np.testing.assert_allclose(sorted(dist), [0.5, 0.8])


def test_cutoff_and_empty_inputs():
    a = np.zeros((1, 3))
    b = np.array([[0, 0, 1.5]])
    assert len(match_points(a, b, 1.0)[0]) == 0
    assert len(match_points(a, b, 2.0)[0]) == 1
    assert len(match_points(np.zeros((0, 3)), b, 1.0)[0]) == 0
    with pytest.raises(ValueError, match="cutoff"):
        match_points(a, b, 0.0)
    score = score_atoms(Atoms(np.zeros((0, 3)), []), Atoms(b, ["Zr"]))
    assert score.recall == 0.0 and np.isnan(score.precision)
    assert "recall 0.00%" in score.summary()


def test_volume_correlation_is_flip_and_permutation_invariant():
    from napari_aet.core.scoring import volume_correlation

    rng = np.random.default_rng(4)
    reference = rng.random((6, 5, 6))
    moved = np.flip(np.transpose(reference, (2, 1, 0)), (0, 1))
    assert volume_correlation(moved, reference) == pytest.approx(1.0)
    assert volume_correlation(moved, reference, invariant=False) < 0.5
    assert volume_correlation(reference + rng.random((6, 5, 6)), reference) < 0.9
    with pytest.raises(ValueError, match="cannot be compared"):
        volume_correlation(rng.random((6, 5, 5)), reference)
