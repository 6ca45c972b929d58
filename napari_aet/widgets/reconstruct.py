"""Dock widget "Reconstruct": RESIRE / SIRT / WBP of an aligned tilt series.

Reads a tilt-series layer (and optionally a support Labels layer), runs
:func:`napari_aet.core.reconstruct.run_reconstruction` in a worker, plots R1 per iteration and the central
orthogonal slices while it iterates, and adds a NEW volume layer when it finishes. Cancel
stops at the next iteration and adds nothing; earlier results stay as they are.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox

from napari_aet import layers
from napari_aet.core import reconstruct as rec
from napari_aet.core.progress import Progress
from napari_aet.core.projectors import gpu_available
from napari_aet.widgets._base import StepWidget

_BACKGROUND = "#262930"  # napari's dark theme
_FOREGROUND = "#d1d2d4"


class ReconstructWidget(StepWidget):
    """Reconstruct a volume from the chosen tilt series; live R1 curve and slice preview."""

    def __init__(self, napari_viewer, parent=None):
        viewer = napari_viewer  # napari passes the viewer by this name
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure
        from napari.layers import Image, Labels

        super().__init__(viewer, "Reconstruct", run_text="Reconstruct", parent=parent)
        self.series_chooser = self.add_layer_chooser("tilt series", ("tilt_series",), (Image,))
        self.support_chooser = self.add_layer_chooser("support", ("support",), (Labels,),
                                                      optional=True)
        self.support_chooser.setToolTip("voxels outside the support (label 0) stay zero; "
                                        "(none) = whole volume")
        self.method = QComboBox()
        self.method.addItems(list(rec.METHODS))
        self.method.setToolTip("RESIRE: real-space gradient descent (published AET method); "
                               "SIRT; WBP: weighted back-projection (one pass)")
        self.form.addRow("method", self.method)
        self.iterations = QSpinBox()
        self.iterations.setRange(1, 5000)
        self.form.addRow("iterations", self.iterations)
        self.step = QDoubleSpinBox()
        self.step.setRange(0.01, 10.0)
        self.step.setSingleStep(0.25)
        self.step.setDecimals(2)
        self.step.setToolTip("RESIRE: t = step / (n_angles * nz); 2 is usual, 2.2 already "
                             "converges poorly and 2.5 oscillates; SIRT: relaxation factor (1)")
        self.form.addRow("step", self.step)
        self.positivity = QCheckBox("positivity (negative voxels -> 0)")
        self.positivity.setChecked(True)
        self.form.addRow(self.positivity)
        self.tight = QCheckBox("loose then tight support")
        self.tight.setToolTip("after half the iterations, restrict the support to the "
                              "smoothed volume above 10 % of its maximum")
        self.form.addRow(self.tight)
        self.extended = QCheckBox("extended object (film beyond the field of view)")
        self.extended.setToolTip("reconstruct in a box twice as wide along x, compare "
                                 "projections on the field of view only, keep the field-of-"
                                 "view volume (RESIRE's extended-object mode)")
        self.form.addRow(self.extended)
        self.subpixel = QCheckBox("4 sub-pixel samples per voxel")
        self.subpixel.setChecked(True)
        self.form.addRow(self.subpixel)
        self.gpu = QCheckBox("GPU (CuPy)")
        ok, reason = gpu_available()
        self.gpu.setEnabled(ok)
        self.gpu.setToolTip("run on the GPU" if ok else f"GPU unavailable: {reason}")
        self.form.addRow(self.gpu)
        self.method.currentTextChanged.connect(self._method_changed)
        self._method_changed(self.method.currentText())

        self.figure = Figure(figsize=(3.2, 3.6), tight_layout=True, facecolor=_BACKGROUND)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(280)
        grid = self.figure.add_gridspec(2, 3, height_ratios=[1.1, 1])
        self.ax_r1 = self.figure.add_subplot(grid[0, :])
        self.ax_slices = [self.figure.add_subplot(grid[1, i]) for i in range(3)]
        self.layout().addWidget(self.canvas)
        self.add_stretch()
        self._reset_plot()

        self.r1_history: list[float] = []
        self.last_layer = None
        self._job = None
        self.run_button.clicked.connect(self.run)

    # --- parameters --------------------------------------------------------------------------
    def _method_changed(self, method):
        iterations, step = rec.DEFAULTS[method]
        self.iterations.setValue(iterations)
        self.iterations.setEnabled(method != "wbp")
        self.step.setEnabled(step is not None)
        self.tight.setEnabled(method != "wbp")
        self.extended.setEnabled(method != "wbp")
        if step is not None:
            self.step.setValue(step)
        self.positivity.setChecked(method != "wbp")

    def parameters(self) -> dict:
        method = self.method.currentText()
        params = {"method": method, "iterations": int(self.iterations.value()),
                  "positivity": self.positivity.isChecked(),
                  "subpixel": self.subpixel.isChecked(), "gpu": self.gpu.isChecked()}
        if method != "wbp":
            params["step"] = float(self.step.value())
            params["tight_support"] = self.tight.isChecked()
            params["extended_object"] = self.extended.isChecked()
        else:
            params["iterations"] = 1
        return params

    # --- plotting ----------------------------------------------------------------------------
    def _reset_plot(self):
        self.ax_r1.clear()
        self.ax_r1.set_facecolor(_BACKGROUND)
        self.ax_r1.set_xlabel("iteration", fontsize=8, color=_FOREGROUND)
        self.ax_r1.set_ylabel("R1", fontsize=8, color=_FOREGROUND)
        self.ax_r1.tick_params(labelsize=7, colors=_FOREGROUND, which="both")
        for spine in self.ax_r1.spines.values():
            spine.set_color(_FOREGROUND)
        self.ax_r1.grid(alpha=0.25)
        (self._r1_line,) = self.ax_r1.plot([], [], color="tab:orange", lw=1.5)
        for ax, title in zip(self.ax_slices, ("yx (z centre)", "zx (y centre)", "zy (x centre)")):
            ax.clear()
            ax.set_title(title, fontsize=7, color=_FOREGROUND)
            ax.set_facecolor("black")
            ax.set_xticks([])
            ax.set_yticks([])
        self._slice_images = [None, None, None]
        self.canvas.draw_idle()

    def _on_progress(self, info: Progress):
        self.r1_history.append(float(info.r1))
        k = np.arange(1, len(self.r1_history) + 1)
        self._r1_line.set_data(k, self.r1_history)
        self.ax_r1.set_xlim(0.5, max(2, self._job["iterations"]) + 0.5)
        positive = [r for r in self.r1_history if r > 0]
        if positive:
            self.ax_r1.set_yscale("log")
            self.ax_r1.set_ylim(min(positive) * 0.8, max(positive) * 1.25)
        preview = info.preview
        if preview:
            for i, key in enumerate(("yx", "zx", "zy")):
                image = preview[key]
                lo, hi = np.percentile(image, [1, 99.8])
                if self._slice_images[i] is None:
                    self._slice_images[i] = self.ax_slices[i].imshow(image, cmap="gray")
                else:
                    self._slice_images[i].set_data(image)
                self._slice_images[i].set_clim(lo, hi if hi > lo else lo + 1)
        self.set_status(f"iteration {info.done}/{info.total}  R1 = {info.r1:.4f}")
        self.canvas.draw_idle()

    # --- running -----------------------------------------------------------------------------
    def run(self):
        """Start a reconstruction with the chosen layers and parameters."""
        try:
            series = self.series_chooser.layer()
            if series is None:
                raise ValueError("choose a tilt-series layer (aligned, with angles in metadata)")
            angles = layers.angles_of(series)
            pixel_size = layers.pixel_size_of(series)
            tilt_series = np.asarray(series.data, dtype=np.float32)
            support_layer = self.support_chooser.layer()
            support = None if support_layer is None else np.asarray(support_layer.data) > 0
            params = self.parameters()
            rec.check_inputs(tilt_series, angles, support)
        except Exception as exc:
            self.report_error(exc)
            return None
        self.r1_history = []
        self._job = dict(params, series=series, pixel_size=pixel_size, angles=angles,
                         support_name=None if support_layer is None else support_layer.name)
        self._reset_plot()
        kwargs = {k: v for k, v in params.items() if k != "method"}
        every = max(1, params["iterations"] // 40)
        return self.start(rec.run_reconstruction, params["method"], tilt_series, angles,
                          support=support, preview_every=every, on_yield=self._on_progress,
                          on_finished=self._on_done, total=params["iterations"], **kwargs)

    def _on_done(self, result: rec.ReconstructionResult):
        job = self._job
        self.r1_history = list(result.r1_history)
        series = job["series"]
        params = {k: job[k] for k in ("method", "iterations", "positivity", "subpixel", "gpu")}
        for key in ("step", "tight_support", "extended_object"):
            if key in job:
                params[key] = job[key]
        params["support"] = job["support_name"]
        provenance = list(layers.aet_meta(series).get("provenance", []))
        provenance.append(layers.provenance_step("reconstruct", params, source=series.name))
        layer_tuple = layers.volume_tuple(
            result.volume, job["pixel_size"], name=f"{series.name} {job['method']}",
            provenance=provenance, method=job["method"], params=params,
            r1_history=list(result.r1_history), angles_deg=np.asarray(job["angles"]))
        self.last_layer = layers.add_layer(self.viewer, layer_tuple)
        summary = (f"{job['method']}: {result.iterations} iteration(s), final R1 = "
                   f"{result.r1_final:.4f} -> layer {self.last_layer.name!r}")
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, lambda: self.set_status(summary))  # after the base's "done"
