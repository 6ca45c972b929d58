"""Trace atoms in a reconstructed volume and write their coordinates.

Candidates are local maxima refined to sub-voxel precision (4th-order polynomial fits on a
3x spline up-sampled neighbourhood), kept brighter-first at the minimum distance, and
classified by integrated intensity into non-atoms and the expected species. Coordinates are
written in Angstrom in the volume's frame (x, y, z; voxel i at i * pixel size); .extxyz,
.csv and .mat also carry the per-atom features (integrated intensity, peak height, fit
residual, local blur sigma, nearest-neighbour distance, class margin).
"""

from __future__ import annotations

import sys
from pathlib import Path

from napari_aet.cli import CLIError
from napari_aet.cli._options import add_parameter_options, parameter_values
from napari_aet.core.trace import MAIN_PARAMETERS, TraceParameters

COMMAND = "trace"
FORMATS = (".xyz", ".extxyz", ".csv", ".mat")


def add_arguments(parser):
    from napari_aet.core.presets import preset_names

    parser.add_argument("volume", metavar="VOLUME",
                        help="reconstructed volume (nz, ny, nx): .mrc, .tif, .npy, .mat, ...")
    parser.add_argument("-o", "--output", required=True, metavar="ATOMS",
                        help="atom coordinates: .xyz, .extxyz, .csv or .mat")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="A",
                        help="voxel size (Angstrom) when the file does not say")
    parser.add_argument("--preset", default="generic", metavar="NAME",
                        help=f"material preset: {', '.join(preset_names())} (default generic)")
    parser.add_argument("--elements", default=None, metavar="E1,E2",
                        help="expected species, e.g. Si,O (default: the preset's)")
    add_parameter_options(parser, TraceParameters, MAIN_PARAMETERS, overrides=True)
    parser.add_argument("--quiet", action="store_true", help="no progress messages")


def run(args) -> int:
    from napari_aet.core.trace import trace
    from napari_aet.io.coordinates import write_atoms
    from napari_aet.io.tilt_series import read_volume

    out = Path(args.output)
    if out.suffix.lower() not in FORMATS:
        raise CLIError(f"{out}: unsupported output format {out.suffix!r}; use one of "
                       f"{', '.join(FORMATS)}")
    if not out.parent.exists():
        raise CLIError(f"output folder {out.parent} does not exist")
    volume, pixel_size_A = read_volume(args.volume, pixel_size_A=args.pixel_size)
    if pixel_size_A is None:
        raise CLIError(f"{args.volume}: no pixel size in the file; give --pixel-size A")

    def report(info):
        if not args.quiet:
            print(f"[{info.done}/{info.total}] {info.text}", file=sys.stderr)

    result = trace(volume, pixel_size_A, preset=args.preset, elements=args.elements,
                   progress=report, **parameter_values(TraceParameters, args, MAIN_PARAMETERS))
    atoms = result.atoms
    if out.suffix.lower() == ".xyz":
        counts = ", ".join(f"{e} {n}" for e, n in atoms.counts().items())
        write_atoms(out, atoms, comment=f"napari-aet trace of {Path(args.volume).name}: "
                                        f"{counts}; Angstrom, volume frame")
    elif out.suffix.lower() == ".mat":
        write_atoms(out, atoms, pixel_size_A=pixel_size_A)
    else:
        write_atoms(out, atoms)
    print(f"{len(atoms)} atoms ({', '.join(f'{e} {n}' for e, n in atoms.counts().items())}) "
          f"-> {out}")
    return 0
