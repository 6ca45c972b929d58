"""Form rows generated from a step's parameter dataclass (:mod:`napari_aet.core.parameters`).

One input per field, with the field's range, unit suffix and help as tooltip: a float is a
``QDoubleSpinBox``, an int a ``QSpinBox``, a bool a ``QCheckBox`` (its text is the label),
a field with choices a ``QComboBox`` and a list of strings a comma-separated ``QLineEdit``.
A field that may be None (or every field of an ``overrides`` form, whose values a preset
fills in) shows None as "auto": the spin box's lowest value, the combo box's first item,
an empty line.
"""

from __future__ import annotations

import dataclasses
import math

from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLineEdit, QSpinBox

from napari_aet.core.parameters import Parameter, parameter_map

AUTO = "auto"
SUFFIXES = {"A": " Å", "A3": " Å³", "deg": " deg", "px": " px"}
_INT_LIMIT = 2**31 - 1


def _decimals(x) -> int:
    """Decimals needed to show ``x`` exactly (at most 6)."""
    if x is None:
        return 0
    text = f"{float(x):.6f}".rstrip("0")
    return len(text.partition(".")[2])


def _single_step(lo: float, hi: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) near a hundredth of the range."""
    span = (hi - lo) / 100 if math.isfinite(hi - lo) and hi > lo else 1.0
    power = 10.0 ** math.floor(math.log10(span))
    return max(m * power for m in (1, 2, 5) if m * power <= span)


class ParameterForm:
    """Rows for the parameters ``names`` (default: all) of the dataclass ``cls`` in ``layout``.

    ``layouts`` puts the rows of some fields in another layout (e.g. a collapsed section).
    ``inputs`` maps each field name to its input widget (also ``form[name]``). With
    ``overrides`` every field may be None ("auto", the preset's): use :meth:`values_dict`.
    """

    def __init__(self, cls, layout: QFormLayout, names=None, overrides: bool = False,
                 layouts: dict | None = None):
        described = parameter_map(cls)
        self.cls = cls
        self.parameters: list[Parameter] = [described[n] for n in (names or described)]
        self.nullable = {p.name: overrides or p.optional for p in self.parameters}
        self.base = None if overrides else cls()
        self.inputs = {}
        for p in self.parameters:
            widget = self._input(p)
            widget.setToolTip(p.describe())
            self.inputs[p.name] = widget
            target = (layouts or {}).get(p.name, layout)
            if isinstance(widget, QCheckBox):
                target.addRow(widget)
            else:
                target.addRow(p.label, widget)
        if self.base is not None:
            self.set_values(self.base)

    def __getitem__(self, name: str):
        return self.inputs[name]

    def _input(self, p: Parameter):
        nullable = self.nullable[p.name]
        if p.choices is not None:
            widget = QComboBox()
            widget.addItems(([AUTO] if nullable else []) + [str(c) for c in p.choices])
        elif p.type is bool:
            widget = QCheckBox(p.label)
        elif p.type is list:
            widget = QLineEdit()
            widget.setPlaceholderText(AUTO if nullable else "comma separated")
        elif p.type in (int, float):
            lo = -math.inf if p.min is None else p.min
            hi = math.inf if p.max is None else p.max
            if p.type is int:
                widget = QSpinBox()
                step = 1
                lo, hi = max(lo, -_INT_LIMIT), min(hi, _INT_LIMIT)
            else:
                widget = QDoubleSpinBox()
                step = _single_step(lo, hi)
                widget.setDecimals(max(2, _decimals(step), _decimals(p.min), _decimals(p.default)))
                lo, hi = max(lo, -1e12), min(hi, 1e12)
            widget.setSingleStep(step)
            widget.setRange(lo - step if nullable else lo, hi)
            if nullable:
                widget.setSpecialValueText(AUTO)
            widget.setSuffix(SUFFIXES.get(p.unit, ""))
        else:
            raise TypeError(f"no form input for {p.name} of type {p.type.__name__}")
        return widget

    # --- values ------------------------------------------------------------------------------
    def _get(self, p: Parameter):
        widget, nullable = self.inputs[p.name], self.nullable[p.name]
        if isinstance(widget, QCheckBox):
            return widget.isChecked()
        if isinstance(widget, QComboBox):
            text = widget.currentText()
            return None if nullable and text == AUTO else type(p.choices[0])(text)
        if isinstance(widget, QLineEdit):
            items = [e.strip() for e in widget.text().replace(" ", ",").split(",") if e.strip()]
            return items or (None if nullable else [])
        if nullable and widget.value() == widget.minimum():
            return None
        return p.type(widget.value())

    def _set(self, p: Parameter, value):
        widget = self.inputs[p.name]
        if isinstance(widget, QCheckBox):
            widget.setChecked(bool(value))
        elif isinstance(widget, QComboBox):
            text = AUTO if value is None else str(value)
            if widget.findText(text) >= 0:
                widget.setCurrentText(text)
        elif isinstance(widget, QLineEdit):
            widget.setText("" if value is None else
                           value if isinstance(value, str) else ",".join(map(str, value)))
        else:
            widget.setValue(widget.minimum() if value is None else value)

    def values_dict(self) -> dict:
        """``{name: value}`` of the form's fields (None for "auto")."""
        return {p.name: self._get(p) for p in self.parameters}

    def values(self):
        """The dataclass: the last :meth:`set_values` dataclass (or the defaults) with the
        form's fields."""
        if self.base is None:
            raise TypeError("an overrides form has no complete parameter set: use values_dict()")
        return dataclasses.replace(self.base, **self.values_dict())

    def set_values(self, values) -> None:
        """Set the fields from a dataclass or a mapping keyed by field name (or, as project
        files written before field names were used, by row label); others are left alone."""
        if dataclasses.is_dataclass(values):
            self.base = values
            values = dataclasses.asdict(values)
        folded = {str(k).casefold(): v for k, v in values.items()}  # older labels: Title case
        for p in self.parameters:
            key = p.name if p.name in values else p.label.casefold()
            source = values if key == p.name else folded
            if key in source:
                try:
                    self._set(p, source[key])
                except TypeError:  # a value of another kind (an older file's row): left alone
                    continue
