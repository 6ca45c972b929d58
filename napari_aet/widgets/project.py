"""Dock widget "Project" and File menu entries: save and open the whole working state.

A project (``NAME.aet.h5``, see :mod:`napari_aet.io.project`) holds every layer exactly as
it is (data, scale, colours, features, metadata), the open curation session (undo history,
reviewed items, review queue), the last analysis summary and the parameters of every
napari-aet widget. Opening a project adds its layers to the viewer, restores the widget
parameters and resumes the curation session in the Curate widget.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_aet.io import project as P

FILE_FILTER = "napari-aet project (*.aet.h5 *.h5)"


def _docked(viewer) -> dict:
    from napari_aet.widgets._base import StepWidget

    return {type(w).__name__: w for w in StepWidget.instances(viewer)}


def save_viewer(viewer, path, embed_tilt_series: bool = True) -> Path:
    """Save every layer of ``viewer`` and the state of its napari-aet widgets to ``path``."""
    if not len(viewer.layers):
        raise ValueError("nothing to save: the viewer has no layers")
    widgets = _docked(viewer)
    curation, analysis = {}, {}
    curate = widgets.get("CurateWidget")
    if curate is not None:
        session = curate.session_state()
        if session is not None:
            curation[curate.layer.name] = session
    analyse = widgets.get("AnalyseWidget")
    if analyse is not None and analyse.result is not None and analyse.analysed_layer is not None:
        from napari_aet.core.analysis.report import summary_dict

        if analyse.analysed_layer in viewer.layers:
            analysis[analyse.analysed_layer.name] = summary_dict(analyse.result)
    parameters = {"widgets": {name: w.form_values() for name, w in widgets.items()}}
    return P.save_project(path, list(viewer.layers), curation=curation, analysis=analysis,
                          parameters=parameters, embed_tilt_series=embed_tilt_series)


def open_in_viewer(viewer, path) -> P.Project:
    """Add a project's layers to ``viewer``, restore widget parameters, resume curation."""
    from napari.layers import Layer

    project = P.load_project(path)  # raises before the viewer is touched
    added = {}
    for data, state, layer_type in project.layers:
        layer = viewer.add_layer(Layer.create(data, state, layer_type))
        added[state.get("name", layer.name)] = layer
    widgets = _docked(viewer)
    for name, values in project.parameters.get("widgets", {}).items():
        if name in widgets:
            widgets[name].set_form_values(values)
    for name, session in project.curation.items():
        curate = widgets.get("CurateWidget") or _dock_curate(viewer)
        volume = added.get(session.volume_layer)
        if volume is None:
            raise P.ProjectError(f"curation of {name!r} needs the volume layer "
                                 f"{session.volume_layer!r}, which the project lacks")
        curate.resume(session.model, added[name], volume, session.items, session.item_index)
    return project


def _dock_curate(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-aet", "Curate atoms")
    return widget


class ProjectWidget(QWidget):
    """Save the working state to a project file and open one again."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.last_error: str | None = None
        self.setLayout(QVBoxLayout())
        self.layout().addWidget(QLabel("<b>Project</b>"))
        row = QHBoxLayout()
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("project.aet.h5")
        browse = QPushButton("...")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse)
        row.addWidget(self.path_edit)
        row.addWidget(browse)
        self.layout().addLayout(row)
        self.embed_check = QCheckBox("embed tilt series (else by reference + checksum)")
        self.embed_check.setChecked(True)
        self.embed_check.setToolTip("Unchecked: a tilt series that still equals the file it was "
                                    "read from is stored as its path and SHA-256, and read "
                                    "from there (checked) when the project is opened.")
        self.layout().addWidget(self.embed_check)
        buttons = QHBoxLayout()
        self.save_button = QPushButton("Save")
        self.open_button = QPushButton("Open")
        self.save_button.clicked.connect(lambda: self.save())
        self.open_button.clicked.connect(lambda: self.open())
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.open_button)
        self.layout().addLayout(buttons)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.layout().addWidget(self.status)
        self.layout().addStretch(1)

    def _browse(self):
        path, _ = QFileDialog.getSaveFileName(self, "Project file", self.path_edit.text(),
                                              FILE_FILTER, options=QFileDialog.DontConfirmOverwrite)
        if path:
            self.path_edit.setText(path)

    def _path(self, path):
        path = path or self.path_edit.text().strip()
        if not path:
            raise ValueError("choose a project file first")
        return Path(path)

    def _fail(self, exc):
        from napari.utils.notifications import show_error

        self.last_error = str(exc)
        self.status.setText(str(exc))
        self.status.setStyleSheet("color: #ff6b6b;")
        show_error(f"Project: {exc}")

    def _ok(self, text):
        self.last_error = None
        self.status.setText(text)
        self.status.setStyleSheet("")

    def save(self, path=None):
        """Save to ``path`` (default: the path field); returns the file written or None."""
        try:
            written = save_viewer(self.viewer, self._path(path), self.embed_check.isChecked())
        except Exception as exc:
            self._fail(exc)
            return None
        self.path_edit.setText(str(written))
        self._ok(f"saved {len(self.viewer.layers)} layers to {written}")
        return written

    def open(self, path=None):
        """Open ``path`` (default: the path field) into the viewer; returns the project."""
        try:
            project = open_in_viewer(self.viewer, self._path(path))
        except Exception as exc:
            self._fail(exc)
            return None
        self.path_edit.setText(str(project.info["path"]))
        extra = f", curation of {', '.join(project.curation)} resumed" if project.curation else ""
        self._ok(f"opened {len(project.layers)} layers{extra}")
        return project


# --- File menu commands (napari.yaml: napari/file/io_utilities) ------------------------------

def _menu(ask, action, failed: str, done):
    """Ask for a path; run ``action(path)``; report the outcome as a napari notification."""
    from napari.utils.notifications import show_error, show_info

    path, _ = ask()
    if not path:
        return
    try:
        result = action(path)
    except Exception as exc:
        show_error(f"{failed}: {exc}")
        return
    show_info(done(path, result))


def save_project_menu(viewer):
    """File > Save napari-aet project...: ask for a file and save everything."""
    _menu(lambda: QFileDialog.getSaveFileName(None, "Save napari-aet project", "project.aet.h5",
                                              FILE_FILTER),
          lambda path: save_viewer(viewer, path), "Saving the project failed",
          lambda path, written: f"saved project {written}")


def open_project_menu(viewer):
    """File > Open napari-aet project...: ask for a file and restore it."""
    _menu(lambda: QFileDialog.getOpenFileName(None, "Open napari-aet project", "", FILE_FILTER),
          lambda path: open_in_viewer(viewer, path), "Opening the project failed",
          lambda path, project: f"opened {len(project.layers)} layers from {path}")
