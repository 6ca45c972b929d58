import numpy as np
import pytest

from napari_aet import layers
from napari_aet.core.atoms import Atoms


def test_metadata_schema_and_validation():
    meta = layers.aet_metadata("volume", 0.35, provenance=[layers.provenance_step("x", {"a": np.arange(2)})])
    assert meta["aet"]["kind"] == "volume" and meta["aet"]["pixel_size_A"] == 0.35
    assert meta["aet"]["provenance"][0]["params"]["a"] == [0, 1]
    with pytest.raises(ValueError, match="unknown layer kind"):
        layers.aet_metadata("blob", 1.0)
    with pytest.raises(ValueError, match="positive number of Angstrom"):
        layers.aet_metadata("volume", 0.0)


def test_tuples_carry_angstrom_scale():
    data, kw, kind = layers.tilt_series_tuple(np.zeros((3, 4, 4)), [0, 10, 20], 0.4)
    assert kind == "image" and kw["scale"] == (1.0, 0.4, 0.4)
    assert np.asarray(kw["metadata"]["aet"]["angles_deg"]).shape == (3, 3)
    with pytest.raises(ValueError, match="2 angles for 3 images"):
        layers.tilt_series_tuple(np.zeros((3, 4, 4)), [0, 10], 0.4)
    _, kw, _ = layers.volume_tuple(np.zeros((4, 4, 4)), 0.4)
    assert kw["scale"] == (0.4, 0.4, 0.4)
    atoms = Atoms([[1.0, 2.0, 3.0], [4, 5, 6]], ["Zr", "O"], {"phase": np.array(["metal", "metal"])})
    data, kw, kind = layers.atoms_tuple(atoms, 0.4)
    assert kind == "points" and list(kw["features"].columns) == ["element", "phase"]
    np.testing.assert_array_equal(data, atoms.positions)


def test_viewer_helpers(make_napari_viewer):
    viewer = make_napari_viewer()
    atoms = Atoms([[1.0, 2.0, 3.0]], ["Zr"])
    layer = layers.add_layer(viewer, layers.atoms_tuple(atoms, 0.4, name="atoms"))
    second = layers.add_layer(viewer, layers.atoms_tuple(atoms, 0.4, name="atoms"))
    assert second.name == "atoms [2]"
    back = layers.atoms_from_layer(layer)
    np.testing.assert_array_equal(back.positions, atoms.positions)
    assert back.elements.tolist() == ["Zr"]
    assert layers.find_layer(viewer, "atoms") is second
    vol = layers.add_layer(viewer, layers.volume_tuple(np.zeros((4, 4, 4)), 0.5))
    assert layers.pixel_size_of(vol) == 0.5
    plain = viewer.add_image(np.zeros((4, 4)), name="plain")
    with pytest.raises(ValueError, match="'plain' has no pixel size"):
        layers.pixel_size_of(plain)


def test_new_volume_opens_at_its_centre_with_the_tilt_series_hidden(make_napari_viewer):
    """Issue 15: the series and the volume share napari's first axis; a new volume is shown
    at its centre slice and the tilt series (a grey slab in 3D) is hidden."""
    from napari_aet.layers import add_layer, tilt_series_tuple, volume_tuple

    viewer = make_napari_viewer()
    series = add_layer(viewer, tilt_series_tuple(np.zeros((55, 40, 40), np.float32),
                                                 np.linspace(-70, 70, 55), 0.5))
    volume = add_layer(viewer, volume_tuple(np.zeros((40, 40, 40), np.float32), 0.5))
    assert not series.visible and volume.visible
    assert viewer.dims.point[0] == pytest.approx(20 * 0.5)
    assert tuple(viewer.dims.axis_labels) == ("z", "y", "x")  # the slider said "-3"


def test_sliders_are_named_tilt_then_z(make_napari_viewer):
    """Issue 15: a tilt series alone shows its slider as 'tilt' (napari said '-3'); once a
    volume is visible the axes read z, y, x, and back to 'tilt' when only the series shows."""
    from napari_aet.layers import add_layer, tilt_series_tuple, volume_tuple, watch_axes

    viewer = make_napari_viewer()
    watch_axes(viewer)
    series = add_layer(viewer, tilt_series_tuple(np.zeros((55, 40, 40), np.float32),
                                                 np.linspace(-70, 70, 55), 0.5))
    assert tuple(viewer.dims.axis_labels) == ("tilt", "y", "x")
    volume = add_layer(viewer, volume_tuple(np.zeros((40, 40, 40), np.float32), 0.5))
    assert tuple(viewer.dims.axis_labels) == ("z", "y", "x")
    volume.visible, series.visible = False, True
    assert tuple(viewer.dims.axis_labels) == ("tilt", "y", "x")
    viewer.dims.axis_labels = ("angle index", "row", "col")  # the user's own names stay
    volume.visible = True
    assert tuple(viewer.dims.axis_labels) == ("angle index", "row", "col")
