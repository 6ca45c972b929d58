"""The ``napari-aet trace`` command."""

import numpy as np
import pytest

from napari_aet.cli import main
from napari_aet.core.geometry import grid_center
from napari_aet.core.scoring import score_atoms
from napari_aet.core.simulate import phantom, voxelize_atoms
from napari_aet.io.coordinates import read_atoms
from napari_aet.io.tilt_series import write_mrc

PX = 0.35


@pytest.fixture(scope="module")
def silica_volume(tmp_path_factory):
    """A 96^3 crop-free rendering of the SiO2 phantom shrunk to fit (an 18 A cube of it)."""
    shape = (96, 96, 96)
    atoms = phantom("silica").atoms
    inner = atoms.select(np.all(np.abs(atoms.positions) < 9.0, axis=1))
    truth = inner.shifted(grid_center(shape) * PX)
    volume = voxelize_atoms(truth, shape, PX, 0.40).astype(np.float32)
    folder = tmp_path_factory.mktemp("trace_cli")
    mrc = folder / "volume.mrc"
    write_mrc(mrc, volume, PX)
    npy = folder / "volume.npy"
    np.save(npy, volume)
    return mrc, npy, truth


@pytest.mark.parametrize("ext", [".xyz", ".extxyz", ".csv", ".mat"])
def test_trace_writes_coordinates_in_angstrom(silica_volume, tmp_path, ext, capsys):
    mrc, _, truth = silica_volume
    out = tmp_path / f"atoms{ext}"
    assert main(["trace", str(mrc), "-o", str(out), "--preset", "SiO2", "--quiet"]) == 0
    assert "atoms (O " in capsys.readouterr().out
    atoms = read_atoms(out)
    score = score_atoms(atoms, truth, cutoff_A=1.0)
    assert score.recall == 1.0 and score.precision == 1.0
    assert score.label_accuracy == 1.0
    assert score.rmsd_A < 0.05
    if ext != ".xyz":  # the feature-carrying formats keep the tracing features
        for name in ("integrated_intensity", "peak_height", "fit_residual", "blur_sigma_A",
                     "nn_distance_A", "class_margin"):
            assert name in atoms.features, name
        np.testing.assert_allclose(np.median(atoms.features["nn_distance_A"]), 1.61, atol=0.05)


def test_trace_options_elements_and_min_distance(silica_volume, tmp_path, capsys):
    _, npy, truth = silica_volume
    out = tmp_path / "atoms.xyz"
    # A .npy has no pixel size: --pixel-size gives it. One species, d_min 2 A: every O
    # (1.61 A from a brighter Si) is rejected, only the Si remain.
    code = main(["trace", str(npy), "--pixel-size", str(PX), "-o", str(out), "--elements", "Si",
                 "--min-distance", "2.0"])
    assert code == 0
    err = capsys.readouterr().err
    assert "[1/5] candidates" in err and "[5/5] features" in err
    atoms = read_atoms(out)
    si = truth.select(truth.elements == "Si")
    score = score_atoms(atoms, si)
    assert score.recall == 1.0 and score.precision == 1.0


@pytest.mark.parametrize("argv_extra, message", [
    (["--preset", "Unobtainium"], "known presets"),
    (["--elements", "Si,Qq"], "not an element symbol"),
    (["--min-distance", "-1"], "min_distance_A must be positive"),
])
def test_bad_options_exit_2(silica_volume, tmp_path, capsys, argv_extra, message):
    mrc, _, _ = silica_volume
    out = tmp_path / "atoms.xyz"
    assert main(["trace", str(mrc), "-o", str(out)] + argv_extra) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_bad_inputs_exit_2(tmp_path, capsys):
    flat = tmp_path / "flat.npy"
    np.save(flat, np.ones((10, 10, 10), np.float32))
    out = tmp_path / "atoms.xyz"
    assert main(["trace", str(flat), "--pixel-size", "0.4", "-o", str(out)]) == 2
    assert "constant" in capsys.readouterr().err
    image = tmp_path / "image.npy"
    np.save(image, np.ones((10, 10), np.float32))
    assert main(["trace", str(image), "--pixel-size", "0.4", "-o", str(out)]) == 2
    assert "3" in capsys.readouterr().err
    assert main(["trace", str(flat), "--pixel-size", "0.4", "-o", str(tmp_path / "a.pdf")]) == 2
    assert "unsupported output format" in capsys.readouterr().err
    assert main(["trace", str(flat), "-o", str(out)]) == 2
    assert "pixel size" in capsys.readouterr().err
    assert not out.exists()
