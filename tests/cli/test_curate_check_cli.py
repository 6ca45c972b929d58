"""`napari-aet curate-check`: the review queue as a csv for scripted QA."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_aet.cli import main
from napari_aet.core.atoms import Atoms
from napari_aet.core.simulate import simulate
from napari_aet.io.coordinates import write_atoms


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cc")
    sim = simulate("silica", dose_e_per_A2=None, n_angles=3)
    vol = sim.truth_volume().astype(np.float32)
    vol_path = tmp / "volume.npy"
    np.save(vol_path, vol)
    truth = sim.atoms
    rng = np.random.default_rng(2)
    drop = rng.choice(len(truth), 5, replace=False)
    keep = np.setdiff1d(np.arange(len(truth)), drop)
    extra = truth.positions[keep[0]] + [0.5, 0, 0]  # a too-close duplicate
    atoms = Atoms(np.vstack([truth.positions[keep], extra]),
                  np.append(truth.elements[keep], "O"))
    atoms_path = tmp / "atoms.xyz"
    write_atoms(atoms_path, atoms)
    return tmp, atoms_path, vol_path, sim, truth.positions[drop], atoms


def test_curate_check_writes_ranked_csv(files):
    tmp, atoms_path, vol_path, sim, missing, atoms = files
    out = tmp / "review.csv"
    rc = main(["curate-check", str(atoms_path), "--volume", str(vol_path),
               "--pixel-size", str(sim.pixel_size_A), "--preset", "SiO2", "-o", str(out)])
    assert rc == 0
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["rank", "kind", "x", "y", "z", "atom_index", "score",
                             "suggested_action"]
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    missed = [r for r in rows if r["kind"] == "missed_atom"]
    assert all(r["atom_index"] == "" for r in missed)
    found = np.array([[float(r["z"]), float(r["y"]), float(r["x"])] for r in missed])
    for p in missing:  # every removed true atom is listed as a missed-atom candidate
        assert np.min(np.linalg.norm(found - p, axis=1)) < 0.3
    close = [r for r in rows if r["kind"] == "close_pair"]
    assert close and int(close[0]["atom_index"]) in (0, len(atoms) - 1)
    assert close[0]["suggested_action"] == "remove"


def test_curate_check_errors(files, capsys):
    tmp, atoms_path, vol_path, sim, _, _ = files
    rc = main(["curate-check", str(atoms_path), "--volume", str(tmp / "nope.npy"),
               "--pixel-size", "0.35", "-o", str(tmp / "r.csv")])
    assert rc == 2 and "no such file" in capsys.readouterr().err
    rc = main(["curate-check", str(atoms_path), "--volume", str(vol_path), "--pixel-size", "0.35",
               "--min-distance", "-1", "-o", str(tmp / "r.csv")])
    assert rc == 2 and "--min-distance must be positive" in capsys.readouterr().err
    rc = main(["curate-check", str(atoms_path), "--volume", str(vol_path), "--pixel-size", "0.35",
               "--preset", "nosuch", "-o", str(tmp / "r.csv")])
    assert rc == 2 and "unknown material preset" in capsys.readouterr().err
    far = tmp / "far.xyz"
    write_atoms(far, Atoms([[500.0, 0, 0]], ["O"]))
    rc = main(["curate-check", str(far), "--volume", str(vol_path), "--pixel-size", "0.35",
               "-o", str(tmp / "r.csv")])
    assert rc == 2 and "outside the volume" in capsys.readouterr().err
    assert not (tmp / "r.csv").exists()


def test_curate_check_refuses_no_atoms_and_a_constant_volume(files, capsys):
    tmp, atoms_path, vol_path, _, _, _ = files
    empty = tmp / "empty.xyz"
    empty.write_text("0\nno atoms\n")
    rc = main(["curate-check", str(empty), "--volume", str(vol_path), "--pixel-size", "0.35",
               "-o", str(tmp / "r0.csv")])
    assert rc == 2 and "holds no atoms: nothing to review" in capsys.readouterr().err
    zero = tmp / "zero.npy"
    np.save(zero, np.zeros_like(np.load(vol_path)))
    rc = main(["curate-check", str(atoms_path), "--volume", str(zero), "--pixel-size", "0.35",
               "-o", str(tmp / "r0.csv")])
    assert rc == 2 and "is constant (0 everywhere)" in capsys.readouterr().err
    assert not (tmp / "r0.csv").exists()
