"""A matplotlib canvas for dock widgets that redraws only while it is shown.

A hidden canvas (a dock in a background tab, a widget not yet shown or already closed) only
remembers that it is stale and redraws when shown, so no draw is queued for a canvas Qt may
delete before the event loop runs it.
"""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg


class PlotCanvas(FigureCanvasQTAgg):
    """``FigureCanvasQTAgg`` whose :meth:`draw_idle` waits until the canvas is visible."""

    def __init__(self, figure):
        super().__init__(figure)
        self.stale_hidden = False

    def draw_idle(self):
        if self.isVisible():
            super().draw_idle()
        else:
            self.stale_hidden = True

    def showEvent(self, event):
        super().showEvent(event)
        if self.stale_hidden:
            self.stale_hidden = False
            super().draw_idle()
