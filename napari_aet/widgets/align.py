"""Dock widget "Align tilt series": preprocessing, common line, centre of mass, projection matching.

Thin: reads the chosen tilt-series layer, runs
:func:`napari_aet.core.prepare.preprocess_and_align` in a thread worker, and writes a NEW aligned
layer (the input is never modified) whose ``metadata['aet']['shifts_px']`` records the total
shifts; when a background was subtracted, its estimate and the film mask go to two more
layers for checking. Shifts can be saved/loaded (:mod:`napari_aet.io.alignment`, atomic writes, optional
autosave after every change) and nudged by hand: with the aligned layer selected, the arrow
keys move the projection under the viewer's slider by the nudge step (pixels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QWidget,
)

from napari_aet import layers as aet_layers
from napari_aet.core.align import AlignParameters
from napari_aet.core.prepare import preprocess_and_align
from napari_aet.core.preprocess import PreprocessParameters
from napari_aet.widgets._base import StepWidget, _unwrap

PLOT_BACKGROUND = "#262930"  # napari's dark theme
PLOT_FOREGROUND = "#d6d6d6"
NUDGE_KEYS = {"Up": (-1, 0), "Down": (1, 0), "Left": (0, -1), "Right": (0, 1)}


class AlignWidget(StepWidget):
    """Align a tilt series; output a new layer; save, load and nudge shifts."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, "Align tilt series", run_text="Align", parent=parent)
        from napari.layers import Image, Labels

        self.tilt_chooser = self.add_layer_chooser("tilt series", ("tilt_series",), (Image,))
        self.tilt_chooser.own_step = "align"
        self.pixel_spin = QDoubleSpinBox()
        self.pixel_spin.setRange(0.0, 100.0)
        self.pixel_spin.setDecimals(4)
        self.pixel_spin.setSingleStep(0.01)
        self.pixel_spin.setSuffix(" \u00c5")
        self.pixel_spin.setSpecialValueText("unknown: enter it")
        self.pixel_spin.setToolTip("pixel size of the chosen tilt series (Angstrom); a file "
                                   "without one (.npy, .mat, plain TIFF) needs it entered here "
                                   "once, and the layer keeps it (also for Reconstruct)")
        self.pixel_spin.setKeyboardTracking(False)  # calibrate once the value is entered
        self.pixel_spin.valueChanged.connect(self._calibrate)
        self.form.addRow("pixel size", self.pixel_spin)
        self._pixel_layer = None  # the layer whose pixel size the row shows
        self.tilt_chooser.currentTextChanged.connect(lambda *_: self._show_pixel_size())
        napari_viewer.layers.events.inserted.connect(self._show_pixel_size)
        napari_viewer.layers.events.removed.connect(self._show_pixel_size)
        self._show_pixel_size()
        self.mask_chooser = self.add_layer_chooser("particle mask", ("mask",), (Labels,), optional=True)
        self.preprocess_params = self.add_parameters(PreprocessParameters,
                                                     ("denoise", "background", "normalize"))
        self.show_background_check = QCheckBox("show the background")
        self.show_background_check.setToolTip("show the estimated background and the film mask "
                                              "(the pixels it was estimated from) instead of "
                                              "the aligned layer")
        self.show_background_check.toggled.connect(self.show_background)
        self.form.addRow(self.show_background_check)
        self.align_params = self.add_parameters(AlignParameters)
        self.run_button.clicked.connect(self.run)

        # shifts file, autosave, nudge, before/after
        file_row = QHBoxLayout()
        self.save_button = QPushButton("Save shifts...")
        self.load_button = QPushButton("Load shifts...")
        self.save_button.clicked.connect(lambda: self.save_shifts())
        self.load_button.clicked.connect(lambda: self.load_shifts())
        file_row.addWidget(self.save_button)
        file_row.addWidget(self.load_button)
        self.layout().addLayout(file_row)
        self.autosave_edit = QLineEdit()
        self.autosave_edit.setPlaceholderText("autosave file (.csv/.json), empty = off")
        self.autosave_edit.setToolTip("every alignment and nudge is written here at once")
        self.form.addRow("autosave", self.autosave_edit)
        nudge = QWidget()
        grid = QGridLayout(nudge)
        grid.setContentsMargins(0, 0, 0, 0)
        self.nudge_spin = QDoubleSpinBox()
        self.nudge_spin.setRange(0.05, 5)
        self.nudge_spin.setSingleStep(0.05)
        self.nudge_spin.setValue(0.25)
        self.nudge_spin.setSuffix(" px")
        grid.addWidget(self.nudge_spin, 1, 3)
        for key, (r, c) in {"Up": (0, 1), "Down": (2, 1), "Left": (1, 0), "Right": (1, 2)}.items():
            button = QPushButton({"Up": "\u2191", "Down": "\u2193", "Left": "\u2190",
                                  "Right": "\u2192"}[key])
            button.setToolTip(f"nudge the current projection ({key} arrow key on the aligned layer)")
            button.clicked.connect(lambda _=False, k=key: self.nudge(*NUDGE_KEYS[k]))
            grid.addWidget(button, r, c)
        self.before_after = QPushButton("before/after")
        self.before_after.setToolTip("toggle between the input and the aligned layer")
        self.before_after.clicked.connect(self.toggle_before_after)
        grid.addWidget(self.before_after, 2, 3)
        self.form.addRow("nudge", nudge)

        from matplotlib.figure import Figure

        from napari_aet.widgets._canvas import PlotCanvas

        self.figure = Figure(figsize=(3.6, 4.6), tight_layout=True, facecolor=PLOT_BACKGROUND)
        self.canvas = PlotCanvas(self.figure)
        self.canvas.setMinimumHeight(330)
        self.layout().addWidget(self.canvas)
        self.add_stretch()

        self.output_layer = None
        self.input_layer = None
        self.background_layers: list = []  # estimated background and film mask of the last run
        self._source = None  # images the shifts apply to (after preprocessing)
        self._angles = None
        self._shifts = None
        self._tilt_axis = 0.0
        self._nudges: list = []
        self._steps: list = []
        self._curves_before = None

    # --- running ---------------------------------------------------------------------------
    def _inputs(self):
        from napari_aet.core.align import validate_tilt_series

        layer = self.tilt_chooser.layer()
        if layer is None:
            raise ValueError("choose a tilt-series layer")
        data = np.asarray(layer.data)
        if data.ndim != 3:
            raise ValueError(f"layer {layer.name!r} is a single image {data.shape}, not a tilt "
                             "series (n, ny, nx)")
        angles = aet_layers.angles_of(layer)
        pixel = self._pixel_size(layer)
        images, angles = validate_tilt_series(data, angles)
        mask = None
        if self.preprocess_params.values().background != "off":
            mask_layer = self.mask_chooser.layer()
            if mask_layer is not None:
                mask = np.asarray(mask_layer.data) > 0
                if not mask.any():
                    raise ValueError(f"the mask layer {mask_layer.name!r} is empty: draw the "
                                     "particle or choose (none) for an automatic mask")
        return layer, images, angles, pixel, mask

    def _show_pixel_size(self, *_):
        """Show the pixel size of a newly chosen layer; 0 (unknown: enter it) when it has none."""
        layer = _unwrap(self.tilt_chooser.layer())
        if layer is self._pixel_layer:
            return
        self._pixel_layer = layer
        try:
            pixel = aet_layers.pixel_size_of(layer) if layer is not None else 0.0
        except ValueError:
            pixel = 0.0
        self.pixel_spin.setValue(pixel)

    def _calibrate(self, *_):
        """Give the chosen layer the entered pixel size (at once: Reconstruct may come next)."""
        layer = _unwrap(self.tilt_chooser.layer())
        if layer is not None and layer is self._pixel_layer and self.pixel_spin.value() > 0:
            self._pixel_size(layer)

    def _pixel_size(self, layer) -> float:
        """The pixel size (A) in the row; a layer without one is calibrated with it (metadata
        and scale), so every later step and its outputs have it."""
        pixel = float(self.pixel_spin.value())
        if pixel <= 0:
            raise ValueError(f"layer {layer.name!r} has no pixel size: enter it in the "
                             "'pixel size' row (Angstrom)")
        try:
            known = aet_layers.pixel_size_of(layer)
        except ValueError:
            known = None
        if known is not None and abs(known - pixel) < 10 ** -self.pixel_spin.decimals():
            return known  # as shown (the row rounds)
        layer.metadata.setdefault("aet", {})["pixel_size_A"] = pixel
        layer.scale = (1.0, pixel, pixel)
        self.viewer.reset_view()  # the camera still frames the uncalibrated (pixel) extent
        return pixel

    def options(self) -> dict:
        """Keyword arguments of :func:`napari_aet.core.align.align_tilt_series`."""
        return self.align_params.values().options()

    def run(self):
        """Validate the inputs now (errors show at once), then align in a worker."""
        try:
            layer, images, angles, pixel, mask = self._inputs()
        except (ValueError, KeyError) as exc:
            self.report_error(exc)
            return None
        pre = self.preprocess_params.values()
        options = self.options()
        self._pending = (layer, angles, pixel)

        def finished(prepared):
            self._finish(prepared.images, prepared.alignment, *self._pending)
            self._show_background_layers(prepared.background, prepared.film_masks)

        return self.start(preprocess_and_align, images, angles, denoise=pre.denoise,
                          background=pre.background, mask=mask, normalize=pre.normalize,
                          **options,
                          on_yield=self._progress, on_finished=finished)

    def _progress(self, info):
        self.progress.setRange(0, info.total)
        self.progress.setValue(info.done)
        text = info.stage
        if info.update_rms_px is not None:
            text += f": update {info.update_rms_px:.3f} px"
        self.set_status(text)

    def _finish(self, source, result, layer, angles, pixel):
        from napari_aet.core.align import common_line_curves

        self.input_layer = layer
        self._source = source
        self._angles = angles
        self._pixel = pixel
        self._shifts = np.asarray(result.shifts_px, float)
        self._tilt_axis = float(result.tilt_axis_deg)
        self._steps = list(result.steps)
        self._nudges = []
        self._curves_before = common_line_curves(source)
        self._write_output(result.aligned)
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        message = (f"aligned {len(angles)} projections: shifts RMS "
                   f"{np.sqrt(np.mean(self._shifts**2)):.2f} px, tilt axis {self._tilt_axis:.2f} deg")
        self.set_status(message)
        QTimer.singleShot(0, lambda: self.set_status(message))  # after the base class's "done"

    # --- output layer ------------------------------------------------------------------------
    def _write_output(self, aligned):
        meta = aet_layers.aet_meta(self.input_layer)
        provenance = list(meta.get("provenance", [])) + [aet_layers.provenance_step(
            "align", {"steps": self._steps, "tilt_axis_deg": self._tilt_axis,
                      "nudges": self._nudges}, self.input_layer.name)]
        data_tuple = aet_layers.tilt_series_tuple(
            aligned, self._angles, self._pixel, name=f"{self.input_layer.name} aligned",
            provenance=provenance, shifts_px=self._shifts, tilt_axis_deg=self._tilt_axis,
            nudges=[list(n) for n in self._nudges], source_layer=self.input_layer.name)
        replace = self.output_layer if self.output_layer in self.viewer.layers else None
        self.output_layer = aet_layers.add_layer(self.viewer, data_tuple, replace=replace)
        if replace is None:
            for key, (dy, dx) in NUDGE_KEYS.items():
                self.output_layer.bind_key(
                    key, lambda _layer, dy=dy, dx=dx: self.nudge(dy, dx), overwrite=True)
        else:
            self.output_layer.refresh()
        self._plot()
        self._autosave()

    def _show_background_layers(self, background, masks):
        """Replace the last run's background layers with this run's (none when nothing was
        subtracted): ``"<input> background"`` and the Labels ``"<input> film mask"`` (1 where
        the background was estimated from the film, outside the particle mask)."""
        for layer in self.background_layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.background_layers = []
        if background is not None:
            scale = (1.0, self._pixel, self._pixel)
            name = self.input_layer.name
            meta = {"aet": {"kind": "background", "pixel_size_A": self._pixel,
                            "source_layer": name}}
            index = self.viewer.layers.index(self.output_layer)
            image = self.viewer.add_image(background, name=f"{name} background", scale=scale,
                                          colormap="magma", metadata=meta)
            film = self.viewer.add_labels((~masks).astype(np.uint8), name=f"{name} film mask",
                                          scale=scale, opacity=0.35, metadata=meta)
            self.viewer.layers.move(self.viewer.layers.index(image), index)  # under the output,
            self.viewer.layers.move(self.viewer.layers.index(film), index + 1)  # mask on top
            self.background_layers = [image, film]
        self.show_background(self.show_background_check.isChecked())
        if self.output_layer is not None and not self.show_background_check.isChecked():
            self.viewer.layers.selection.active = self.output_layer  # not the hidden film mask

    def show_background(self, show: bool):
        """Show the estimated background and film mask (True) or the aligned layer."""
        for layer in self.background_layers:
            layer.visible = bool(show)
        if self.output_layer is not None:
            self.output_layer.visible = not (show and self.background_layers)

    def _style(self, ax, title, xlabel, ylabel=""):
        ax.set_facecolor(PLOT_BACKGROUND)
        ax.set_title(title, fontsize=7, color=PLOT_FOREGROUND)
        ax.set_xlabel(xlabel, fontsize=7, color=PLOT_FOREGROUND)
        ax.set_ylabel(ylabel, fontsize=7, color=PLOT_FOREGROUND)
        ax.tick_params(labelsize=6, colors=PLOT_FOREGROUND)
        for spine in ax.spines.values():
            spine.set_color(PLOT_FOREGROUND)

    def _plot(self):
        from napari_aet.core.align import common_line_curves

        self.figure.clear()
        theta = self._angles[:, 1]
        ax = self.figure.add_subplot(3, 1, 1)
        ax.axhline(0, color="#777777", lw=0.5)
        ax.plot(theta, self._shifts[:, 0], "o-", ms=2.5, lw=0.8, color="#4fc3f7", label="dy (along axis)")
        ax.plot(theta, self._shifts[:, 1], "s-", ms=2.5, lw=0.8, color="#ffb74d", label="dx (across)")
        if self._nudges:
            idx = sorted({n[0] for n in self._nudges})
            ax.plot(theta[idx], self._shifts[idx, 1], "x", color="#ff5252", label="nudged")
        self._style(ax, "", "tilt angle (deg)", "shift applied (px)")
        ax.legend(fontsize=6, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.12),
                  frameon=False, labelcolor=PLOT_FOREGROUND)
        after = common_line_curves(self.output_layer.data)
        for row, (curves, title) in enumerate(((self._curves_before, "common lines before"),
                                               (after, "common lines after: all should coincide")),
                                              start=2):
            ax = self.figure.add_subplot(3, 1, row)
            ax.plot(curves.T, lw=0.5, alpha=0.6)
            self._style(ax, title, "position along tilt axis (px)")
        self.canvas.draw_idle()

    # --- nudge, save, load ---------------------------------------------------------------------
    def current_projection(self) -> int:
        return int(self.viewer.dims.current_step[0])

    def nudge(self, dy_sign: float, dx_sign: float, index: int | None = None):
        """Move one projection (default: the slider's) by the nudge step; re-write the output."""
        from napari_aet.core.align import apply_alignment

        if self._shifts is None:
            self.set_status("align (or load shifts) before nudging", error=True)
            return
        k = self.current_projection() if index is None else int(index)
        if not 0 <= k < len(self._shifts):
            self.set_status(f"projection {k} is out of range", error=True)
            return
        step = float(self.nudge_spin.value())
        delta = (dy_sign * step, dx_sign * step)
        self._shifts[k] += delta
        self._nudges.append((k, float(delta[0]), float(delta[1])))
        self._write_output(apply_alignment(self._source, self._shifts, self._tilt_axis))
        self.set_status(f"projection {k}: shift now dy {self._shifts[k, 0]:+.2f}, "
                        f"dx {self._shifts[k, 1]:+.2f} px")

    def alignment(self):
        from napari_aet.io.alignment import Alignment

        if self._shifts is None:
            raise ValueError("nothing to save: align or load shifts first")
        steps = list(self._steps) + ([{"step": "nudges", "nudges": self._nudges}] if self._nudges else [])
        return Alignment(self._angles, self._shifts, self._tilt_axis, self._pixel, steps)

    def save_shifts(self, path=None):
        """Write the shifts and angles (.csv or .json, atomically); returns the path or None."""
        from napari_aet.io.alignment import save_alignment

        try:
            alignment = self.alignment()
            if path is None:
                path, _ = QFileDialog.getSaveFileName(self, "Save shifts", "shifts.csv",
                                                      "Alignment (*.csv *.json)")
                if not path:
                    return None
            save_alignment(path, alignment)
        except (ValueError, OSError) as exc:
            self.report_error(exc)
            return None
        self.set_status(f"saved shifts to {Path(path).name}")
        return Path(path)

    def load_shifts(self, path=None):
        """Apply a saved alignment to the chosen tilt series (after the selected preprocessing)."""
        from napari_aet.core.align import apply_alignment, common_line_curves
        from napari_aet.core.jobs import run_to_completion
        from napari_aet.io.alignment import load_alignment

        try:
            if path is None:
                path, _ = QFileDialog.getOpenFileName(self, "Load shifts", "",
                                                      "Alignment (*.csv *.json)")
                if not path:
                    return None
            alignment = load_alignment(path)
            layer, images, angles, pixel, mask = self._inputs()
            if len(alignment.shifts_px) != len(images):
                raise ValueError(f"{Path(path).name} holds {len(alignment.shifts_px)} shifts for "
                                 f"{len(images)} images")
            pre = self.preprocess_params.values()
            images = run_to_completion(preprocess_and_align(
                images, angles, denoise=pre.denoise, background=pre.background, mask=mask,
                normalize=pre.normalize, align=False)).images
        except (ValueError, OSError, ImportError) as exc:
            self.report_error(exc)
            return None
        self.input_layer = layer
        self._source = images
        self._angles = alignment.angles_deg
        self._pixel = pixel
        self._shifts = alignment.shifts_px.copy()
        self._tilt_axis = alignment.tilt_axis_deg
        self._steps = list(alignment.steps) + [{"step": "loaded", "file": Path(path).name}]
        self._nudges = []
        self._curves_before = common_line_curves(self._source)
        self._write_output(apply_alignment(self._source, self._shifts, self._tilt_axis))
        self.set_status(f"applied shifts from {Path(path).name}")
        return self.output_layer

    def _autosave(self):
        from napari_aet.io.alignment import save_alignment

        target = self.autosave_edit.text().strip()
        if target:
            try:
                save_alignment(target, self.alignment())
            except (ValueError, OSError) as exc:
                self.report_error(exc)

    def toggle_before_after(self):
        if self.output_layer is None or self.input_layer is None:
            return
        show_after = not self.output_layer.visible
        self.output_layer.visible = show_after
        if self.input_layer in self.viewer.layers:
            self.input_layer.visible = not show_after
