"""PlotCanvas: no draw is queued while hidden; a stale hidden canvas redraws when shown."""

from matplotlib.figure import Figure

from napari_aet.widgets._canvas import PlotCanvas


def test_hidden_canvas_draws_when_shown(qtbot):
    canvas = PlotCanvas(Figure(figsize=(2, 2)))
    qtbot.addWidget(canvas)
    drawn = []
    canvas.mpl_connect("draw_event", lambda event: drawn.append(event))
    canvas.figure.add_subplot().plot([0, 1], [1, 0])
    canvas.draw_idle()
    qtbot.wait(50)
    assert canvas.stale_hidden and not drawn  # hidden: nothing queued, nothing drawn
    canvas.show()
    qtbot.waitUntil(lambda: len(drawn) > 0, timeout=3000)
    assert not canvas.stale_hidden
