"""The `napari-aet align` command on a simulated series written to disk."""

import numpy as np
import pytest

from napari_aet.cli import main
from napari_aet.core import align
from napari_aet.core.simulate import simulate
from napari_aet.io.alignment import load_alignment
from napari_aet.io.tilt_series import read_tilt_series, write_angles, write_mrc


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("align_cli")
    sim = simulate("silica", n_angles=21, shift_sigma_px=3.0)
    write_mrc(folder / "tilt.mrc", sim.tilt_series, sim.pixel_size_A)
    write_angles(folder / "angles.tlt", sim.angles_deg)
    return folder, sim


def test_align_command_writes_aligned_series_and_shifts(files, capsys):
    folder, sim = files
    out = folder / "aligned.mrc"
    rc = main(["align", str(folder / "tilt.mrc"), "--angles", str(folder / "angles.tlt"),
               "-o", str(out), "--shifts-out", str(folder / "shifts.csv")])
    assert rc == 0
    aligned, pixel = read_tilt_series(out)
    assert pixel == pytest.approx(sim.pixel_size_A, rel=1e-5)
    saved = load_alignment(folder / "shifts.csv")
    res = align.remove_rigid_translation(saved.shifts_px + sim.shifts_px, sim.angles_deg)
    assert np.sqrt(np.mean(res**2, axis=0)).max() <= 0.25
    np.testing.assert_allclose(saved.angles_deg[:, 1], sim.angles_deg[:, 1], atol=1e-5)
    # the saved shifts reproduce the written stack
    np.testing.assert_allclose(align.apply_alignment(sim.tilt_series, saved.shifts_px), aligned,
                               atol=1e-3)
    assert "centre of mass" in capsys.readouterr().err


def test_align_command_with_preprocessing_and_projection_matching(files):
    folder, _ = files
    rc = main(["align", str(folder / "tilt.mrc"), "--angles", str(folder / "angles.tlt"),
               "-o", str(folder / "pm.mrc"), "--denoise", "tv", "--background",
               "--projection-matching", "1", "--shifts-out", str(folder / "pm.json"), "--quiet"])
    assert rc == 0
    assert load_alignment(folder / "pm.json").steps[-1]["step"] == "projection matching"


def test_align_command_detects_a_support_film(tmp_path, capsys):
    sim = simulate("silica", n_angles=9, shift_sigma_px=2.0, dose_e_per_A2=1e6,
                   background_fraction=0.1, background_ramp=0.3)
    write_mrc(tmp_path / "film.mrc", sim.tilt_series, sim.pixel_size_A)
    write_angles(tmp_path / "film.tlt", sim.angles_deg)
    args = ["align", str(tmp_path / "film.mrc"), "--angles", str(tmp_path / "film.tlt"),
            "--projection-matching", "0"]
    assert main(args + ["-o", str(tmp_path / "auto.mrc")]) == 0
    assert "background subtracted (film level" in capsys.readouterr().err
    assert main(args + ["-o", str(tmp_path / "off.mrc"), "--background", "off"]) == 0
    assert "background left" in capsys.readouterr().err
    film_mean = sim.background.mean() * sim.dose_e_per_A2
    auto, _ = read_tilt_series(tmp_path / "auto.mrc")
    off, _ = read_tilt_series(tmp_path / "off.mrc")
    assert off.mean() - auto.mean() == pytest.approx(film_mean, rel=0.05)  # the film is gone


def test_align_command_bad_input(files, tmp_path, capsys):
    folder, _ = files
    np.savetxt(tmp_path / "short.tlt", np.arange(5.0))
    rc = main(["align", str(folder / "tilt.mrc"), "--angles", str(tmp_path / "short.tlt"),
               "-o", str(tmp_path / "x.mrc")])
    assert rc == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "x.mrc").exists()
    rc = main(["align", str(folder / "tilt.mrc"), "--angles", str(folder / "angles.tlt"),
               "-o", str(tmp_path / "x.tif")])
    assert rc == 2 and ".mrc" in capsys.readouterr().err
