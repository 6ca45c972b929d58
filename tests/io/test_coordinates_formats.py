"""Atom coordinate formats: round trips, feature types, published .mat layout, atomic writes,
napari csv compatibility and error messages."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from napari_aet.core.atoms import ATOMIC_NUMBER, Atoms
from napari_aet.io import coordinates
from napari_aet.io.coordinates import WRITERS, read_atoms, write_atoms
from tests.conftest import shared_file

#: Formats that hold features (every one, with its type) and positions to full precision.
FEATURE_FORMATS = (".extxyz", ".csv", ".mat")
#: Formats written through ASE: positions and elements only.
ASE_FORMATS = (".cif", ".lmp", ".data", ".pdb")
#: Position tolerance per format (Angstrom); PDB keeps 3 decimals (format limit).
TOLERANCE_A = {".xyz": 1e-6, ".extxyz": 1e-6, ".csv": 1e-6, ".mat": 1e-6, ".cif": 1e-6,
               ".lmp": 1e-6, ".data": 1e-6, ".pdb": 1e-3}


def model_with_features(n=60, seed=0, low=1.0, high=60.0):
    """Atoms with positions in [low, high) Angstrom and one feature of every kind."""
    rng = np.random.default_rng(seed)
    intensity = rng.uniform(0, 10, n)
    intensity[[i for i in (3, 17) if i < n]] = np.nan
    phase = rng.choice(["metal", "amorphous oxide", ""], n)
    phase[:3] = ["metal", "amorphous oxide", ""]  # every kind of text, whatever the seed
    return Atoms(
        rng.uniform(low, high, (n, 3)) + rng.uniform(0, 1e-7, (n, 3)),  # digits below 1e-6
        rng.choice(["Pt", "Pd", "O"], n),
        {"intensity": intensity,
         "whole_float": rng.integers(0, 5, n).astype(float),  # floats that look like ints
         "n_neighbours": rng.integers(-1, 14, n),
         "is_surface": rng.random(n) < 0.3,
         "phase": phase},
    )


def assert_same_features(back: Atoms, atoms: Atoms):
    assert set(back.features) == set(atoms.features)
    for name, values in atoms.features.items():
        got = back.features[name]
        assert got.dtype.kind == values.dtype.kind, (name, got.dtype, values.dtype)
        if values.dtype.kind == "f":
            np.testing.assert_array_equal(got, values)  # NaN == NaN here
        else:
            assert got.tolist() == values.tolist(), name


@pytest.mark.parametrize("ext", [".xyz", ".extxyz", ".csv", ".mat"])
def test_round_trip_positions_and_elements(tmp_path, ext):
    atoms = model_with_features(low=-40.0, high=40.0)  # negative coordinates are fine here
    path = tmp_path / f"model{ext}"
    write_atoms(path, atoms)
    back = read_atoms(path)
    assert len(back) == len(atoms)
    assert np.max(np.abs(back.positions - atoms.positions)) <= 1e-6
    assert back.elements.tolist() == atoms.elements.tolist()


@pytest.mark.parametrize("ext", FEATURE_FORMATS)
def test_round_trip_keeps_every_feature_with_its_type(tmp_path, ext):
    atoms = model_with_features()
    path = tmp_path / f"model{ext}"
    write_atoms(path, atoms)
    back = read_atoms(path)
    assert_same_features(back, atoms)
    assert np.isnan(back.features["intensity"][[3, 17]]).all()
    assert back.features["phase"][:3].tolist() == ["metal", "amorphous oxide", ""]
    assert back.features["is_surface"].dtype == bool
    assert back.features["n_neighbours"].dtype.kind == "i"
    assert back.features["whole_float"].dtype.kind == "f"


@pytest.mark.parametrize("ext", ASE_FORMATS)
def test_ase_formats_keep_positions(tmp_path, ext):
    pytest.importorskip("ase")
    atoms = model_with_features()
    path = tmp_path / f"model{ext}"
    write_atoms(path, atoms)
    back = read_atoms(path)
    assert back.elements.tolist() == atoms.elements.tolist()
    err = np.max(np.abs(back.positions - atoms.positions))
    assert err <= TOLERANCE_A[ext], f"{ext}: {err:.2g} A"
    if ext == ".pdb":
        assert err > 1e-6  # really rounded to 3 decimals: the test sees the format limit
    assert back.features == {}  # these formats do not keep features


def test_cif_with_symmetry_is_expanded(tmp_path):
    """Our P1 files are read site by site (fast); a CIF with a space group is still expanded."""
    pytest.importorskip("ase")
    (tmp_path / "pt.cif").write_text(
        "data_Pt\n_cell_length_a 3.92\n_cell_length_b 3.92\n_cell_length_c 3.92\n"
        "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
        "_symmetry_space_group_name_H-M 'F m -3 m'\n"
        "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n"
        "_atom_site_fract_y\n_atom_site_fract_z\nPt1 Pt 0 0 0\n")
    atoms = read_atoms(tmp_path / "pt.cif")
    assert atoms.elements.tolist() == ["Pt"] * 4  # the fcc cell: 4 atoms from 1 site
    d = np.linalg.norm(atoms.positions[:, None] - atoms.positions[None], axis=-1)
    assert np.allclose(np.sort(d[0])[1:], 3.92 / np.sqrt(2))


def test_mat_loads_in_published_layout(tmp_path):
    from scipy.io import loadmat

    atoms = model_with_features(n=25)
    write_atoms(tmp_path / "model.mat", atoms)
    data = loadmat(tmp_path / "model.mat")
    for key in ("atom_pos", "model"):
        assert data[key].shape == (3, 25)
        # rows are x, y, z in Angstrom; Atoms hold (z, y, x)
        np.testing.assert_array_equal(data[key][0], atoms.positions[:, 2])
        np.testing.assert_array_equal(data[key][1], atoms.positions[:, 1])
        np.testing.assert_array_equal(data[key][2], atoms.positions[:, 0])
    assert data["atom_types"].shape == (1, 25)
    np.testing.assert_array_equal(data["atom_types"][0],
                                  [ATOMIC_NUMBER[e] for e in atoms.elements])
    assert set(np.unique(data["atom_types"])) <= {8.0, 46.0, 78.0}


def test_mat_with_only_published_keys(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(4)
    xyz = rng.uniform(0, 30, (3, 40))  # 3 x N, rows x, y, z
    types = rng.integers(1, 3, 40)  # class labels 1, 2 as in published codes
    savemat(tmp_path / "published.mat", {"model": xyz, "atomtype": types[None].astype(float)})
    atoms = read_atoms(tmp_path / "published.mat", type_elements=["Pd", "Pt"])
    np.testing.assert_array_equal(atoms.xyz, xyz.T)
    assert atoms.elements.tolist() == [("Pd", "Pt")[t - 1] for t in types]
    as_dict = read_atoms(tmp_path / "published.mat", type_elements={1: "pd", 2: "pt"})
    assert as_dict.elements.tolist() == atoms.elements.tolist()
    with pytest.raises(ValueError, match=r"types \[2\] have no element in type_elements"):
        read_atoms(tmp_path / "published.mat", type_elements=["Pd"])
    # N x 3 and voxel units (scale_A) are read too
    savemat(tmp_path / "nx3.mat", {"atom_pos": xyz.T / 0.5})
    vox = read_atoms(tmp_path / "nx3.mat", scale_A=0.5)
    np.testing.assert_allclose(vox.xyz, xyz.T, atol=1e-12)
    assert set(vox.elements) == {"X"}


def test_napari_csv_reader_opens_our_csv_as_the_same_points(tmp_path):
    csv_to_layer_data = pytest.importorskip("napari_builtins.io").csv_to_layer_data
    atoms = model_with_features(n=30, low=-20.0, high=20.0)
    path = tmp_path / "atoms.csv"
    write_atoms(path, atoms)
    data, meta, layer_type = csv_to_layer_data(str(path), require_type="points")
    assert layer_type == "points"
    np.testing.assert_array_equal(data, atoms.positions)  # layer data = (z, y, x) Angstrom
    props = meta.get("features", meta.get("properties"))
    assert list(np.asarray(props["element"])) == atoms.elements.tolist()
    np.testing.assert_array_equal(np.asarray(props["intensity"], float),
                                  atoms.features["intensity"])


def test_published_pdpt_model_round_trips_through_every_format(tmp_path):
    epb = read_atoms(shared_file("pdpt_core_shell", "EPB.xyz"))
    assert len(epb) == 5377
    # cif and LAMMPS data need coordinates >= 0: put the particle in the positive octant
    atoms = epb.shifted(-epb.positions.min(axis=0) + 2.0)
    have_ase = importlib.util.find_spec("ase") is not None
    done = []
    for ext in sorted(WRITERS):
        if ext in ASE_FORMATS and not have_ase:
            continue
        path = tmp_path / f"EPB{ext}"
        write_atoms(path, atoms)
        back = read_atoms(path)
        assert len(back) == 5377, ext
        assert back.elements.tolist() == atoms.elements.tolist(), ext
        err = np.max(np.abs(back.positions - atoms.positions))
        assert err <= TOLERANCE_A[ext], f"{ext}: {err:.2g} A"
        done.append(ext)
    assert {".xyz", ".extxyz", ".csv", ".mat"} <= set(done)
    # nothing but the written files in the folder: no temporary files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"EPB{e}" for e in done)


class _Boom:
    """Positions that break after three rows, as a full disk would halfway through a file."""

    def __init__(self, xyz):
        self.xyz = xyz

    def __len__(self):
        return len(self.xyz)

    def __getitem__(self, i):
        if i >= 3:
            raise OSError("disk full")
        return self.xyz[i]

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def _fail_midway(monkeypatch, ext):
    """Make the writer of ``ext`` write part of its file and then fail."""
    if ext in (".xyz", ".extxyz"):
        monkeypatch.setattr(Atoms, "xyz", property(lambda self: _Boom(self.positions[:, ::-1])))
    elif ext == ".csv":
        import pandas as pd

        def broken(self, path, **kwargs):
            with open(path, "w") as fh:
                fh.write("index,axis-0\n0,1.0\n")
            raise OSError("disk full")

        monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    elif ext == ".mat":
        import scipy.io

        def broken(path, *args, **kwargs):
            with open(path, "wb") as fh:
                fh.write(b"MATLAB 5.0 half")
            raise OSError("disk full")

        monkeypatch.setattr(scipy.io, "savemat", broken)
    else:
        import ase.io

        def broken(path, *args, **kwargs):
            with open(path, "w") as fh:
                fh.write("half a file\n")
            raise OSError("disk full")

        monkeypatch.setattr(ase.io, "write", broken)


@pytest.mark.parametrize("ext", [".xyz", ".extxyz", ".csv", ".mat", ".cif", ".pdb", ".lmp"])
def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch, ext):
    if ext in ASE_FORMATS:
        pytest.importorskip("ase")
    before = model_with_features(n=20, seed=1)
    path = tmp_path / f"model{ext}"
    write_atoms(path, before)
    content = path.read_bytes()
    _fail_midway(monkeypatch, ext)
    with pytest.raises(OSError, match="disk full"):
        write_atoms(path, model_with_features(n=20, seed=2))
    monkeypatch.undo()
    assert path.read_bytes() == content  # the old file, untouched
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    back = read_atoms(path)
    assert np.max(np.abs(back.positions - before.positions)) <= TOLERANCE_A[ext]


def test_write_into_missing_folder_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_atoms(tmp_path / "nope" / "a.xyz", model_with_features(n=3))


def test_bad_files_give_clear_errors(tmp_path):
    atoms = model_with_features(n=5)
    with pytest.raises(ValueError, match=r"unsupported atoms format '\.foo'"):
        write_atoms(tmp_path / "a.foo", atoms)
    (tmp_path / "a.foo").write_text("1\n\nO 0 0 0\n")
    with pytest.raises(ValueError, match=r"unsupported atoms format '\.foo'; use one of"):
        read_atoms(tmp_path / "a.foo")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_atoms(tmp_path / "missing.xyz")
    # malformed lines
    (tmp_path / "short.xyz").write_text("2\n\nO 0 0 0\nO 1 2\n")
    with pytest.raises(ValueError, match=r"short\.xyz: line 4 is not 'Element x y z'"):
        read_atoms(tmp_path / "short.xyz")
    (tmp_path / "word.xyz").write_text("1\n\nO 0 zero 0\n")
    with pytest.raises(ValueError, match="line 3 has a non-numeric coordinate"):
        read_atoms(tmp_path / "word.xyz")
    (tmp_path / "count.xyz").write_text("atoms\n\nO 0 0 0\n")
    with pytest.raises(ValueError, match="first line must be the atom count"):
        read_atoms(tmp_path / "count.xyz")
    header = '2\nProperties=species:S:1:pos:R:3:q:R:1 pbc="F F F"\n'
    (tmp_path / "cols.extxyz").write_text(header + "O 0 0 0 1.0\nO 1 1 1\n")
    with pytest.raises(ValueError, match=r"cols\.extxyz: line 4 has 4 columns, expected 5"):
        read_atoms(tmp_path / "cols.extxyz")
    (tmp_path / "props.extxyz").write_text('1\nProperties=species:S:1:pos:R\nO 0 0 0\n')
    with pytest.raises(ValueError, match="malformed Properties="):
        read_atoms(tmp_path / "props.extxyz")
    (tmp_path / "nopos.extxyz").write_text('1\nProperties=species:S:1:q:R:1\nO 1.0\n')
    with pytest.raises(ValueError, match="without a 'pos' column"):
        read_atoms(tmp_path / "nopos.extxyz")
    (tmp_path / "cols.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError,
                       match=r"needs columns axis-0, axis-1, axis-2 \(z, y, x\) or x, y, z"):
        read_atoms(tmp_path / "cols.csv")
    (tmp_path / "elem.csv").write_text("x,y,z,element\n1,2,3,Qq\n")
    with pytest.raises(ValueError, match="'Qq' is not an element"):
        read_atoms(tmp_path / "elem.csv")
    with pytest.raises(ValueError, match="clashes with a csv column"):
        write_atoms(tmp_path / "clash.csv", Atoms(np.zeros((1, 3)), ["O"], {"axis-0": [1.0]}))
    with pytest.raises(ValueError, match="cannot be an extended xyz column name"):
        write_atoms(tmp_path / "bad.extxyz", Atoms(np.zeros((1, 3)), ["O"], {"a b": [1.0]}))


def test_nan_coordinates_are_refused(tmp_path):
    from scipy.io import savemat

    (tmp_path / "nan.extxyz").write_text('1\nProperties=species:S:1:pos:R:3\nO nan 0 0\n')
    with pytest.raises(ValueError, match=r"nan\.extxyz: coordinates contain NaN"):
        read_atoms(tmp_path / "nan.extxyz")
    (tmp_path / "nan.csv").write_text("x,y,z,element\n1,nan,3,O\n")
    with pytest.raises(ValueError, match=r"nan\.csv: coordinates contain NaN"):
        read_atoms(tmp_path / "nan.csv")
    (tmp_path / "inf.csv").write_text("index,axis-0,axis-1,axis-2\n0,inf,1,2\n")
    with pytest.raises(ValueError, match="coordinates contain NaN or infinite"):
        read_atoms(tmp_path / "inf.csv")
    savemat(tmp_path / "nan.mat", {"model": np.array([[0.0, np.nan], [1, 2], [3, 4]])})
    with pytest.raises(ValueError, match="NaN or infinite"):
        read_atoms(tmp_path / "nan.mat")


def test_wrong_mat_contents(tmp_path):
    from scipy.io import savemat

    savemat(tmp_path / "shape.mat", {"atom_pos": np.zeros((4, 5))})
    with pytest.raises(ValueError, match=r"'atom_pos' must be 3 x N; got shape \(4, 5\)"):
        read_atoms(tmp_path / "shape.mat")
    savemat(tmp_path / "cube.mat", {"model": np.zeros((2, 3, 4))})
    with pytest.raises(ValueError, match="'model' must be 3 x N"):
        read_atoms(tmp_path / "cube.mat")
    savemat(tmp_path / "types.mat", {"model": np.zeros((3, 5)), "atomtype": np.ones((1, 4))})
    with pytest.raises(ValueError, match="4 types for 5 atoms"):
        read_atoms(tmp_path / "types.mat")
    savemat(tmp_path / "nokey.mat", {"coords": np.zeros((3, 5))})
    with pytest.raises(ValueError, match="no coordinates; expected one of atom_pos, model"):
        read_atoms(tmp_path / "nokey.mat")
    savemat(tmp_path / "labels.mat", {"model": np.zeros((3, 2)), "atomtype": [[1, 500]]})
    with pytest.raises(ValueError, match="not atomic numbers; pass type_elements"):
        read_atoms(tmp_path / "labels.mat")
    (tmp_path / "text.mat").write_text("not a MATLAB file")
    with pytest.raises(ValueError, match="not a readable MATLAB file"):
        read_atoms(tmp_path / "text.mat")


def test_ase_format_errors(tmp_path, monkeypatch):
    pytest.importorskip("ase")
    negative = Atoms([[-1.0, 2, 3]], ["O"])
    for ext in (".cif", ".lmp"):
        with pytest.raises(ValueError, match="needs coordinates >= 0"):
            write_atoms(tmp_path / f"neg{ext}", negative)
        assert not (tmp_path / f"neg{ext}").exists()
    with pytest.raises(ValueError, match="unknown element 'X'"):
        write_atoms(tmp_path / "x.pdb", Atoms([[1.0, 2, 3]], ["X"]))
    (tmp_path / "junk.cif").write_text("this is not a cif file\n")
    with pytest.raises(ValueError, match=r"junk\.cif: cannot read as cif"):
        read_atoms(tmp_path / "junk.cif")
    # without ASE: a clear message naming the extra to install
    monkeypatch.setitem(sys.modules, "ase", None)
    monkeypatch.setitem(sys.modules, "ase.io", None)
    with pytest.raises(ImportError, match=r"need ASE: pip install 'napari-aet\[ase\]'"):
        write_atoms(tmp_path / "a.pdb", Atoms([[1.0, 2, 3]], ["O"]))
    assert coordinates.READERS[".xyz"] is coordinates.read_xyz  # plain formats still work
    write_atoms(tmp_path / "a.xyz", Atoms([[1.0, 2, 3]], ["O"]))
    assert read_atoms(tmp_path / "a.xyz").elements.tolist() == ["O"]
