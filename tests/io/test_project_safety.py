"""Hostile and damaged project files: no code runs, every loaded field is checked, and each
problem is one ProjectError naming the file."""

import json

import h5py
import numpy as np
import pytest
from napari.layers import Layer

from napari_aet import layers as L
from napari_aet.cli import main
from napari_aet.core.atoms import Atoms
from napari_aet.core.curation import AtomModel
from napari_aet.io import napari_io
from napari_aet.io.project import (
    CurationState,
    ProjectError,
    _seal,
    load_project,
    read_info,
    save_project,
)


@pytest.fixture
def project(tmp_path, rng):
    model = AtomModel(Atoms(rng.random((12, 3)) * 9, np.array(["Pt", "O"] * 6)))
    model.add([1.0, 2.0, 3.0], "O")
    model.remove([3], reason="ghost")
    labels = Layer.create(*L.atoms_tuple(model.to_atoms(order="row"), 0.4, name="Pt curated"))
    volume = Layer.create(*L.volume_tuple(rng.random((8, 9, 10)).astype(np.float32), 0.4,
                                          name="volume"))
    phases = Layer.create(rng.integers(0, 3, (8, 9, 10)).astype(np.uint8),
                          {"name": "phases"}, "labels")
    return save_project(tmp_path / "p.aet.h5", [volume, labels, phases],
                        curation={"Pt curated": CurationState(model, [], -1, "volume")})


def _edit_state(path, index, change, reseal=True):
    with h5py.File(path, "r+") as h5:
        g = h5[f"layers/{index:03d}"]
        state = json.loads(g.attrs["state"])
        change(state, g)
        g.attrs["state"] = json.dumps(state)
        if reseal:  # the checksum is no secret: a hostile author recomputes it
            _seal(g)


def test_crafted_model_runs_no_code(project, tmp_path, capsys):
    """``__model__`` naming ``subprocess:run`` (which the old loader imported and called with
    the file's fields) is refused by every way a project is opened; the marker never appears."""
    marker = tmp_path / "ran"
    attack = {"__model__": "subprocess:run", "fields": {"args": ["touch", str(marker)]}}

    def plant(state, group):
        state["metadata"]["evil"] = attack

    _edit_state(project, 0, plant)
    for opener in (load_project, napari_io.read_project_layers):
        with pytest.raises(ProjectError, match=r"p\.aet\.h5.*'subprocess:run'.*nothing was run"):
            opener(project)
    assert main(["project", "export", str(project), "-o", str(tmp_path / "out")]) == 2
    assert "subprocess:run" in capsys.readouterr().err
    # a format-1 file (no attribute checksums) gets the same allow-list
    with h5py.File(project, "r+") as h5:
        h5.attrs["format_version"] = 1
    with pytest.raises(ProjectError, match="nothing was run"):
        load_project(project)
    assert not marker.exists()
    assert read_info(project)["layers"][0]["name"] == "volume"  # info loads no state


@pytest.mark.parametrize("damage, message", [
    # a changed attribute (opacity in the state) without a new checksum
    ("state", "attribute checksum mismatch"),
    # the curated elements (strings) and the undo history (JSON text) are checksummed too
    ("elements", "model/elements is damaged"),
    ("history", "model/meta is damaged"),
    ("layer_type", "unknown layer type 'evil'"),
    ("state_key", r"damaged state \(\['evil_kwarg'\]\)"),
    ("huge", "more than this machine's memory"),
    ("json", "incomplete or damaged project"),
    ("missing", "incomplete or damaged project"),
])
def test_damaged_fields_fail_clearly(project, damage, message):
    with h5py.File(project, "r+") as h5:
        layer = h5["layers/001"]
        session = h5["curation/000"]
        if damage == "state":
            state = json.loads(layer.attrs["state"])
            state["opacity"] = 0.5
            layer.attrs["state"] = json.dumps(state)
        elif damage == "elements":
            d = session["model/elements"]
            values = d.asstr()[()].tolist()
            values[0] = "Au"
            d[...] = np.array(values, dtype=object)
        elif damage == "history":
            d = session["model/meta"]
            d[()] = d.asstr()[()].replace('"ghost"', '"ghosz"')
        elif damage == "layer_type":
            layer.attrs["layer_type"] = "evil"
            _seal(layer)
        elif damage == "state_key":
            state = json.loads(layer.attrs["state"])
            state["evil_kwarg"] = 1
            layer.attrs["state"] = json.dumps(state)
            _seal(layer)
        elif damage == "huge":  # 8 TB claimed, a few bytes on disk
            del h5["layers/000/data"]
            h5["layers/000"].create_dataset("data", shape=(10 ** 12,), dtype="f8",
                                            chunks=(1 << 16,), compression="gzip")
        elif damage == "json":
            layer.attrs["state"] = '{"name": "x", '
            _seal(layer)
        elif damage == "missing":
            del h5["analysis"]
    with pytest.raises(ProjectError, match=message) as info:
        load_project(project)
    assert "p.aet.h5" in str(info.value)


def test_a_clean_project_still_loads(project):
    loaded = load_project(project)
    assert [s["name"] for _, s, _ in loaded.layers] == ["volume", "Pt curated", "phases"]
    assert type(loaded.layers[2][1]["colormap"]).__name__ == "CyclicLabelColormap"
    assert len(loaded.curation["Pt curated"].model) == 12
