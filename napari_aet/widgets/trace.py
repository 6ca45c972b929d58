"""Dock widget "Trace atoms": volume -> atoms Points layer, with a draggable class histogram."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QComboBox, QLineEdit, QSizePolicy

from napari_aet.core.atoms import ELEMENT_COLORS
from napari_aet.core.presets import load_preset, preset_names
from napari_aet.core.trace import (
    MAIN_PARAMETERS,
    TRACE_STAGES,
    TraceParameters,
    TraceResult,
    check_volume,
    trace_atoms,
    trace_parameters,
)
from napari_aet.layers import (
    add_layer,
    aet_meta,
    atom_colors,
    atom_sizes,
    atoms_tuple,
    pixel_size_of,
    provenance_step,
)
from napari_aet.widgets._base import StepWidget


def is_curated(layer) -> bool:
    """True when a person has edited the atoms layer (it must not be overwritten)."""
    if aet_meta(layer).get("curated"):
        return True
    features = getattr(layer, "features", None)
    if features is not None and "source" in features:
        return bool(np.any(features["source"].astype(str).to_numpy() != "auto"))
    return False


class IntensityHistogram:
    """Histogram of integrated intensities with draggable class boundaries (matplotlib).

    ``on_change(boundaries)`` is called while a boundary is dragged and when it is released.
    """

    PICK_PX = 8

    def __init__(self, on_change=None):
        from matplotlib.figure import Figure

        from napari_aet.widgets._canvas import PlotCanvas

        self.figure = Figure(figsize=(3.2, 2.0), tight_layout=True)
        self.figure.patch.set_facecolor("#262930")
        self.canvas = PlotCanvas(self.figure)
        self.canvas.setMinimumHeight(170)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.ax = self.figure.add_subplot(111)
        self.on_change = on_change
        self.values = np.zeros(0)
        self.boundaries = np.zeros(0)
        self.class_names: list[str] = []
        self.lines = []
        self._dragging = None
        self.canvas.mpl_connect("button_press_event", self._press)
        self.canvas.mpl_connect("motion_notify_event", self._motion)
        self.canvas.mpl_connect("button_release_event", self._release)
        self._style()
        self.canvas.draw_idle()

    def _style(self):
        ax = self.ax
        ax.set_facecolor("#262930")
        for spine in ax.spines.values():
            spine.set_color("#8e8e93")
        ax.tick_params(colors="#d1d1d6", labelsize=7)
        ax.set_xlabel("integrated intensity (drag the lines)", color="#d1d1d6", fontsize=8)
        ax.set_ylabel("candidates", color="#d1d1d6", fontsize=8)

    def set_data(self, values, boundaries, class_names):
        self.values = np.asarray(values, float)
        self.boundaries = np.asarray(boundaries, float).copy()
        self.class_names = list(class_names)
        ax = self.ax
        ax.clear()
        self._style()
        labels = np.searchsorted(self.boundaries, self.values)
        edges = np.linspace(self.values.min(), self.values.max(), 80) if len(self.values) else 10
        for c, name in enumerate(self.class_names):
            sel = self.values[labels == c]
            if len(sel):
                color = "#8e8e93" if c == 0 else ELEMENT_COLORS.get(name, "#c7c7cc")
                ax.hist(sel, bins=edges, color=color, alpha=0.85, label=f"{name} ({len(sel)})")
        ax.set_yscale("log")
        self.lines = [ax.axvline(b, color="white", lw=1.5, ls="--", picker=True)
                      for b in self.boundaries]
        if len(self.values):
            ax.legend(fontsize=7, facecolor="#262930", labelcolor="#d1d1d6", framealpha=0.8,
                      loc="upper right")
        self.canvas.draw_idle()

    # --- dragging ----------------------------------------------------------------------------
    def _nearest_line(self, event):
        if event.inaxes is not self.ax or not self.lines:
            return None
        xs = self.ax.transData.transform(np.c_[self.boundaries, np.zeros(len(self.boundaries))])[:, 0]
        d = np.abs(xs - event.x)
        i = int(np.argmin(d))
        return i if d[i] <= self.PICK_PX else None

    def _press(self, event):
        self._dragging = self._nearest_line(event)

    def _bounded(self, i, x):
        lo = self.boundaries[i - 1] if i > 0 else -np.inf
        hi = self.boundaries[i + 1] if i + 1 < len(self.boundaries) else np.inf
        eps = 1e-9 * max(1.0, abs(x))
        return float(np.clip(x, lo + eps, hi - eps))

    def _motion(self, event):
        if self._dragging is None or event.inaxes is not self.ax or event.xdata is None:
            return
        i = self._dragging
        self.boundaries[i] = self._bounded(i, event.xdata)
        self.lines[i].set_xdata([self.boundaries[i]] * 2)
        self.canvas.draw_idle()
        if self.on_change is not None:
            self.on_change(self.boundaries.copy())

    def _release(self, event):
        if self._dragging is None:
            return
        self._dragging = None
        self.set_data(self.values, self.boundaries, self.class_names)
        if self.on_change is not None:
            self.on_change(self.boundaries.copy())


class TraceWidget(StepWidget):
    """Trace atoms in a volume layer; the result is a new atoms Points layer (Angstrom).

    The histogram shows the integrated intensity of every candidate with the k-means class
    boundaries; dragging a boundary re-labels the atoms of the layer this widget made, as
    long as nobody has curated it. A re-run never overwrites a curated layer.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, title="Trace atoms", run_text="Trace", parent=parent)
        from napari.layers import Image

        self.volume_chooser = self.add_layer_chooser("volume", kinds=("volume",),
                                                     layer_types=(Image,))
        self.preset = QComboBox()
        self.preset.addItems(preset_names())
        self.form.addRow("material preset", self.preset)
        self.elements = QLineEdit()
        self.elements.setToolTip("expected species, comma separated (e.g. Si,O); "
                                 "told apart by brightness (Z^1.8)")
        self.form.addRow("elements", self.elements)
        self.params = self.add_parameters(TraceParameters, MAIN_PARAMETERS)
        self.histogram = IntensityHistogram(on_change=self.set_boundaries)
        self.layout().insertWidget(self.layout().count(), self.histogram.canvas)
        self.add_stretch()
        self.result: TraceResult | None = None
        self.output_layer = None
        self._source_name = ""
        self._source_provenance: list = []
        self.summary = ""
        self.preset.currentTextChanged.connect(self.load_preset)
        self.run_button.clicked.connect(self.run)
        self.preset.setCurrentText("generic")
        self.load_preset("generic")

    def load_preset(self, name: str):
        """Fill the parameter fields from a material preset."""
        self.elements.setText(",".join(load_preset(name).get("elements", ["X"])))
        self.params.set_values(TraceParameters.from_preset(name))

    def parameters(self) -> dict:
        return dict(preset=self.preset.currentText(), elements=self.elements.text(),
                    **self.params.values_dict())

    def run(self):
        layer = self.volume_chooser.layer()
        if layer is None:
            self.report_error(ValueError("choose a volume layer to trace"))
            return
        params = self.parameters()
        try:  # bad input is reported here, before any work starts
            px = pixel_size_of(layer)
            volume = check_volume(np.asarray(layer.data))
            trace_parameters(**params)
        except ValueError as exc:
            self.report_error(exc)
            return
        self._source_name = layer.name
        self._source_provenance = list(aet_meta(layer).get("provenance", []))

        def on_yield(info):
            self.set_status(info.text)

        worker = self.start(trace_atoms, volume, px, on_yield=on_yield,
                            on_finished=self._finished, total=len(TRACE_STAGES), **params)
        # Connected after the base class's handler, so the summary replaces its "done".
        worker.returned.connect(lambda _: self.last_error is None and self.set_status(self.summary))

    # --- results -----------------------------------------------------------------------------
    def _finished(self, result: TraceResult):
        self.result = result
        self.histogram.set_data(result.candidates.features["integrated_intensity"],
                                result.boundaries, result.class_names)
        self._write_layer(result.atoms, result.boundaries)
        counts = ", ".join(f"{e} {n}" for e, n in result.atoms.counts().items())
        self.summary = (f"{len(result.atoms)} atoms ({counts}) from {len(result.candidates)} "
                        "candidates; drag the histogram lines to re-label")

    def _layer_tuple(self, atoms, boundaries):
        r = self.result
        params = {k: v for k, v in r.parameters.items()}
        provenance = self._source_provenance + [provenance_step("trace", params,
                                                                self._source_name)]
        return atoms_tuple(atoms, r.pixel_size_A, name=f"atoms ({self._source_name})",
                           provenance=provenance, source_layer=self._source_name,
                           class_boundaries=[float(b) for b in boundaries],
                           class_names=r.class_names, curated=False)

    def _write_layer(self, atoms, boundaries):
        replace = self.output_layer
        if replace is not None and (replace not in self.viewer.layers or is_curated(replace)):
            replace = None
        layer = add_layer(self.viewer, self._layer_tuple(atoms, boundaries), replace=replace)
        if replace is not None:  # add_layer updates data, metadata, features only
            layer.face_color = atom_colors(atoms.elements) if len(atoms) else "white"
            layer.size = atom_sizes(atoms.elements) if len(atoms) else 1.0
        self.output_layer = layer
        return layer

    def set_boundaries(self, boundaries):
        """Re-label the atoms with new intensity boundaries (from the histogram or a script)."""
        if self.result is None:
            return
        boundaries = np.asarray(boundaries, float)
        atoms = self.result.relabel(boundaries)
        layer = self.output_layer
        if layer is None or layer not in self.viewer.layers or is_curated(layer):
            self.set_status("the atoms layer has been curated (or removed): boundaries apply "
                            "to the next run; nothing was changed", error=True)
            return
        self._write_layer(atoms, boundaries)
        counts = ", ".join(f"{e} {n}" for e, n in atoms.counts().items())
        self.set_status(f"re-labelled: {len(atoms)} atoms ({counts})")
