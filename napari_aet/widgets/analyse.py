"""Dock widget "Analyse structure": PDF, Q4/Q6 and BOO, structure types, Voronoi rho_N, voids,
oxidation and phases of an atoms layer, as feature columns, colour overlays, layers and plots.

The analysis adds feature columns to the chosen Points layer (derived quantities; positions
are never changed) and writes new layers: void Surface meshes coloured by class and, when a
volume is chosen, a Labels volume of phases on the volume's grid.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTabWidget,
    QWidget,
)

from napari_aet.widgets._base import StepWidget

COLOR_BY = ("element", "phase", "boo", "rho_n", "oxidation", "structure", "core_distance_A")
_CATEGORICAL = {"phase", "structure", "element"}
_CONTINUOUS_CMAP = {"boo": "viridis", "rho_n": "plasma", "oxidation": "magma",
                    "core_distance_A": "coolwarm"}
STRUCTURE_COLORS = {"fcc": "#34c759", "hcp": "#ff3b30", "bcc": "#0a84ff",
                    "icosahedral": "#ffd60a", "other": "#d1d1d6", "": "#636366"}


class AnalyseWidget(StepWidget):
    """Run the structure analyses on an atoms layer and show the results on the stack."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, "Analyse structure", run_text="Analyse", parent=parent)
        from napari.layers import Image, Points

        from napari_aet.core.analysis import ANALYSES, AnalysisParameters

        self.result = None
        self.analysed_layer = None
        self.atoms = None
        self.atoms_chooser = self.add_layer_chooser("atoms", ("atoms",), (Points,))
        self.volume_chooser = self.add_layer_chooser("volume (optional)", ("volume",), (Image,),
                                                     optional=True)
        from napari_aet.core.presets import preset_names

        self.preset = QComboBox()
        self.preset.addItems(preset_names())
        self.preset.setCurrentText("generic")
        self.preset.setToolTip("material preset: thresholds from its [analysis] table, else "
                               "ZrO2's scaled to its nearest neighbour or to the atoms' PDF; "
                               "default: the preset the atoms were traced with, else generic")
        self.form.addRow("preset", self.preset)
        self.preset_note = QLabel()
        self.preset_note.setWordWrap(True)
        self.form.addRow("", self.preset_note)
        self.preset.currentTextChanged.connect(self._show_thresholds_source)
        self._show_thresholds_source()
        self.atoms_chooser.currentTextChanged.connect(self._preset_of_atoms)
        self._preset_of_atoms()
        self.params = self.add_parameters(AnalysisParameters, ("elements", "first_shell_A", "r_void_A"),
                                          overrides=True)
        boxes = QWidget()
        grid = QGridLayout(boxes)
        grid.setContentsMargins(0, 0, 0, 0)
        self.checks = {}
        for k, name in enumerate(ANALYSES):
            box = QCheckBox(name)
            box.setChecked(True)
            grid.addWidget(box, k // 3, k % 3)
            self.checks[name] = box
        self.form.addRow("analyses", boxes)
        self.preset.currentTextChanged.connect(self._tick_preset_analyses)
        self._tick_preset_analyses()
        self.run_button.clicked.connect(self.run)
        self.setMaximumWidth(480)  # leave the canvas room; plots scale with the dock

        # results: colour-by, legend, plots, export
        self.color_by = QComboBox()
        self.color_by.addItems(COLOR_BY)
        self.color_by.currentTextChanged.connect(self.apply_colors)
        self.color_by.setEnabled(False)
        self.legend = QLabel("")
        self.legend.setTextFormat(Qt.RichText)
        self.legend.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("colour by"))
        row.addWidget(self.color_by, 1)
        self.layout().addLayout(row)
        self.colorbar = QLabel()
        self.colorbar.setVisible(False)
        self.layout().addWidget(self.colorbar)
        self.layout().addWidget(self.legend)
        self.tabs = QTabWidget()
        self.tabs.setMinimumHeight(280)
        self.layout().addWidget(self.tabs, 1)
        exports = QHBoxLayout()
        self.export_table_button = QPushButton("Export table...")
        self.export_figures_button = QPushButton("Export figures...")
        self.export_table_button.clicked.connect(self._ask_table)
        self.export_figures_button.clicked.connect(self._ask_figures)
        for b in (self.export_table_button, self.export_figures_button):
            b.setEnabled(False)
            exports.addWidget(b)
        self.layout().addLayout(exports)

    def _preset_of_atoms(self, *_):
        """Select the preset named by the chosen atoms layer's trace step, if any."""
        from napari_aet.layers import aet_meta

        layer = self.atoms_chooser.layer()
        steps = [s for s in aet_meta(layer).get("provenance", []) if s.get("step") == "trace"] \
            if layer is not None else []
        name = steps[-1].get("params", {}).get("preset") if steps else None
        index = self.preset.findText(str(name or "generic"), Qt.MatchFixedString)
        if index >= 0:
            self.preset.setCurrentIndex(index)

    def _show_thresholds_source(self, *_):
        """Say where the chosen preset's thresholds come from."""
        from napari_aet.core.analysis import preset_thresholds

        params, source, scaled_to_pdf = preset_thresholds(self.preset.currentText())
        r_void = "from the PDF" if scaled_to_pdf else f"{params.r_void_A:.2f} A"
        self.preset_note.setText(f"thresholds: {source}; r_void {r_void}")

    def _tick_preset_analyses(self, *_):
        """Tick the analyses that suit the chosen preset (every one unless it names some)."""
        from napari_aet.core.analysis import preset_analyses

        chosen = preset_analyses(self.preset.currentText())
        for name, box in self.checks.items():
            box.setChecked(name in chosen)

    # --- running ---------------------------------------------------------------------------
    def _overrides(self) -> dict:
        """The form's values that replace the preset's (``auto`` fields left out)."""
        return {k: v for k, v in self.params.values_dict().items() if v is not None}

    def parameters(self):
        """The preset's thresholds with the form's values; for a preset without material
        thresholds (generic) the void and oxidation ones are scaled to the atoms' PDF when
        the analysis runs."""
        from napari_aet.core.analysis import preset_thresholds

        return preset_thresholds(self.preset.currentText())[0].updated(**self._overrides())

    def run(self):
        from napari_aet.core.analysis import (
            analyse_with_preset,
            analysis_steps,
            check_input,
        )
        from napari_aet.layers import atoms_from_layer, pixel_size_of

        try:
            layer = self.atoms_chooser.layer()
            if layer is None:
                raise ValueError("choose an atoms (Points) layer")
            atoms = atoms_from_layer(layer)
            params = self.parameters()
            check_input(atoms, params)  # bad input is reported here, before any work
            analyses = [k for k, b in self.checks.items() if b.isChecked()]
            if not analyses:
                raise ValueError("tick at least one analysis")
            volume = self.volume_chooser.layer()
            shape = pixel = None
            if volume is not None:
                shape, pixel = volume.data.shape[-3:], pixel_size_of(volume)
            total = len(analysis_steps(analyses, shape is not None)) + 1
        except Exception as exc:
            self.report_error(exc)
            return
        self.analysed_layer, self.atoms, self.volume_layer = layer, atoms, volume

        def on_yield(info):
            self.set_status(info.text)

        self.start(analyse_with_preset, atoms, self.preset.currentText(), self._overrides(),
                   analyses, shape, pixel, on_yield=on_yield, on_finished=self.show_result,
                   total=total)

    # --- results ---------------------------------------------------------------------------
    def show_result(self, result):
        """Write the feature columns, the void and phase layers, colours and plots."""
        layer = self.analysed_layer
        if layer not in self.viewer.layers:
            raise ValueError("the analysed layer was removed; nothing was written")
        if len(layer.data) != len(result.table.get("surface", [])):
            raise ValueError(f"layer {layer.name!r} changed while it was analysed; run again")
        self.result = result
        features = layer.features.copy()
        for name, values in result.table.items():
            features[name] = values
        layer.features = features
        if "element_colors" not in layer.metadata:
            layer.metadata["element_colors"] = np.asarray(layer.face_color).tolist()
        self._add_void_layer(result, layer)
        self._add_phase_volume(result)
        self.color_by.setEnabled(True)
        self.color_by.setCurrentText("phase" if "phase" in result.table else "element")
        self.apply_colors()
        self._plots(result)
        for b in (self.export_table_button, self.export_figures_button):
            b.setEnabled(True)
        s = result.summary
        parts = [f"{s['n_analysed']} atoms, first shell {s['first_shell_A']} A"]
        if "voids" in s:
            parts.append("voids: " + ", ".join(f"{v} {k}" for k, v in s["voids"].items()
                                               if k != "interstitial"))
        if "phase_counts" in s:
            parts.append("phases: " + ", ".join(f"{k.replace('_', ' ')} {v}"
                                                for k, v in s["phase_counts"].items()))
        p = result.params
        parts.append(f"thresholds: {s['thresholds_source']}; r_void "
                     f"{p.r_void_A:.2f} A, vacancy {p.vacancy_min_A3:.3g}-{p.vacancy_max_A3:.3g} A^3")
        self.set_status("; ".join(parts))

    def _provenance(self):
        from napari_aet.layers import provenance_step

        return [provenance_step("analyse", {k: v for k, v in vars(self.result.params).items()},
                                self.analysed_layer.name)]

    def _pixel_size(self):
        from napari_aet.layers import aet_meta

        return float(aet_meta(self.analysed_layer).get("pixel_size_A") or 1.0)

    def _add_void_layer(self, result, layer):
        from napari.utils.colormaps import Colormap

        from napari_aet.core.analysis.voids import VOID_CLASSES, VOID_COLORS
        from napari_aet.layers import add_layer, aet_metadata

        if result.voids is None:
            return
        vertices, faces, values = result.voids.mesh()
        if len(faces) == 0:
            return
        scale = np.asarray(layer.scale, float)[-3:]
        colors = [VOID_COLORS[k] for k in VOID_CLASSES]
        cmap = Colormap(colors=colors, controls=np.linspace(0, 1, len(colors) + 1),
                        interpolation="zero", name="void classes")
        name = f"{layer.name} voids"
        meta = aet_metadata("overlay", self._pixel_size(), self._provenance(), overlay="voids",
                            classes=list(VOID_CLASSES))
        old = [lay for lay in self.viewer.layers if lay.name == name]
        data = (vertices / scale, faces, (values + 0.5) / len(VOID_CLASSES))
        kwargs = {"name": name, "metadata": meta, "colormap": cmap, "contrast_limits": (0, 1),
                  "opacity": 0.7, "scale": tuple(scale), "blending": "translucent"}
        if old:
            old[0].data = data
            old[0].metadata = meta
        else:
            add_layer(self.viewer, (data, kwargs, "surface"))

    def _add_phase_volume(self, result):
        """Labels of phases on the volume's grid, right above the volume (so under the atoms
        and void surfaces drawn over it); a re-run updates the layer in place."""
        from napari.utils.colormaps import DirectLabelColormap

        from napari_aet.core.analysis.phases import PHASE_COLORS, PHASES
        from napari_aet.layers import add_layer, aet_meta, aet_metadata, pixel_size_of

        if result.phase_volume is None or self.volume_layer is None:
            return
        px = pixel_size_of(self.volume_layer)
        colors = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
        colors.update({k + 1: PHASE_COLORS[p] for k, p in enumerate(PHASES)})
        meta = aet_metadata("overlay", px, self._provenance(), overlay="phases",
                            labels={str(k + 1): p for k, p in enumerate(PHASES)})
        name = f"{self.analysed_layer.name} phases"
        kwargs = {"name": name, "metadata": meta, "scale": (px,) * 3,
                  "colormap": DirectLabelColormap(color_dict=colors), "opacity": 0.4,
                  "rendering": "translucent"}
        old = [lay for lay in self.viewer.layers
               if lay.name == name and aet_meta(lay).get("overlay") == "phases"]
        labels = add_layer(self.viewer, (result.phase_volume, kwargs, "labels"),
                           replace=old[0] if old else None)
        labels.scale = (px,) * 3
        labels.refresh()
        layers = self.viewer.layers
        if not old and self.volume_layer in layers:
            layers.move(layers.index(labels), layers.index(self.volume_layer) + 1)
        layers.selection.active = self.analysed_layer  # not the labels: no accidental painting

    def apply_colors(self, *_):
        """Colour the analysed layer's atoms by the chosen quantity and show its legend."""
        from matplotlib import colormaps
        from matplotlib.colors import to_rgba

        from napari_aet.core.analysis.phases import PHASE_COLORS

        layer = self.analysed_layer
        if layer is None or layer not in self.viewer.layers or self.result is None:
            return
        what = self.color_by.currentText()
        if what == "element":
            if "element_colors" in layer.metadata:
                layer.face_color = np.asarray(layer.metadata["element_colors"])
            self.colorbar.setVisible(False)
            self.legend.setText("element colours")
            return
        if what not in layer.features:
            self.legend.setText(f"{what}: not computed")
            return
        values = layer.features[what].to_numpy()
        if what in _CATEGORICAL:
            table = PHASE_COLORS if what == "phase" else STRUCTURE_COLORS
            rgba = np.array([to_rgba(table.get(str(v), "#636366")) for v in values])
            names, counts = np.unique(values.astype(str), return_counts=True)
            # each entry on one line (swatch with its name); the label wraps between entries
            items = [f"<span style='white-space:nowrap'><span style='color:"
                     f"{table.get(n, '#636366')}'>&#9632;</span> "
                     f"{(n or 'not analysed').replace('_', ' ')} ({c})</span>"
                     for n, c in zip(names, counts)]
            self.colorbar.setVisible(False)
            self.legend.setText("&nbsp; ".join(items))
        else:
            v = values.astype(float)
            fin = np.isfinite(v)
            lo, hi = (np.percentile(v[fin], [1, 99]) if fin.any() else (0.0, 1.0))
            hi = hi if hi > lo else lo + 1e-9
            cmap = colormaps[_CONTINUOUS_CMAP.get(what, "viridis")]
            rgba = cmap(np.clip((np.nan_to_num(v, nan=lo) - lo) / (hi - lo), 0, 1))
            rgba[~fin] = to_rgba("#636366")
            self._colorbar(cmap, lo, hi, what)
        layer.face_color = rgba
        layer.refresh()

    def _colorbar(self, cmap, lo, hi, what):
        ramp = (cmap(np.linspace(0, 1, 256))[None, :, :] * 255).astype(np.uint8)
        ramp = np.ascontiguousarray(np.repeat(ramp, 12, axis=0))
        image = QImage(ramp.data, 256, 12, 256 * 4, QImage.Format_RGBA8888).copy()
        unit = {"rho_n": " A^-3", "core_distance_A": " A"}.get(what, "")
        self.colorbar.setPixmap(QPixmap.fromImage(image).scaled(220, 12))
        self.colorbar.setVisible(True)
        self.legend.setText(f"{what}: {lo:.4g} &#8594; {hi:.4g}{unit} (grey: not analysed)")

    def _plots(self, result):
        from napari_aet.core.analysis.report import FIGURES
        from napari_aet.widgets._canvas import PlotCanvas

        self.tabs.clear()
        self.figures = {}
        titles = {"pdf": "PDF", "q4_q6": "Q4-Q6", "void_volumes": "voids", "profiles": "profiles"}
        for name, make in FIGURES.items():
            fig = make(result)
            self.figures[name] = fig
            canvas = PlotCanvas(fig)
            canvas.setMinimumSize(220, 240)
            self.tabs.addTab(canvas, titles[name])

    # --- export ----------------------------------------------------------------------------
    def export_table(self, path):
        """Write the per-atom table (x, y, z, element, quantities) to a csv file."""
        from napari_aet.core.analysis.report import atoms_table
        from napari_aet.io.analysis_report import write_csv

        if self.result is None:
            raise ValueError("run the analysis first")
        write_csv(path, atoms_table(self.atoms, self.result))

    def export_figures(self, directory, formats=("png", "svg")):
        """Save every plot as png and svg into ``directory``; returns the paths."""
        from napari_aet.io.analysis_report import write_figures

        if self.result is None:
            raise ValueError("run the analysis first")
        return write_figures(directory, self.figures, formats)

    def _ask_table(self):
        path, _ = QFileDialog.getSaveFileName(self, "Export per-atom table", "atoms_analysis.csv",
                                              "CSV (*.csv)")
        if path:
            try:
                self.export_table(path)
                self.set_status(f"table written to {path}")
            except Exception as exc:
                self.report_error(exc)

    def _ask_figures(self):
        directory = QFileDialog.getExistingDirectory(self, "Export figures to folder")
        if directory:
            try:
                paths = self.export_figures(directory)
                self.set_status(f"{len(paths)} figures written to {directory}")
            except Exception as exc:
                self.report_error(exc)
