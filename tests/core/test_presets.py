"""Material presets shipped in resources/presets."""

import pytest

from napari_aet.core.presets import load_preset, preset_names
from napari_aet.core.trace import DEFAULTS, trace_parameters

EXPECTED = {"Zr", "ZrO2", "SiO2", "Si", "Pt", "PdPt", "generic"}


def test_every_issue_preset_is_shipped():
    assert EXPECTED <= set(preset_names())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_is_complete_and_valid(name):
    preset = load_preset(name)
    assert preset["name"] == name
    assert preset["elements"]
    assert set(preset["trace"]) <= set(DEFAULTS)
    params = trace_parameters(name)  # validates every value
    assert params["min_distance_A"] > 0 and params["integration_radius_A"] > 0


def test_published_minimum_distances():
    # METHODS 5: d_min = bond - 3 sigma: Zr 2.0 A, SiO2 1.0 A.
    assert load_preset("Zr")["trace"]["min_distance_A"] == 2.0
    assert load_preset("ZrO2")["trace"]["min_distance_A"] == 2.0
    assert load_preset("SiO2")["trace"]["min_distance_A"] == 1.0
    assert set(load_preset("SiO2")["elements"]) == {"Si", "O"}
    assert set(load_preset("PdPt")["elements"]) == {"Pd", "Pt"}


def test_names_are_case_insensitive_and_copies():
    a = load_preset("sio2")
    a["elements"].append("Ge")
    assert load_preset("SIO2")["elements"] == ["Si", "O"]


def test_unknown_preset_lists_the_known_names():
    with pytest.raises(ValueError, match=r"unknown material preset 'Au'; known presets: .*PdPt.*SiO2"):
        load_preset("Au")
