import h5py
import mrcfile
import numpy as np
import pytest
import scipy.io
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_aet.io.tilt_series import (
    FileFormatError,
    find_angles_beside,
    read_angles,
    read_stack,
    read_tilt_series,
    read_volume,
    write_angles,
    write_mrc,
)
from tests.conftest import shared_file

STACK = np.random.default_rng(0).random((5, 12, 10)).astype(np.float32)
ANGLES = np.array([[0, t, 0] for t in (-60, -30, 0, 30, 60)], float)


def _write_matlab_v73(path, name, array_aet):
    """Write an HDF5-based MAT file as MATLAB 7.3 does (header in a 512-byte user block)."""
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset(name, data=array_aet)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")


@pytest.mark.parametrize("ext", [".mrc", ".st", ".ali", ".rec"])
def test_mrc_round_trip_with_voxel_size(tmp_path, ext):
    path = tmp_path / f"series{ext}"
    write_mrc(path, STACK, 0.347)
    data, px = read_tilt_series(path)
    np.testing.assert_array_equal(data, STACK)
    assert px == pytest.approx(0.347, rel=1e-6)
    assert not list(tmp_path.glob(".series*"))  # no temporary left behind


def test_mrc_without_pixel_size_needs_one(tmp_path):
    path = tmp_path / "nopx.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(STACK)
    with pytest.raises(FileFormatError, match="nopx.mrc: has no pixel size"):
        read_tilt_series(path)
    assert read_tilt_series(path, pixel_size_A=0.4)[1] == 0.4


def test_tiff_round_trip_with_resolution(tmp_path):
    path = tmp_path / "series.tif"
    tifffile.imwrite(path, STACK, imagej=True, resolution=(1 / 0.05, 1 / 0.05), metadata={"unit": "nm"})
    data, px = read_tilt_series(path)
    np.testing.assert_array_equal(data, STACK)
    assert px == pytest.approx(0.5, rel=1e-4)


def test_npy_and_npz(tmp_path):
    np.save(tmp_path / "s.npy", STACK)
    data, px = read_tilt_series(tmp_path / "s.npy", pixel_size_A=0.3)
    np.testing.assert_array_equal(data, STACK)
    np.savez(tmp_path / "s.npz", tilt_series=STACK, angles_deg=ANGLES, pixel_size_A=0.41)
    stack = read_stack(tmp_path / "s.npz")
    np.testing.assert_array_equal(stack.data, STACK)
    np.testing.assert_array_equal(stack.angles_deg, ANGLES)
    assert stack.pixel_size_A == pytest.approx(0.41)


def test_emd_reads_data_pixel_size_and_angles(tmp_path):
    path = tmp_path / "series.emd"
    with h5py.File(path, "w") as f:
        g = f.create_group("data/tilt_series")
        g.attrs["emd_group_type"] = 1
        g.create_dataset("data", data=STACK)
        for i, (values, name, units) in enumerate([
            (ANGLES[:, 1], "angle", "deg"),
            (np.arange(12) * 0.035, "y", "nm"),
            (np.arange(10) * 0.035, "x", "nm"),
        ]):
            d = g.create_dataset(f"dim{i + 1}", data=values)
            d.attrs["name"], d.attrs["units"] = name, units
    stack = read_stack(path)
    np.testing.assert_array_equal(stack.data, STACK)
    assert stack.pixel_size_A == pytest.approx(0.35)
    np.testing.assert_allclose(stack.angles_deg, ANGLES)


def test_mat_v5_and_v73_use_matlab_layout(tmp_path):
    matlab = np.transpose(STACK, (2, 1, 0))  # (nx?, ny?, n) as MATLAB stores (x, y, n)
    scipy.io.savemat(tmp_path / "v5.mat", {"projections": matlab, "angles": ANGLES})
    stack = read_stack(tmp_path / "v5.mat", pixel_size_A=0.35)
    np.testing.assert_array_equal(stack.data, STACK)
    np.testing.assert_array_equal(stack.angles_deg, ANGLES)
    _write_matlab_v73(tmp_path / "v73.mat", "projections", STACK)
    data, _ = read_tilt_series(tmp_path / "v73.mat", pixel_size_A=0.35)
    np.testing.assert_array_equal(data, STACK)


def test_shared_resire_volume_and_projections_agree_through_readers():
    folder = shared_file("resire_amorphous_64")
    proj, _ = read_tilt_series(folder / "projections.npy", pixel_size_A=1.0, layout="matlab")
    vol, _ = read_volume(folder / "ground_truth_volume.npy", pixel_size_A=1.0, layout="matlab")
    angles = read_angles(folder / "angles_deg.npy", n_images=len(proj))
    zero = int(np.argmin(np.abs(angles[:, 1])))
    np.testing.assert_allclose(vol.sum(axis=0), proj[zero], atol=1e-5 * proj.max())


@pytest.mark.parametrize("name,text,expected", [
    ("a.tlt", "-60\n-30\n0\n30\n60\n", ANGLES),
    ("a.rawtlt", "-60.0\n-30.0\n0.0\n30.0\n60.0", ANGLES),
    ("a.txt", "# tilt angles\n-60\n-30\n0\n30\n60\n", ANGLES),
    ("a.csv", "phi,theta,psi\n" + "\n".join(",".join(map(str, r)) for r in ANGLES), ANGLES),
])
def test_angle_text_formats(tmp_path, name, text, expected):
    (tmp_path / name).write_text(text)
    np.testing.assert_array_equal(read_angles(tmp_path / name, n_images=5), expected)


def test_angle_binary_formats_and_writers(tmp_path):
    np.save(tmp_path / "a.npy", ANGLES[:, 1])
    np.testing.assert_array_equal(read_angles(tmp_path / "a.npy"), ANGLES)
    scipy.io.savemat(tmp_path / "a.mat", {"angles": ANGLES.T})  # (3, n) as MATLAB scripts keep it
    np.testing.assert_array_equal(read_angles(tmp_path / "a.mat"), ANGLES)
    write_angles(tmp_path / "out.tlt", ANGLES)
    np.testing.assert_allclose(read_angles(tmp_path / "out.tlt"), ANGLES)
    general = ANGLES + [0.5, 0, -0.2]
    with pytest.raises(ValueError, match="non-zero phi/psi"):
        write_angles(tmp_path / "bad.tlt", general)
    write_angles(tmp_path / "out.csv", general)
    np.testing.assert_allclose(read_angles(tmp_path / "out.csv"), general)


def test_angles_beside_stack(tmp_path):
    write_mrc(tmp_path / "tilt_series.mrc", STACK, 0.35)
    write_angles(tmp_path / "angles.tlt", ANGLES)
    assert find_angles_beside(tmp_path / "tilt_series.mrc") == tmp_path / "angles.tlt"


def test_bad_input_messages_name_the_file(tmp_path):
    (tmp_path / "short.tlt").write_text("0\n10\n")
    with pytest.raises(FileFormatError, match="short.tlt: has 2 angles but the tilt series has 5"):
        read_angles(tmp_path / "short.tlt", n_images=5)
    (tmp_path / "cols.txt").write_text("1 2\n3 4\n")
    with pytest.raises(FileFormatError, match="cols.txt: each line needs 1 value"):
        read_angles(tmp_path / "cols.txt")
    np.save(tmp_path / "flat.npy", STACK[0])
    with pytest.raises(FileFormatError, match="flat.npy: holds a single 2-D image"):
        read_tilt_series(tmp_path / "flat.npy", pixel_size_A=1)
    nan = STACK.copy()
    nan[2, 3, 4] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(FileFormatError, match="nan.npy: contains NaN"):
        read_tilt_series(tmp_path / "nan.npy", pixel_size_A=1)
    np.save(tmp_path / "one.npy", STACK[:1])
    with pytest.raises(FileFormatError, match="one.npy: holds one image"):
        read_tilt_series(tmp_path / "one.npy", pixel_size_A=1)
    with pytest.raises(FileNotFoundError, match="missing.mrc"):
        read_tilt_series(tmp_path / "missing.mrc")
    with pytest.raises(FileFormatError, match="unsupported extension"):
        (tmp_path / "x.jpg").write_bytes(b"x")
        read_tilt_series(tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="positive number of Angstrom"):
        read_tilt_series(tmp_path / "one.npy", pixel_size_A=-1)


def _valid_bytes(tmp_path, ext):
    path = tmp_path / f"valid{ext}"
    if ext == ".mrc":
        write_mrc(path, STACK, 0.35)
    elif ext == ".tif":
        tifffile.imwrite(path, STACK)
    elif ext == ".npy":
        np.save(path, STACK)
    elif ext == ".npz":
        np.savez(path, tilt_series=STACK)
    elif ext == ".h5":
        with h5py.File(path, "w") as f:
            f["tilt_series"] = STACK
    else:
        scipy.io.savemat(path, {"projections": STACK})
    return path.read_bytes()


EXTS = [".mrc", ".tif", ".npy", ".npz", ".h5", ".mat"]


@pytest.mark.parametrize("ext", EXTS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_truncated_files_fail_clearly(tmp_path, ext, data):
    content = _valid_bytes(tmp_path, ext)
    cut = data.draw(st.integers(0, len(content) - 1))
    path = tmp_path / f"truncated{ext}"
    path.write_bytes(content[:cut])
    try:
        stack = read_stack(path, pixel_size_A=0.35)
    except FileFormatError as exc:
        assert f"truncated{ext}" in str(exc)
    else:  # some formats survive a cut in trailing metadata; the data must then be intact
        np.testing.assert_array_equal(np.asarray(stack.data), STACK)


@pytest.mark.parametrize("ext", EXTS + [".emd", ".st"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(min_size=0, max_size=2048))
def test_garbage_files_fail_clearly(tmp_path, ext, garbage):
    path = tmp_path / f"garbage{ext}"
    path.write_bytes(garbage)
    with pytest.raises(FileFormatError, match=f"garbage{ext}"):
        read_stack(path, pixel_size_A=0.35)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_garbage_angle_text_never_crashes(tmp_path, text):
    path = tmp_path / "garbage.txt"
    path.write_text(text)
    try:
        angles = read_angles(path)
    except FileFormatError as exc:
        assert "garbage.txt" in str(exc)
    else:
        assert angles.ndim == 2 and angles.shape[1] == 3 and np.all(np.isfinite(angles))


def test_published_ta_film_mat_files_read_unchanged():
    """Real data as published: Proj_sub (x, y, n) = (131, 61, 46) and angle (46, 3) read as
    (n, ny, nx) = (46, 61, 131) with Euler angles; re-projecting the published reconstruction
    at the file's own angles reproduces the images (right tilt sign, rectangular images)."""
    from napari_aet.core.projectors import make_projector

    tilt, px = read_tilt_series(shared_file("ta_film_area2", "Projections_area2.mat"), 0.3216)
    angles = read_angles(shared_file("ta_film_area2", "angles.mat"), n_images=len(tilt))
    assert tilt.shape == (46, 61, 131) and px == 0.3216
    assert np.abs(angles[:, [0, 2]]).max() == pytest.approx(0.4)
    assert angles[0, 1] == pytest.approx(-63.0005, abs=1e-3)
    published = np.transpose(np.load(shared_file("ta_film_area2",
                                                 "published_reconstruction_xyz.npy")), (2, 1, 0))
    zero = int(np.argmin(np.abs(angles[:, 1])))
    assert np.corrcoef(published.sum(axis=0).ravel(), tilt[zero].ravel())[0, 1] > 0.95
    picks = [0, 10, 35, 45]  # -63, -37, +35, +56 degrees
    for sign, low, high in ((1, 0.88, 1.0), (-1, -1.0, 0.5)):
        flipped = angles[picks] * [1, sign, 1]
        reproj = make_projector(flipped, published.shape, kind="general",
                                subpixel=False).forward(published)
        # the centre columns only: the film extends beyond the field of view
        c = [np.corrcoef(r[:, 40:90].ravel(), t[:, 40:90].ravel())[0, 1]
             for r, t in zip(reproj, tilt[picks])]
        assert low < min(c) and max(c) < high, (sign, c)


def test_mrc_header_claiming_more_than_memory_fails_before_reading(tmp_path):
    """A header claiming 10^12 voxels over a sparse file of that size: refused at once, from
    the header, instead of scanning 4 TB."""
    path = tmp_path / "huge.mrc"
    write_mrc(path, np.zeros((2, 2, 2), np.float32), 1.5)
    with open(path, "r+b") as fh:
        fh.write(np.array([10_000, 10_000, 10_000], "<i4").tobytes())
        fh.seek(28)  # mx, my, mz (sampling) as the sizes, so the voxel size stays 1.5 A
        fh.write(np.array([10_000, 10_000, 10_000], "<i4").tobytes())
        fh.truncate(1024 + 4 * 10**12)
    try:
        with pytest.raises(FileFormatError, match=r"claims 10000 x 10000 x 10000 voxels \(3725 GiB\)"):
            read_stack(path)
    finally:
        path.unlink()  # sparse, but 4 TB to any tool that copies it


@pytest.mark.parametrize("text, message", [
    ("-60\n400\n60\n", r"angle 400 \(theta, row 2\) is outside -360..360 degrees"),
    ("0\n0\n0\n0\n", "all 4 angles are 0: no tilt"),
    ("-1.2\n-0.6\n0\n0.6\n1.2\n", r"tilt angles span -1.2..1.2: they look like radians"),
])
def test_impossible_angles_are_refused(tmp_path, text, message):
    path = tmp_path / "angles.tlt"
    path.write_text(text)
    with pytest.raises(FileFormatError, match=f"angles.tlt: {message}"):
        read_angles(path)


def test_repeated_angles_warn_and_full_rotations_pass(tmp_path):
    path = tmp_path / "angles.tlt"
    path.write_text("-30\n0\n0\n30\n")
    with pytest.warns(UserWarning, match=r"\(0.0, 0.0, 0.0\) \(row 2\) appear 2 times"):
        assert read_angles(path).shape == (4, 3)
    path.write_text("\n".join(str(t) for t in range(0, 180, 3)))  # 0..177: a full rotation
    assert read_angles(path)[-1, 1] == 177
