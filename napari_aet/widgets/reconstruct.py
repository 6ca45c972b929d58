"""Dock widget "Reconstruct": RESIRE / SIRT / WBP of an aligned tilt series.

Reads a tilt-series layer (and optionally a support Labels layer), runs
:func:`napari_aet.core.reconstruct.run_reconstruction` in a worker, plots R1 per iteration and the central
orthogonal slices while it iterates, and adds a NEW volume layer when it finishes. Cancel
stops at the next iteration and adds nothing; earlier results stay as they are.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QFormLayout

from napari_aet import layers
from napari_aet.core import reconstruct as rec
from napari_aet.core.progress import Progress
from napari_aet.core.projectors import gpu_available
from napari_aet.widgets._base import StepWidget

_BACKGROUND = "#262930"  # napari's dark theme
_FOREGROUND = "#d1d2d4"
#: Angle-refinement fields of :class:`~napari_aet.core.reconstruct.ReconstructParameters`.
REFINE = ("refine_angles_cycles", "refine_angles", "refine_rounds", "refine_shifts")


class ReconstructWidget(StepWidget):
    """Reconstruct a volume from the chosen tilt series; live R1 curve and slice preview."""

    def __init__(self, napari_viewer, parent=None):
        viewer = napari_viewer  # napari passes the viewer by this name
        from matplotlib.figure import Figure
        from napari.layers import Image, Labels

        from napari_aet.widgets._canvas import PlotCanvas

        super().__init__(viewer, "Reconstruct", run_text="Reconstruct", parent=parent)
        self.series_chooser = self.add_layer_chooser("tilt series", ("tilt_series",), (Image,))
        self.support_chooser = self.add_layer_chooser("support", ("support",), (Labels,),
                                                      optional=True)
        self.support_chooser.setToolTip("voxels outside the support (label 0) stay zero; "
                                        "(none) = whole volume")
        refine = QFormLayout()  # the angle-refinement rows, in a collapsed section below
        self.params = self.add_parameters(rec.ReconstructParameters,
                                          layouts={name: refine for name in REFINE})
        self.add_section("angle refinement", "alternate reconstruction and per-image angle "
                         "(and shift) refinement; off by default: it did not improve the "
                         "independent test data (docs/reconstruct.md)", layout=refine)
        ok, reason = gpu_available()
        self.params["gpu"].setEnabled(ok)
        if not ok:
            self.params["gpu"].setToolTip(f"GPU unavailable: {reason}")
        self.params["extended_object"].toggled.connect(self._extended_changed)
        self.params["method"].currentTextChanged.connect(self._method_changed)
        self._method_changed(self.params["method"].currentText())
        self.params["refine_angles_cycles"].valueChanged.connect(self._refine_changed)
        self._refine_changed()

        self.figure = Figure(figsize=(3.2, 3.6), tight_layout=True, facecolor=_BACKGROUND)
        self.canvas = PlotCanvas(self.figure)
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
        """The method's own iterations and step; WBP (one pass) has neither, nor positivity,
        a tight support or an extended box."""
        form = self.params
        iterations, step = rec.DEFAULTS[method]
        form["iterations"].setValue(iterations)
        form["step"].setValue(form["step"].minimum() if step is None else step)
        for name in ("iterations", "step", "tight_support", "extended_object"):
            form[name].setEnabled(method != "wbp")
        form["positivity"].setChecked(method != "wbp")
        self._extended_changed()

    def _extended_changed(self, *_):
        """The box width matters only for an extended object (not WBP)."""
        form = self.params
        form["extended_box"].setEnabled(form["extended_object"].isEnabled()
                                        and form["extended_object"].isChecked())

    def parameters(self) -> dict:
        """The reconstruction's keyword arguments ("auto" iterations and step: the method's)."""
        p = self.params.values()
        resolved = p.options()
        params = {"method": p.method, "iterations": resolved["iterations"],
                  "positivity": p.positivity, "subpixel": p.subpixel, "gpu": p.gpu}
        if p.method != "wbp":
            params.update(step=resolved["step"], tight_support=p.tight_support,
                          extended_object=p.extended_object)
            if p.extended_object:
                params["extended_box"] = p.extended_box
        if p.refine_angles_cycles:
            params.update({k: resolved[k] for k in REFINE})
        return params

    def _refine_changed(self, *_):
        """Which angles, rounds and shifts matter only when refinement cycles are set."""
        on = self.params["refine_angles_cycles"].value() > 0
        for name in REFINE[1:]:
            self.params[name].setEnabled(on)

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
        if info.r1 is None:  # an angle-refinement round
            self.set_status(f"{info.text} ({info.done}/{info.total})")
            return
        self.r1_history.append(float(info.r1))
        k = np.arange(1, len(self.r1_history) + 1)
        self._r1_line.set_data(k, self.r1_history)
        self.ax_r1.set_xlim(0.5, max(2, self._job["iterations"] * self._job["passes"]) + 0.5)
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
        stage = f"{info.stage}: " if info.stage.startswith(("cycle", "final")) else ""
        self.set_status(f"{stage}iteration {info.done}/{info.total}  R1 = {info.r1:.4f}")
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
        cycles = params.get("refine_angles_cycles", 0)
        self._job = dict(params, series=series, pixel_size=pixel_size, angles=angles,
                         support_name=None if support_layer is None else support_layer.name,
                         passes=cycles + 1)
        self._reset_plot()
        kwargs = {k: v for k, v in params.items() if k != "method"}
        every = max(1, params["iterations"] // 40)
        total = params["iterations"] * (cycles + 1) + params.get("refine_rounds", 0) * cycles
        return self.start(rec.run_reconstruction, params["method"], tilt_series, angles,
                          support=support, preview_every=every, on_yield=self._on_progress,
                          on_finished=self._on_done, total=total, **kwargs)

    def _on_done(self, result: rec.ReconstructionResult):
        job = self._job
        self.r1_history = list(result.r1_history)
        series = job["series"]
        params = {k: job[k] for k in ("method", "iterations", "positivity", "subpixel", "gpu")}
        for key in ("step", "tight_support", "extended_object"):
            if key in job:
                params[key] = job[key]
        params["support"] = job["support_name"]
        angles, refined = np.asarray(job["angles"]), {}
        if result.refinement is not None:
            params.update({k: job[k] for k in REFINE})
            angles = np.asarray(result.refinement.angles_deg)
            refined = {"shifts_px": np.asarray(result.refinement.shifts_px),
                       "angles_deg_start": np.asarray(job["angles"]),
                       "refinement_residuals": list(result.refinement.residual_history)}
        provenance = list(layers.aet_meta(series).get("provenance", []))
        provenance.append(layers.provenance_step("reconstruct", params, source=series.name))
        layer_tuple = layers.volume_tuple(
            result.volume, job["pixel_size"], name=f"{series.name} {job['method']}",
            provenance=provenance, method=job["method"], params=params,
            r1_history=list(result.r1_history), angles_deg=angles, **refined)
        self.last_layer = layers.add_layer(self.viewer, layer_tuple)
        summary = (f"{job['method']}: {result.iterations} iteration(s), final R1 = "
                   f"{result.r1_final:.4f} -> layer {self.last_layer.name!r}")
        if result.refinement is not None:
            change = np.sqrt(((angles - job["angles"]) ** 2).mean())
            summary += f"; angles refined (rms change {change:.3f} deg)"
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, lambda: self.set_status(summary))  # after the base's "done"
