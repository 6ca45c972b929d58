"""The phases Labels overlay shows on the 2D slice right after the analysis (issue 15), sits
on the volume's grid above the volume and under the atoms, and a re-run updates it."""

import numpy as np

from napari_aet.layers import add_layer, atoms_tuple, volume_tuple
from tests.widgets.test_analyse_widget import _run, _vacancy_crystal


def test_phase_overlay_is_drawn_on_the_2d_slice(qtbot, make_napari_viewer):
    from napari_aet.widgets.analyse import AnalyseWidget

    viewer = make_napari_viewer(show=True)
    volume = add_layer(viewer, volume_tuple(np.zeros((64, 64, 64), np.float32), 0.5))
    layer = add_layer(viewer, atoms_tuple(_vacancy_crystal(), 0.5, name="atoms"))
    widget = AnalyseWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.atoms_chooser.set_layer(layer)
    widget.volume_chooser.set_layer(volume)
    widget.preset.setCurrentText("ZrO2")
    viewer.dims.ndisplay = 2
    _run(qtbot, widget)
    phases = viewer.layers["atoms phases"]
    assert phases.visible and (phases.data == 2).sum() > 1000
    np.testing.assert_allclose(phases.scale, volume.scale)
    np.testing.assert_allclose(phases.translate, volume.translate)
    assert (np.asarray(phases._slice.image.view) == 2).sum() > 100  # the current slice
    names = [lay.name for lay in viewer.layers]
    assert names.index("volume") < names.index("atoms phases") < names.index("atoms")
    assert viewer.layers.selection.active is layer  # not the labels (no accidental painting)
    layer.visible = False
    viewer.layers["atoms voids"].visible = False
    qtbot.wait(200)
    rgb = viewer.screenshot(canvas_only=True)[..., :3].astype(int)
    green = (rgb[..., 1] > 60) & (rgb[..., 1] > rgb[..., 0] + 30)  # crystalline oxide, 40 %
    assert green.sum() > 2000
    _run(qtbot, widget)  # a re-run updates the overlay, no second layer
    assert [lay.name for lay in viewer.layers].count("atoms phases") == 1
    assert sum("phases" in lay.name for lay in viewer.layers) == 1
