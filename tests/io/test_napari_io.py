import numpy as np
import pytest

from napari_aet.core.simulate import simulate
from napari_aet.io.napari_io import get_atoms_reader, get_reader, write_atoms, write_image
from napari_aet.io.tilt_series import read_tilt_series, write_angles, write_mrc


@pytest.fixture
def series_dir(tmp_path):
    sim = simulate("fcc", n_angles=9)
    write_mrc(tmp_path / "tilt_series.mrc", sim.tilt_series, sim.pixel_size_A)
    write_angles(tmp_path / "angles.tlt", sim.angles_deg)
    return tmp_path, sim


def test_reader_finds_angles_beside_and_sets_scale(series_dir):
    folder, sim = series_dir
    reader = get_reader(str(folder / "tilt_series.mrc"))
    (data, kwargs, kind), = reader(str(folder / "tilt_series.mrc"))
    meta = kwargs["metadata"]["aet"]
    assert kind == "image" and meta["kind"] == "tilt_series"
    np.testing.assert_allclose(meta["angles_deg"], sim.angles_deg, atol=1e-6)
    np.testing.assert_allclose(kwargs["scale"], (1, sim.pixel_size_A, sim.pixel_size_A), rtol=1e-6)


def test_reader_volume_without_angles_and_unknown_pixel_size(tmp_path):
    write_mrc(tmp_path / "vol.rec", np.zeros((4, 4, 4)), 0.5)
    (_, kwargs, _), = get_reader(str(tmp_path / "vol.rec"))(str(tmp_path / "vol.rec"))
    assert kwargs["metadata"]["aet"]["kind"] == "volume" and kwargs["scale"] == (0.5, 0.5, 0.5)
    np.save(tmp_path / "nopx.npy", np.zeros((4, 4, 4), np.float32))
    (_, kwargs, _), = get_reader(str(tmp_path / "nopx.npy"))(str(tmp_path / "nopx.npy"))
    assert kwargs["metadata"]["aet"]["pixel_size_A"] is None  # not silently 1
    assert get_reader(str(tmp_path / "photo.jpg")) is None


def test_writers_round_trip(tmp_path, series_dir):
    folder, sim = series_dir
    meta = {"metadata": {"aet": {"pixel_size_A": 0.35}}, "scale": (0.35,) * 3}
    vol = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    write_image(str(tmp_path / "v.mrc"), vol, meta)
    back, px = read_tilt_series(tmp_path / "v.mrc")
    np.testing.assert_array_equal(back, vol)
    assert px == pytest.approx(0.35)
    write_image(str(tmp_path / "v.tif"), vol, meta)
    back, px = read_tilt_series(tmp_path / "v.tif")
    np.testing.assert_array_equal(back, vol)
    assert px == pytest.approx(0.35, rel=1e-4)
    atoms = sim.atoms
    write_atoms(str(tmp_path / "a.xyz"), atoms.positions, {"features": {"element": atoms.elements}})
    (data, kwargs, kind), = get_atoms_reader(str(tmp_path / "a.xyz"))(str(tmp_path / "a.xyz"))
    np.testing.assert_allclose(data, atoms.positions, atol=1e-6)
    assert kind == "points" and list(kwargs["features"]["element"]) == list(atoms.elements)


def test_reader_takes_matlab_layout_stack_with_angles_array_beside(tmp_path):
    """Published AET data: (ny, nx, n) projections in .npy with ``angles_deg.npy`` beside,
    or a .mat stack with ``angle.mat`` beside; both open as tilt series (n, ny, nx)."""
    import scipy.io

    sim = simulate("fcc", n_angles=9)
    matlab = np.transpose(sim.tilt_series, (2, 1, 0)).astype(np.float32)
    np.save(tmp_path / "projections_counts.npy", matlab)
    np.save(tmp_path / "angles_deg.npy", sim.angles_deg)
    path = str(tmp_path / "projections_counts.npy")
    (data, kwargs, _), = get_reader(path)(path)
    meta = kwargs["metadata"]["aet"]
    assert meta["kind"] == "tilt_series" and meta["pixel_size_A"] is None
    np.testing.assert_array_equal(data, sim.tilt_series.astype(np.float32))
    np.testing.assert_allclose(meta["angles_deg"], sim.angles_deg)
    assert meta["provenance"][0]["params"]["angles"].endswith("angles_deg.npy")

    film = tmp_path / "film"
    film.mkdir()
    scipy.io.savemat(film / "Projections_area2.mat", {"Proj_sub": matlab})
    scipy.io.savemat(film / "angle.mat", {"angle": sim.angles_deg})
    path = str(film / "Projections_area2.mat")
    (data, kwargs, _), = get_reader(path)(path)
    assert kwargs["metadata"]["aet"]["kind"] == "tilt_series"
    np.testing.assert_array_equal(data, sim.tilt_series.astype(np.float32))


def test_reader_refuses_angles_that_fit_no_axis(tmp_path):
    from napari_aet.io.tilt_series import FileFormatError

    np.save(tmp_path / "stack.npy", np.zeros((6, 8, 10), np.float32))
    np.save(tmp_path / "angles.npy", np.linspace(-60, 60, 7))
    with pytest.raises(FileFormatError, match="angles.npy: has 7 angles but no axis"):
        get_reader(str(tmp_path / "stack.npy"))(str(tmp_path / "stack.npy"))
