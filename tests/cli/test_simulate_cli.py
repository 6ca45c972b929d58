import json
import subprocess
import sys

import numpy as np
import pytest

from napari_aet.cli import main
from napari_aet.core.simulate import simulate
from napari_aet.io.coordinates import read_atoms
from napari_aet.io.tilt_series import read_angles, read_tilt_series


def test_simulate_writes_series_angles_and_truth(tmp_path):
    out = tmp_path / "fcc"
    assert main(["simulate", "fcc", "-o", str(out), "--dose", "1e6", "--n-angles", "21",
                 "--tilt-range", "60", "--shift-sigma", "1.5", "--seed", "3"]) == 0
    series, px = read_tilt_series(out / "tilt_series.mrc")
    angles = read_angles(out / "angles.tlt", n_images=len(series))
    atoms = read_atoms(out / "truth_atoms.xyz")
    assert series.shape[0] == 21 and px == pytest.approx(0.35)
    assert angles[:, 1].max() == pytest.approx(60, abs=1e-4)
    sim = simulate("fcc", seed=3, n_angles=21, tilt_range_deg=60, dose_e_per_A2=1e6, shift_sigma_px=1.5)
    np.testing.assert_array_equal(series, sim.tilt_series)
    np.testing.assert_allclose(atoms.positions, sim.atoms.positions, atol=1e-6)
    record = json.loads((out / "simulation.json").read_text())
    np.testing.assert_allclose(record["shifts_px"], sim.shifts_px, atol=1e-4)
    assert record["r_noise"] == pytest.approx(sim.r_noise)


def test_simulate_frames_and_jittered_angles(tmp_path):
    out = tmp_path / "frames"
    assert main(["simulate", "fcc", "-o", str(out), "--frames", "3", "--drift", "0.5",
                 "--angle-jitter", "0.2", "--n-angles", "11"]) == 0
    frames, _ = read_tilt_series(out / "frames.mrc")
    assert frames.shape[0] == 33
    assert read_angles(out / "angles.tlt").shape == (11, 3)  # the nominal (recorded) angles
    true = np.array(json.loads((out / "simulation.json").read_text())["true_angles_deg"])
    assert 0 < np.abs(true - read_angles(out / "angles.tlt")).max() < 1.5


@pytest.mark.parametrize("argv,message", [
    (["simulate", "fcc", "-o", "X", "--tilt-range", "95"], "--tilt-range must be between 0 and 90"),
    (["simulate", "fcc", "-o", "X", "--n-angles", "0"], "--n-angles must be at least 1"),
    (["simulate", "fcc", "-o", "X", "--dose", "-5"], "--dose must be >= 0"),
    (["simulate", "fcc", "-o", "X", "--pixel-size", "0"], "--pixel-size must be a positive number"),
    (["simulate", "fcc", "-o", "X", "--pixel-size", "nan"], "--pixel-size must be a positive"),
    (["simulate", "fcc", "-o", "X", "--blur", "0"], "--blur must be a positive number of Angstrom"),
    (["simulate", "fcc", "-o", "X", "--drift", "-1"], "--drift must be >= 0"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, argv, message):
    argv = [a.replace("X", str(tmp_path / "o")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing written for bad input


def test_command_line_entry_point_help_documents_units():
    result = subprocess.run([sys.executable, "-m", "napari_aet.cli", "simulate", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0
    assert "e/A^2" in result.stdout and "Angstrom" in result.stdout and "degrees" in result.stdout
    result = subprocess.run([sys.executable, "-m", "napari_aet.cli", "simulate", "gold", "-o", "x"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice" in result.stderr
