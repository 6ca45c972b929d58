"""The ``napari-aet`` command.

Each subcommand lives in its own module of this package and defines

* ``COMMAND``: the subcommand name (e.g. ``"reconstruct"``),
* ``add_arguments(parser)``: its options (help text states units),
* ``run(args) -> int``: the work; raise :class:`CLIError` (or ``ValueError``/``OSError``)
  for bad input and it is reported as one line on stderr with exit status 2.

Modules are discovered automatically, so adding a step needs no edit here.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from napari_aet import __version__


class CLIError(Exception):
    """Bad input to a subcommand: printed as one line, exit status 2."""


def _command_modules():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "COMMAND") and hasattr(module, "run"):
            yield module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-aet",
        description="Atomic electron tomography: simulate, align, reconstruct, trace, curate, "
                    "analyse. Lengths are in Angstrom and angles in degrees unless stated.",
    )
    parser.add_argument("--version", action="version", version=f"napari-aet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        doc = (module.__doc__ or "").strip().splitlines()
        p = sub.add_parser(module.COMMAND, help=doc[0] if doc else None,
                           description=(module.__doc__ or "").strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``napari-aet`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("napari-aet: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, OSError, KeyError, RuntimeError, ImportError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"napari-aet {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
