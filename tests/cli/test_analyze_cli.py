import csv
import json

import numpy as np

from napari_aet.cli import main
from napari_aet.core.atoms import Atoms
from napari_aet.core.phantoms import _FCC, cubic_lattice
from napari_aet.io.coordinates import write_atoms


def _vacancy_crystal(tmp_path):
    zr = cubic_lattice(_FCC, 5.09, 20)
    zr = zr[np.linalg.norm(zr, axis=1) < 16]
    zr = np.delete(zr, np.argmin(np.linalg.norm(zr, axis=1)), axis=0)
    atoms = Atoms(zr[:, ::-1], np.full(len(zr), "Zr"))
    path = tmp_path / "zr.xyz"
    write_atoms(path, atoms)
    return path, atoms


def test_analyze_writes_tables_summary_and_figures(tmp_path):
    path, atoms = _vacancy_crystal(tmp_path)
    out = tmp_path / "report"
    assert main(["analyze", str(path), "-o", str(out), "--preset", "ZrO2", "--quiet"]) == 0
    with open(out / "atoms.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(atoms)
    assert list(rows[0])[:11] == ["x", "y", "z", "element", "q4", "q6", "boo", "structure",
                                   "rho_n", "oxidation", "phase"]
    xyz = np.array([[float(r["x"]), float(r["y"]), float(r["z"])] for r in rows])
    assert np.allclose(xyz, atoms.xyz, atol=1e-4)  # input order kept
    with open(out / "voids.csv") as fh:
        voids = [r for r in csv.DictReader(fh) if r["kind"] != "interstitial"]
    assert len(voids) == 1 and voids[0]["kind"] == "vacancy"
    assert 45 <= float(voids[0]["volume_A3"]) <= 125
    summary = json.loads((out / "summary.json").read_text())
    assert summary["first_shell_A"] == 4.5 and summary["voids"]["vacancy"] == 1
    assert summary["phase_counts"] == {"crystalline_oxide": len(atoms)}
    for name in ("pdf", "q4_q6", "void_volumes", "profiles"):
        assert (out / f"{name}.png").stat().st_size > 1000
        assert (out / f"{name}.svg").exists()


def test_option_overrides_preset(tmp_path):
    path, _ = _vacancy_crystal(tmp_path)
    out = tmp_path / "r"
    assert main(["analyze", str(path), "-o", str(out), "--preset", "ZrO2", "--r-void", "3.8",
                 "--analyses", "voids", "--no-figures", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameters"]["r_void_A"] == 3.8
    assert summary["voids"]["vacancy"] == 0  # the vacancy sphere (3.6 A) is below 3.8 A
    assert not (out / "pdf.png").exists()


def test_bad_input_is_one_line_error(tmp_path, capsys):
    path = tmp_path / "few.xyz"
    write_atoms(path, Atoms(np.random.default_rng(0).normal(0, 3, (3, 3)), ["Zr"] * 3))
    assert main(["analyze", str(path), "-o", str(tmp_path / "o")]) == 2
    assert "at least 5 atoms" in capsys.readouterr().err
    assert main(["analyze", str(path), "-o", str(tmp_path / "o"), "--preset", "nope"]) == 2
    assert main(["analyze", str(path), "-o", str(tmp_path / "o"), "--r-void", "-1"]) == 2


def test_preset_chooses_its_analyses_and_thresholds(tmp_path):
    """As in the Analyse widget: --preset Si runs the analyses that suit a covalent network
    (no BOO, phases or oxidation) with ZrO2's thresholds scaled to Si-Si 2.35 A."""
    si = cubic_lattice(_FCC, 5.43, 16)  # the diamond lattice's fcc sites are enough here
    si = si[np.linalg.norm(si, axis=1) < 11]
    path = tmp_path / "si.xyz"
    write_atoms(path, Atoms(si[:, ::-1], np.full(len(si), "Si")))
    out = tmp_path / "si"
    assert main(["analyze", str(path), "-o", str(out), "--preset", "Si", "--no-figures",
                 "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "phase_counts" not in summary and "voids" in summary
    assert "nearest neighbour 2.35 A" in summary["thresholds_source"]
    with open(out / "atoms.csv") as fh:
        columns = list(csv.DictReader(fh))[0]
    assert "boo" not in columns and "phase" not in columns and "structure" in columns
