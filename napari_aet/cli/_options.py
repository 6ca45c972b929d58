"""Command-line options generated from a step's parameter dataclass.

``--fit-radius`` for ``fit_radius_A``: the field name without its unit suffix, with dashes;
the value lands in ``args.<field name>``. Type, default, choices and help (with unit and
range) come from the field; a bool that defaults to True becomes ``--no-<name>``.
"""

from __future__ import annotations

import argparse

from napari_aet.core.parameters import UNIT_SUFFIXES, Parameter, parameter_map


def option_name(p: Parameter) -> str:
    """``--fit-radius`` for ``fit_radius_A``."""
    stem = p.name.removesuffix(UNIT_SUFFIXES.get(p.unit, "\0"))
    return "--" + stem.replace("_", "-")


def add_parameter_options(parser, cls, names=None, overrides: bool = False, flags=None,
                          **extra) -> None:
    """Add an option for each field ``names`` (default: all) of the parameter dataclass ``cls``.

    With ``overrides`` every default is None (the preset's value) and a bool is
    ``--name/--no-name``. ``flags`` maps a field name to its option when that is not
    :func:`option_name`'s (e.g. an older option kept); ``extra`` maps a field name to more
    ``add_argument`` keywords.
    """
    described = parameter_map(cls)
    for p in (described[n] for n in (names or described)):
        flag = (flags or {}).get(p.name) or option_name(p)
        default = None if overrides else p.default
        text = p.describe()
        if overrides:
            text += "; default: the preset's"
        elif p.type is not bool:
            text += "; default: none" if default is None else f"; default {default}"
        kwargs = dict(dest=p.name, default=default, help=text.replace("%", "%%"))
        if p.type is bool:
            if overrides:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif p.default:
                flag = "--no-" + flag[2:]
                kwargs.update(action="store_false", help="skip: " + kwargs["help"])
            else:
                kwargs["action"] = "store_true"
        else:
            kwargs.update(type=p.type, metavar=p.unit or ("X" if p.type is float else "N"))
            if p.choices is not None:
                kwargs.update(choices=p.choices, metavar=None)
        kwargs.update(extra.get(p.name, {}))
        parser.add_argument(flag, **kwargs)


def parameter_values(cls, args, names=None) -> dict:
    """``{field: value}`` of the options :func:`add_parameter_options` added."""
    return {name: getattr(args, name) for name in (names or parameter_map(cls))}
