"""The Zr-ZrO2 core-shell phantom: planted phases, vacancies and nano-pores recovered."""

import numpy as np
from scipy.spatial import cKDTree


def test_phase_agreement(zr_phantom, zr_result):
    sel = zr_result.analysed
    truth = zr_phantom.atoms.features["phase"][sel]
    assert np.mean(zr_result.table["phase"][sel] == truth) >= 0.90


def _match(zr_phantom, zr_result, kind, max_d):
    found = [v for v in zr_result.voids.voids if v.kind == kind]
    planted = [v for v in zr_phantom.voids if v.kind == kind]
    tree = cKDTree(np.array([v.center for v in found]))
    d, k = tree.query(np.array([v.center for v in planted]))
    return found, planted, d, k


def test_every_nano_pore_found_with_volume(zr_phantom, zr_result):
    found, planted, d, k = _match(zr_phantom, zr_result, "nano-pore", 3.0)
    assert np.all(d < 3.0)
    for p, idx in zip(planted, k):
        assert abs(found[idx].volume_A3 / p.volume_A3 - 1) <= 0.15


def test_vacancy_recall_and_false_rate(zr_phantom, zr_result):
    found, planted, d, k = _match(zr_phantom, zr_result, "vacancy", 1.5)
    hit = d < 1.5
    assert hit.mean() >= 0.90
    false = len(found) - len(set(k[hit]))
    assert false <= 0.10 * len(found)


def test_oxidation_higher_in_oxide(zr_phantom, zr_result):
    sel = zr_result.analysed
    truth = zr_phantom.atoms.features["phase"][sel]
    ox = zr_result.table["oxidation"][sel]
    metal = np.nanmean(ox[truth == "metal"])
    for phase in ("crystalline_oxide", "amorphous_oxide"):
        assert np.nanmean(ox[truth == phase]) > metal + 0.1
    assert 1.5 < zr_result.summary["o_per_metal"] < 3.0


def test_profiles_and_table(zr_phantom, zr_result):
    table = zr_result.table
    n = len(zr_phantom.atoms)
    assert all(len(v) == n for v in table.values())
    oxygen = zr_phantom.atoms.elements == "O"
    assert np.isnan(table["boo"][oxygen]).all() and (table["phase"][oxygen] == "").all()
    prof = zr_result.profiles
    assert len(prof["distance_A"]) > 5
    inside = prof["distance_A"] < 0
    outside = prof["distance_A"] > 6
    assert np.nanmean(prof["rho_n"][inside]) > np.nanmean(prof["rho_n"][outside])
    assert np.nanmean(prof["oxidation"][outside]) > np.nanmean(prof["oxidation"][inside])
    assert np.nansum(prof["vacancies_per_1000_atoms"][inside]) == 0
