import numpy as np
import pytest

from napari_aet.core.atoms import Atoms
from napari_aet.io.coordinates import read_atoms, write_atoms
from tests.conftest import shared_file


def test_xyz_round_trip_is_lossless(tmp_path):
    rng = np.random.default_rng(0)
    atoms = Atoms(rng.uniform(-50, 50, (200, 3)), rng.choice(["Zr", "O"], 200))
    write_atoms(tmp_path / "a.xyz", atoms)
    back = read_atoms(tmp_path / "a.xyz")
    np.testing.assert_allclose(back.positions, atoms.positions, atol=1e-6)
    np.testing.assert_array_equal(back.elements, atoms.elements)
    first = (tmp_path / "a.xyz").read_text().splitlines()[2].split()
    assert first[0] == atoms.elements[0]
    np.testing.assert_allclose([float(v) for v in first[1:]], atoms.xyz[0], atol=1e-6)  # files hold x y z


def test_reads_published_pdpt_coordinates():
    atoms = read_atoms(shared_file("pdpt_core_shell", "EPB.xyz"))
    assert len(atoms) == 5377
    assert set(atoms.counts()) == {"Pd", "Pt"}


def test_bad_xyz_files(tmp_path):
    (tmp_path / "count.xyz").write_text("5\n\nZr 0 0 0\n")
    with pytest.raises(ValueError, match="count.xyz: header says 5 atoms but the file has 1"):
        read_atoms(tmp_path / "count.xyz")
    (tmp_path / "elem.xyz").write_text("1\n\nQq 0 0 0\n")
    with pytest.raises(ValueError, match="'Qq' is not an element"):
        read_atoms(tmp_path / "elem.xyz")
    (tmp_path / "nan.xyz").write_text("1\n\nZr nan 0 0\n")
    with pytest.raises(ValueError, match="nan.xyz: coordinates contain NaN"):
        read_atoms(tmp_path / "nan.xyz")
    with pytest.raises(ValueError, match="unsupported atoms format"):
        write_atoms(tmp_path / "a.foo", Atoms(np.zeros((1, 3)), ["Zr"]))
