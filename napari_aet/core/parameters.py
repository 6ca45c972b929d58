"""Step parameters described once: default, unit, range, choices and help of every field.

Each step keeps its parameters in a dataclass whose fields are made with :func:`parameter`;
the widget forms, the run configuration's schema, the command-line options and the project
files are all generated from these descriptions, so they cannot disagree::

    @dataclass
    class TraceParameters:
        min_distance_A: float = parameter(1.2, unit="A", min=0.3, max=10.0,
                                          help="reject a candidate this close to a brighter atom")

Units are those of the field name's suffix: ``A`` Angstrom (``_A``), ``A3`` cubic Angstrom,
``deg`` degrees, ``px`` pixels. Ranges are inclusive.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass

_KEY = "napari_aet"
UNIT_SUFFIXES = {"A": "_A", "A3": "_A3", "deg": "_deg", "px": "_px"}
UNIT_NAMES = {"A": "Angstrom", "A3": "cubic Angstrom", "deg": "degrees", "px": "pixels"}


@dataclass(frozen=True)
class Parameter:
    """The description of one step parameter (see :func:`parameter`).

    ``type`` is ``float``, ``int``, ``bool``, ``str`` or ``list`` (of strings);
    ``optional`` when None is allowed (None then means "the step decides", e.g. a method's
    own default).
    """

    name: str
    type: type
    optional: bool
    default: object
    unit: str | None
    min: float | None
    max: float | None
    choices: tuple | None
    help: str
    label: str

    def check(self, value) -> str | None:
        """Why ``value`` is out of range or not a choice, or None when it is fine."""
        if value is None:
            return None if self.optional else "must be given"
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(map(str, self.choices))}"
        if self.min is not None and value < self.min:
            return f"must be >= {self.min:g}"
        if self.max is not None and value > self.max:
            return f"must be <= {self.max:g}"
        return None

    def describe(self) -> str:
        """The help text with the unit and range, e.g. ``"fit sphere (Angstrom, 0.2 to 5)"``."""
        extra = [u for u in (UNIT_NAMES.get(self.unit, self.unit),) if u]
        if self.min is not None or self.max is not None:
            lo = "" if self.min is None else f"{self.min:g}"
            hi = "" if self.max is None else f"{self.max:g}"
            extra.append(f"{lo} to {hi}" if lo and hi else (f">= {lo}" if lo else f"<= {hi}"))
        return f"{self.help} ({', '.join(extra)})" if extra else self.help


def parameter(default, *, unit: str | None = None, min: float | None = None,
              max: float | None = None, choices=None, help: str = "",
              label: str | None = None):
    """A dataclass field holding a step parameter's default and its description.

    ``unit`` names the unit (``"A"``, ``"A3"``, ``"deg"``, ``"px"`` or None for a pure
    number); ``min``/``max`` the inclusive range; ``choices`` the allowed values; ``label``
    the form's row label (default: the name without its unit suffix, with spaces).
    """
    meta = {_KEY: {"unit": unit, "min": min, "max": max,
                   "choices": None if choices is None else tuple(choices),
                   "help": help, "label": label}}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _field_type(hint) -> tuple[type, bool]:
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or \
        typing.get_origin(hint) is typing.Union else (hint,)
    optional = type(None) in args
    (base,) = [a for a in args if a is not type(None)]
    return (typing.get_origin(base) or base), optional


def parameters(cls) -> list[Parameter]:
    """The :class:`Parameter` of every field of a parameter dataclass (class or instance), in order."""
    cls = cls if isinstance(cls, type) else type(cls)
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(_KEY)
        if meta is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not made with parameter()")
        kind, optional = _field_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        label = meta["label"]
        if label is None:
            suffix = UNIT_SUFFIXES.get(meta["unit"], "")
            stem = f.name[:-len(suffix)] if suffix and f.name.endswith(suffix) else f.name
            label = stem.replace("_", " ")
        out.append(Parameter(f.name, kind, optional, default, meta["unit"], meta["min"],
                             meta["max"], meta["choices"], meta["help"], label))
    return out


def parameter_map(cls) -> dict[str, Parameter]:
    """``{name: Parameter}`` of a parameter dataclass."""
    return {p.name: p for p in parameters(cls)}

