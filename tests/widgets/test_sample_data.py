import numpy as np
import pytest

from napari_aet.layers import aet_meta


@pytest.mark.parametrize("sample,atoms_per_element", [
    ("silica", {"Si": 334, "O": 668}),
    ("zr", None),
])
def test_samples_load_with_scale_and_metadata(make_napari_viewer, sample, atoms_per_element):
    viewer = make_napari_viewer()
    series = viewer.open_sample("napari-aet", sample)[0]
    atoms = viewer.open_sample("napari-aet", f"{sample}_atoms")[0]
    meta = aet_meta(series)
    px = meta["pixel_size_A"]
    assert meta["kind"] == "tilt_series" and px > 0
    assert series.data.shape[0] == 55 and series.data.shape[1] == series.data.shape[2]
    np.testing.assert_allclose(series.scale, [1.0, px, px])
    assert np.asarray(meta["angles_deg"]).shape == (55, 3)
    assert meta["provenance"][0]["step"] == "simulate"
    assert aet_meta(atoms)["kind"] == "atoms"
    np.testing.assert_allclose(atoms.scale, [1, 1, 1])
    elements = atoms.features["element"].to_numpy()
    if atoms_per_element:
        assert {e: int((elements == e).sum()) for e in atoms_per_element} == atoms_per_element
    else:
        assert set(elements) == {"Zr", "O"}
        assert set(atoms.features["phase"]) == {"metal", "crystalline_oxide", "amorphous_oxide"}
    # Colour by element: all atoms of one element share one colour, elements differ.
    colours = {e: np.unique(atoms.face_color[elements == e], axis=0) for e in set(elements)}
    assert all(len(c) == 1 for c in colours.values())
    assert len({tuple(c[0]) for c in colours.values()}) == len(colours)
    # Atoms lie inside the tilt series' field of view (Angstrom frame of the volume).
    extent = series.data.shape[1] * px
    assert atoms.data.min() >= 0 and atoms.data.max() <= extent
