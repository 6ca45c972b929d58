"""Base dock widget shared by every step: layer choosers, parameters, run/cancel, progress.

A concrete widget builds its parameter rows in ``self.form`` (those of a step's parameter
dataclass with :meth:`StepWidget.add_parameters`) and calls :meth:`StepWidget.start`
with a generator from ``core``; the generator runs in a napari ``thread_worker``, each yielded
value reaches ``on_yield`` in the Qt thread, and the return value reaches ``on_finished``.
Cancel stops the worker at its next yield and nothing is written. Errors are shown in the
status line and as a napari notification; they never escape into Qt.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Generator

from qtpy.QtCore import QEvent, QSize, Qt
from qtpy.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_aet.core.progress import Progress
from napari_aet.layers import aet_meta, kind_of, watch_axes
from napari_aet.widgets._form import ParameterForm


class LayerChooser(QComboBox):
    """A combo box listing the viewer's layers of some ``kinds`` (and optionally types).

    ``kinds`` are values of ``metadata['aet']['kind']``; with ``accept_untagged`` layers of
    the right napari type without our metadata are listed too (imported data).
    """

    NONE = "(none)"

    def __init__(self, viewer, kinds=(), layer_types=(), optional=False, accept_untagged=True,
                 parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.kinds = tuple(kinds)
        self.layer_types = tuple(layer_types)
        self.optional = optional
        self.accept_untagged = accept_untagged
        self.own_step = ""  # provenance step of the owning widget: its outputs are not followed
        self.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(22)
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self.refresh)
        viewer.layers.events.reordered.connect(self.refresh)
        self._hint = ""
        self.currentTextChanged.connect(lambda *_: self._show_name())
        self.refresh()

    def setToolTip(self, text: str) -> None:
        """Keep ``text`` as a hint below the full name of the chosen layer."""
        self._hint = text
        self._show_name()

    def _show_name(self):
        name = self.currentText()
        super().setToolTip("\n".join(t for t in (name, self._hint) if t))

    def _on_inserted(self, event=None):
        """A new layer of the right kind becomes the choice of a required input: the newest
        output of the previous step, not the first layer that ever matched. (An optional
        input such as a mask stays as chosen, and so does the input of a step that makes a
        layer of the same kind, such as Align.)"""
        self.refresh()
        layer = getattr(event, "value", None)
        if (self.optional or layer is None or not self._accepts(layer)
                or self.findText(layer.name) < 0):
            return
        steps = aet_meta(layer).get("provenance") or [{}]
        if not self.own_step or steps[-1].get("step") != self.own_step:
            self.setCurrentText(layer.name)

    def _accepts(self, layer) -> bool:
        if self.layer_types and not isinstance(layer, self.layer_types):
            return False
        kind = kind_of(layer)
        if kind is None:
            return self.accept_untagged and bool(self.layer_types)
        return not self.kinds or kind in self.kinds

    def refresh(self, *_):
        current = self.currentText()
        self.blockSignals(True)
        self.clear()
        if self.optional:
            self.addItem(self.NONE)
        names = [layer.name for layer in reversed(list(self.viewer.layers)) if self._accepts(layer)]
        self.addItems(names)
        for i in range(self.count()):  # full names: long ones are cut in the box
            self.setItemData(i, self.itemText(i), Qt.ToolTipRole)
        if current in names:
            self.setCurrentText(current)
        self.blockSignals(False)
        self._show_name()

    def layer(self):
        """The chosen layer, or None."""
        name = self.currentText()
        if not name or name == self.NONE or name not in self.viewer.layers:
            return None
        return self.viewer.layers[name]

    def set_layer(self, layer):
        self.refresh()
        self.setCurrentText(layer.name)


class _VerticalScroll(QScrollArea):
    """A scroll area as wide as its content and short: only its height scrolls."""

    #: Height (px) below which a docked step widget scrolls instead of growing the window:
    #: all five step widgets (the whole workflow) docked still fit a 1080p screen.
    MIN_HEIGHT = 140

    def setWidget(self, widget):
        super().setWidget(widget)
        widget.installEventFilter(self)

    def eventFilter(self, obj, event):
        if obj is self.widget() and event.type() == QEvent.LayoutRequest:
            self.updateGeometry()  # the content changed: so does the width we need
        return False

    def minimumSizeHint(self):
        hint = self.widget().minimumSizeHint() if self.widget() is not None else QSize(0, 0)
        return QSize(hint.width() + self.verticalScrollBar().sizeHint().width(),
                     min(hint.height(), self.MIN_HEIGHT))


def _unwrap(viewer):
    """The object behind napari's public-only proxy (plugin widgets receive the viewer, and
    through it its layers, as proxies)."""
    return getattr(viewer, "__wrapped__", viewer)


def _input_widgets(item) -> list:
    """Widgets of a form item (a widget with its children, or a layout), in order."""
    widget = item.widget()
    if widget is not None:
        if isinstance(widget, StepWidget._INPUTS):
            return [widget]
        return [w for w in widget.findChildren(QWidget)
                if not isinstance(w.parent(), QAbstractSpinBox)]
    layout = item.layout()
    found = []
    if layout is not None:
        for i in range(layout.count()):
            found += _input_widgets(layout.itemAt(i))
    return found


class StepWidget(QWidget):
    """Base class of the plugin's dock widgets.

    Attributes: ``viewer``, ``form`` (a ``QFormLayout`` for inputs and parameters),
    ``run_button``, ``cancel_button``, ``progress`` (``QProgressBar``), ``status``
    (``QLabel``), ``worker`` (the running worker or None), ``last_error`` (str or None),
    ``sections`` (the toggles of :meth:`add_section` by title).
    """

    _instances: weakref.WeakSet = weakref.WeakSet()

    def __init__(self, viewer, title: str = "", run_text: str = "Run", parent=None):
        super().__init__(parent)
        StepWidget._instances.add(self)
        self.viewer = viewer
        self.worker = None
        self.last_error: str | None = None
        watch_axes(viewer)  # sliders named tilt/z, y, x instead of -3, -2, -1
        # the content scrolls: docked widgets never make the window taller than the screen
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll = _VerticalScroll()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.body = QWidget()
        self._body_layout = QVBoxLayout(self.body)
        self.scroll.setWidget(self.body)
        outer.addWidget(self.scroll)
        if title:
            heading = QLabel(f"<b>{title}</b>")
            self.layout().addWidget(heading)
        self.parameter_forms: list[ParameterForm] = []
        self.sections: dict[str, QToolButton] = {}
        self.form = QFormLayout()
        self.form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.layout().addLayout(self.form)
        buttons = QHBoxLayout()
        self.run_button = QPushButton(run_text)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        self.layout().addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.layout().addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.layout().addWidget(self.status)

    def layout(self):
        """The layout of the scrolling body (where subclasses add their rows)."""
        return self._body_layout

    @classmethod
    def instances(cls, viewer) -> list:
        """The live widgets of this class (and subclasses) docked on ``viewer``."""
        target = _unwrap(viewer)
        return [w for w in list(cls._instances) if isinstance(w, cls) and _unwrap(w.viewer) is target]

    _INPUTS = (QCheckBox, QComboBox, QLineEdit, QAbstractSpinBox)

    def _form_inputs(self) -> dict:
        """``{key: input widget}`` for every input in the form that is not a parameter
        dataclass's (:meth:`add_parameters`), keyed by row label.

        A row with several inputs gives ``label[0]``, ``label[1]``, ...; a row without a
        label is keyed by its check box text. Layer choosers are left out (they follow the
        layers, not the parameters).
        """
        generated = {id(w) for form in self.parameter_forms for w in form.inputs.values()}
        inputs = {}
        for row in range(self.form.rowCount()):
            label = self.form.itemAt(row, QFormLayout.LabelRole)
            field = (self.form.itemAt(row, QFormLayout.FieldRole)
                     or self.form.itemAt(row, QFormLayout.SpanningRole))
            if field is None:
                continue
            found = [w for w in _input_widgets(field) if isinstance(w, self._INPUTS)
                     and not isinstance(w, LayerChooser) and id(w) not in generated]
            name = label.widget().text() if label is not None and label.widget() else ""
            for i, w in enumerate(found):
                key = name or (w.text() if isinstance(w, QCheckBox) else f"row {row}")
                inputs[key if len(found) == 1 else f"{key}[{i}]"] = w
        return inputs

    def form_values(self) -> dict:
        """Every parameter of the form as ``{key: value}`` (saved in project files): a
        parameter dataclass's by field name, other inputs by row label."""
        values = {}
        for key, w in self._form_inputs().items():
            if isinstance(w, QCheckBox):
                values[key] = w.isChecked()
            elif isinstance(w, QComboBox):
                values[key] = w.currentText()
            elif isinstance(w, QLineEdit):
                values[key] = w.text()
            else:
                values[key] = w.value()
        for form in self.parameter_forms:
            values.update(form.values_dict())
        return values

    def set_form_values(self, values: dict) -> None:
        """Set the form from :meth:`form_values` output; unknown keys are ignored (and the
        row labels of older project files restore the parameters they still match)."""
        folded = {str(k).casefold(): v for k, v in values.items()}  # older labels were Title case
        for key, w in self._form_inputs().items():
            if key not in values and key.casefold() not in folded:
                continue
            value = values[key] if key in values else folded[key.casefold()]
            if isinstance(w, QCheckBox):
                w.setChecked(bool(value))
            elif isinstance(w, QComboBox):
                if w.findText(str(value)) >= 0:
                    w.setCurrentText(str(value))
            elif isinstance(w, QLineEdit):
                w.setText(str(value))
            else:
                w.setValue(value)
        for form in self.parameter_forms:
            form.set_values(values)

    # --- helpers for subclasses -----------------------------------------------------------
    def add_parameters(self, cls, names=None, overrides: bool = False,
                       layout: QFormLayout | None = None,
                       layouts: dict | None = None) -> ParameterForm:
        """Rows for the fields ``names`` (default: all) of the parameter dataclass ``cls``, in
        ``layout`` (default: :attr:`form`; e.g. that of :meth:`add_section`); ``layouts``
        (field name -> layout) places some of them elsewhere."""
        form = ParameterForm(cls, self.form if layout is None else layout, names, overrides,
                             layouts)
        self.parameter_forms.append(form)
        return form

    def add_section(self, title: str, tip: str = "",
                    layout: QFormLayout | None = None) -> QFormLayout:
        """A collapsed section (a small arrow button titled ``title``) as the next row of
        :attr:`form`: rows of the returned layout (or of ``layout``, filled beforehand) show
        once it is opened. The button is :attr:`sections` ``[title]``."""
        toggle = QToolButton()
        toggle.setText(title)
        toggle.setToolTip(tip)
        toggle.setCheckable(True)
        toggle.setAutoRaise(True)
        toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        toggle.setArrowType(Qt.RightArrow)
        body = QWidget()
        layout = QFormLayout() if layout is None else layout
        body.setLayout(layout)
        layout.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        layout.setContentsMargins(12, 0, 0, 0)
        body.setVisible(False)

        def show(on: bool):
            toggle.setArrowType(Qt.DownArrow if on else Qt.RightArrow)
            body.setVisible(on)

        toggle.toggled.connect(show)
        self.form.addRow(toggle)
        self.form.addRow(body)
        self.sections[title] = toggle
        return layout

    def add_layer_chooser(self, label: str, kinds=(), layer_types=(), optional=False) -> LayerChooser:
        chooser = LayerChooser(self.viewer, kinds, layer_types, optional)
        self.form.addRow(label, chooser)
        return chooser

    def add_stretch(self):
        self.layout().addStretch(1)

    def set_status(self, text: str, error: bool = False):
        self.status.setText(text)
        self.status.setStyleSheet("color: #ff6b6b;" if error else "")

    def report_error(self, exc: BaseException):
        """Show an error in the status line and as a napari notification."""
        from napari.utils.notifications import show_error

        message = str(exc) or type(exc).__name__
        self.last_error = message
        self.set_status(message, error=True)
        show_error(f"{type(self).__name__}: {message}")

    # --- running work ----------------------------------------------------------------------
    def start(self, generator_fn: Callable[..., Generator], *args,
              on_yield: Callable | None = None, on_finished: Callable | None = None,
              total: int | None = None, **kwargs):
        """Run ``generator_fn(*args, **kwargs)`` in a thread worker.

        ``total`` sets the progress bar range (the count of yields); yielded
        :class:`~napari_aet.core.progress.Progress` records advance it to their ``done``.
        Returns the worker (already started).
        """
        from napari.qt.threading import thread_worker

        if self.worker is not None:
            raise RuntimeError("a job is already running; cancel it first")
        self.last_error = None
        self.progress.setRange(0, total or 0)
        self.progress.setValue(0)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.set_status("running...")
        worker = thread_worker(generator_fn, start_thread=False)(*args, **kwargs)
        self.worker = worker

        def yielded(value):
            if isinstance(value, Progress) and total:
                self.progress.setValue(min(value.done, total))
            if on_yield is not None:
                try:
                    on_yield(value)
                except Exception as exc:  # a display problem must not kill the job
                    self.report_error(exc)

        def returned(value):
            if on_finished is not None:
                try:
                    on_finished(value)
                except Exception as exc:
                    self.report_error(exc)
                    return
            # keep a summary that on_finished wrote; otherwise just say it is done
            if self.last_error is None and self.status.text() == "running...":
                self.set_status("done")
            if total:
                self.progress.setValue(total)

        def errored(exc):
            self.report_error(exc)

        def finished():
            self.worker = None
            self.run_button.setEnabled(True)
            self.cancel_button.setEnabled(False)
            if self.progress.maximum() == 0:
                self.progress.setRange(0, 1)

        def aborted():
            self.set_status("cancelled: nothing was changed")

        worker.yielded.connect(yielded)
        worker.returned.connect(returned)
        worker.errored.connect(errored)
        worker.aborted.connect(aborted)
        worker.finished.connect(finished)
        worker.start()
        return worker

    def cancel(self):
        if self.worker is not None:
            self.worker.quit()
