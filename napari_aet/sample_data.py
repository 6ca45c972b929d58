"""napari sample data: simulated tilt series with their ground-truth atoms."""

from __future__ import annotations

import functools

from napari_aet import layers
from napari_aet.core import simulate as _simulate


@functools.lru_cache(maxsize=2)
def simulate(name: str):
    """The sample's simulation (default acquisition, seed 0), computed once per session."""
    return _simulate.simulate(name)


def _tilt_series(name: str, label: str):
    sim = simulate(name)
    source = layers.provenance_step("simulate", {"phantom": name, "seed": 0,
                                                  "dose_e_per_A2": sim.dose_e_per_A2,
                                                  "r_noise": sim.r_noise})
    return [layers.tilt_series_tuple(sim.tilt_series, sim.angles_deg, sim.pixel_size_A,
                                     name=f"{label} tilt series", provenance=[source],
                                     volume_shape=list(sim.volume_shape))]


def _truth_atoms(name: str, label: str):
    sim = simulate(name)
    source = layers.provenance_step("simulate", {"phantom": name, "seed": 0}, source="ground truth")
    return [layers.atoms_tuple(sim.atoms, sim.pixel_size_A, name=f"{label} true atoms",
                               provenance=[source], ground_truth=True)]


def silica_tilt_series():
    """SiO2 glass (334 Si + 668 O), 55 equal-slope projections over +-72.6 deg, R_noise 10 %."""
    return _tilt_series("silica", "SiO2")


def zr_tilt_series():
    """Zr-ZrO2 core-shell particle (8.6 nm), 55 equal-slope projections, 5e5 e/A^2."""
    return _tilt_series("zr", "Zr-ZrO2")


def silica_truth_atoms():
    return _truth_atoms("silica", "SiO2")


def zr_truth_atoms():
    return _truth_atoms("zr", "Zr-ZrO2")
