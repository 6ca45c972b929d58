"""Project files: exact round trips, references with checksums, versions, damage, killed saves."""

import os
import signal
import stat
import subprocess
import sys
import time

import h5py
import numpy as np
import pandas as pd
import pytest
from napari.layers import Labels, Layer, Surface

from napari_aet import layers as L
from napari_aet.core.atoms import Atoms
from napari_aet.core.curation import AtomModel, ReviewItem
from napari_aet.io.atomic import atomic_write
from napari_aet.io.project import (
    FORMAT_VERSION,
    CurationState,
    ProjectError,
    is_project,
    load_project,
    read_info,
    save_project,
)
from napari_aet.io.tilt_series import write_angles, write_mrc


def _states_equal(a: Layer, b: Layer):
    """Every entry of two layers' napari state equal (arrays and tables exactly)."""
    d0, s0, t0 = a.as_layer_data_tuple()
    d1, s1, t1 = b.as_layer_data_tuple()
    assert t0 == t1
    if isinstance(d0, tuple):
        for x, y in zip(d0, d1):
            assert np.asarray(x).dtype == np.asarray(y).dtype
            np.testing.assert_array_equal(x, y)
    else:
        assert np.asarray(d0).dtype == np.asarray(d1).dtype
        np.testing.assert_array_equal(d0, d1)
    assert set(s0) == set(s1)
    for key in s0:
        x, y = s0[key], s1[key]
        if isinstance(x, pd.DataFrame):
            pd.testing.assert_frame_equal(x, y)
        elif isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=key)
        else:
            assert repr(x) == repr(y), key


@pytest.fixture
def stack(rng):
    """Layers as the pipeline and widgets make them: tilt series, volume, atoms, labels, voids."""
    series = rng.random((7, 20, 22)).astype(np.float32)
    angles = np.linspace(-60, 60, 7)
    volume = rng.random((20, 21, 22)).astype(np.float32)
    atoms = Atoms(rng.random((40, 3)) * 9, np.array(["Zr", "O"] * 20),
                  {"integrated_intensity": rng.random(40), "nn_distance_A": rng.random(40),
                   "source": np.array(["auto"] * 40, dtype=object)})
    atoms_layer = Layer.create(*L.atoms_tuple(atoms, 0.45, name="atoms"))
    features = atoms_layer.features.copy()
    features["phase"] = pd.Categorical(["metal", "oxide"] * 20)
    atoms_layer.features = features
    atoms_layer.face_color = rng.random((40, 4))
    phases = Labels(rng.integers(0, 4, (20, 21, 22)).astype(np.uint8), name="phases",
                    scale=(0.45,) * 3, opacity=0.35, metadata=L.aet_metadata("overlay", 0.45))
    voids = Surface((rng.random((6, 3)) * 9, np.array([[0, 1, 2], [2, 3, 4], [3, 4, 5]]),
                     rng.random(6)), name="voids", colormap="plasma", opacity=0.6)
    return [Layer.create(*L.tilt_series_tuple(series, angles, 0.45, name="tilt series")),
            Layer.create(*L.volume_tuple(volume, 0.45, name="volume")),
            atoms_layer, phases, voids]


def _curation(rng):
    model = AtomModel(Atoms(rng.random((30, 3)) * 9, np.array(["Zr"] * 30)))
    model.add([1.0, 2.0, 3.0], "O")
    model.remove([3, 4], reason="ghost")
    with model.group("move two"):
        model.move(5, [4.0, 4.0, 4.0])
        model.relabel(6, "O")
    model.mark_reviewed("close_pair:atom7")
    model.undo()  # leaves a redo entry
    items = [ReviewItem("close_pair", np.array([1.0, 2.0, 3.0]), 7, 0.9, "remove", "1.1 A",
                        atom_id=7, partner_index=8),
             ReviewItem("missed_atom", np.array([5.0, 5.0, 5.0]), None, 0.5, "add Zr")]
    return model, items


def test_round_trip_is_exact_for_every_layer_type(stack, tmp_path):
    path = save_project(tmp_path / "p.aet.h5", stack)
    assert path.name == "p.aet.h5" and is_project(path)
    project = load_project(path)
    assert len(project.layers) == len(stack)
    for layer, saved in zip(stack, project.layers):
        _states_equal(layer, Layer.create(*saved))
    assert project.info["format_version"] == FORMAT_VERSION
    assert project.info["software"]["numpy"] == np.__version__


def test_curation_session_round_trip(stack, rng, tmp_path):
    model, items = _curation(rng)
    curated = Layer.create(*L.atoms_tuple(model.to_atoms(order="row"), 0.45, name="atoms curated"))
    session = CurationState(model, items, 1, "volume")
    path = save_project(tmp_path / "c.aet.h5", [*stack, curated],
                        curation={"atoms curated": session},
                        analysis={"atoms": {"voids": {"vacancy": 3}}},
                        parameters={"widgets": {"TraceWidget": {"Min. distance": 2.0}}})
    project = load_project(path)
    got = project.curation["atoms curated"]
    assert got.model.equals(model)
    assert got.model.revision == model.revision and got.model.can_redo
    assert got.model._undo == model._undo and got.model._redo == model._redo
    assert got.item_index == 1 and got.volume_layer == "volume"
    assert [it.key for it in got.items] == [it.key for it in items]
    np.testing.assert_array_equal(got.items[1].position, items[1].position)
    # the restored model keeps working: redo, then undo back past the saved state
    assert got.model.redo() and model.redo()
    assert got.model.equals(model)
    assert got.model.undo() and got.model.undo()
    assert project.analysis == {"atoms": {"voids": {"vacancy": 3}}}
    assert project.parameters["widgets"]["TraceWidget"]["Min. distance"] == 2.0
    with pytest.raises(ValueError, match="not among the layers"):
        save_project(tmp_path / "x.aet.h5", stack, curation={"nope": session})


def test_tilt_series_by_reference_with_checksum(rng, tmp_path):
    from napari_aet.io.napari_io import read_stack_layer

    series = rng.random((5, 16, 16)).astype(np.float32)
    write_mrc(tmp_path / "ts.mrc", series, 0.5)
    write_angles(tmp_path / "ts.tlt", np.linspace(-40, 40, 5))
    layer = Layer.create(*read_stack_layer(tmp_path / "ts.mrc")[0])
    path = save_project(tmp_path / "ref.aet.h5", [layer], embed_tilt_series=False)
    assert read_info(path)["layers"][0]["by_reference"]
    embedded = save_project(tmp_path / "emb.aet.h5", [layer])
    assert os.path.getsize(path) < os.path.getsize(embedded) - series.nbytes // 2
    _states_equal(layer, Layer.create(*load_project(path).layers[0]))
    # the data moved together with the project: found beside it
    moved = tmp_path / "moved"
    moved.mkdir()
    os.replace(path, moved / path.name)
    os.replace(tmp_path / "ts.mrc", moved / "ts.mrc")
    _states_equal(layer, Layer.create(*load_project(moved / path.name).layers[0]))
    # changed or missing: a clear error, nothing loaded
    write_mrc(moved / "ts.mrc", series * 2, 0.5)
    with pytest.raises(ProjectError, match="has changed since the project was saved"):
        load_project(moved / path.name)
    os.remove(moved / "ts.mrc")
    with pytest.raises(ProjectError, match="which is missing"):
        load_project(moved / path.name)
    # a tilt series edited in memory no longer equals its file: embedded instead
    layer.data = layer.data + 1
    assert not read_info(save_project(tmp_path / "e2.aet.h5", [layer],
                                      embed_tilt_series=False))["layers"][0]["by_reference"]


def test_other_versions_and_other_files_fail_clearly(stack, tmp_path):
    path = save_project(tmp_path / "v.aet.h5", stack[:1])
    with h5py.File(path, "r+") as h5:
        h5.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(ProjectError, match="newer than this napari-aet reads.*upgrade"):
        load_project(path)
    with h5py.File(path, "r+") as h5:
        h5.attrs["format_version"] = 0
    with pytest.raises(ProjectError, match="format version 0, which this napari-aet no longer reads"):
        load_project(path)
    with h5py.File(tmp_path / "plain.h5", "w") as h5:
        h5["data"] = np.zeros(3)
    with pytest.raises(ProjectError, match="not a napari-aet project"):
        load_project(tmp_path / "plain.h5")
    (tmp_path / "junk.aet.h5").write_bytes(b"\x89HDF\r\n" + b"\0" * 50)
    with pytest.raises(ProjectError, match="not a readable HDF5 file"):
        load_project(tmp_path / "junk.aet.h5")
    with pytest.raises(FileNotFoundError):
        load_project(tmp_path / "none.aet.h5")


def test_damaged_data_is_detected(stack, tmp_path):
    path = save_project(tmp_path / "d.aet.h5", stack[1:2])
    with h5py.File(path, "r+") as h5:
        data = h5["layers/000/data"]
        data[0, 0, 0] = data[0, 0, 0] + 1
    with pytest.raises(ProjectError, match="damaged \\(checksum mismatch\\)"):
        load_project(path)


def test_files_keep_normal_permissions(tmp_path):
    with atomic_write(tmp_path / "a.txt") as tmp:
        tmp.write_text("x")
    mode = stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode)
    assert mode == 0o666 & ~_umask()
    os.chmod(tmp_path / "a.txt", 0o640)
    with atomic_write(tmp_path / "a.txt") as tmp:
        tmp.write_text("y")
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o640


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


KILLED_SAVER = """
import sys
import numpy as np
from napari.layers import Image
from napari_aet.io.project import save_project
big = Image(np.random.default_rng(0).random((200, 256, 256)).astype("f8"), name="big")
print("ready", flush=True)
while True:
    save_project(sys.argv[1], [big])
"""


def test_killed_save_leaves_the_previous_project_intact(stack, tmp_path):
    path = save_project(tmp_path / "keep.aet.h5", stack)
    before = load_project(path)
    script = tmp_path / "saver.py"
    script.write_text(KILLED_SAVER)
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.time() + 60
        while time.time() < deadline:  # kill while the temporary file is being written
            temps = [p for p in tmp_path.glob(".keep.aet.h5.*") if p.stat().st_size > 1 << 20]
            if temps:
                break
            time.sleep(0.01)
        assert temps, "the child never started writing"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    after = load_project(path)  # the old project, complete and unchanged
    assert [s["name"] for _, s, _ in after.layers] == [s["name"] for _, s, _ in before.layers]
    for a, b in zip(before.layers, after.layers):
        _states_equal(Layer.create(*a), Layer.create(*b))
    # the killed save's temporary file is removed by the next save once it is old enough;
    # one of a live process (this one) stays
    left = list(tmp_path.glob(".keep.aet.h5.*"))
    assert left
    live = tmp_path / f".keep.aet.h5.{os.getpid()}-abcd.h5"
    live.write_bytes(b"x")
    for p in [*left, live]:
        os.utime(p, (time.time() - 120, time.time() - 120))
    save_project(path, stack[:1])
    assert list(tmp_path.glob(".keep.aet.h5.*")) == [live]
