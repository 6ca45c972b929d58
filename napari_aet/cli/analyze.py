"""Analyse an atom model: PDF, Q4/Q6 and BOO, structure types, Voronoi rho_N, voids, oxidation, phases.

Writes DIR/atoms.csv (one row per input atom in input order: x, y, z, element, q4, q6, boo,
structure, rho_n, oxidation, phase, ...), DIR/voids.csv, DIR/profiles.csv (against distance
from the metal core surface), DIR/summary.json and the figures (png and svg). Parameters come
from a material preset (--preset; as in the Analyse widget: its [analysis] table, else ZrO2's
scaled to the material) and any option overrides them. Lengths in
Angstrom, volumes in A^3. With --volume, a phase Labels volume (phases.mrc, 1 metal,
2 crystalline oxide, 3 amorphous oxide) is written on that volume's grid.
"""

from __future__ import annotations

import sys
from pathlib import Path

from napari_aet.cli import CLIError
from napari_aet.cli._options import add_parameter_options, parameter_values
from napari_aet.core.analysis import ANALYSES, AnalysisParameters

COMMAND = "analyze"

#: The AnalysisParameters fields given as options (--elements is a comma-separated list).
OPTIONS = ("first_shell_A", "alpha_A", "r_void_A", "vacancy_min_A3", "vacancy_max_A3",
           "nanopore_max_A3", "boo_threshold", "max_distortion", "oxygen_volume_A3",
           "rho_metal_min", "min_face_fraction", "shell_width_A", "profile_bin_A", "pdf_r_max_A",
           "pdf_bin_A", "pdf_smoothing_A")


def add_arguments(parser):
    parser.add_argument("atoms", metavar="ATOMS", help="atom coordinates (.xyz, ...; Angstrom)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--preset", default=None, metavar="NAME",
                        help="material preset (e.g. ZrO2, Zr, PdPt, Pt, Si, SiO2, generic): its "
                             "[analysis] table, else ZrO2's thresholds scaled to its nearest "
                             "neighbour (generic: to the atoms' PDF); default: ZrO2's")
    parser.add_argument("--volume", default=None, metavar="VOLUME",
                        help="reconstructed volume: a phase Labels volume is written on its grid")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="A",
                        help="pixel size of --volume (Angstrom) when the file does not say")
    parser.add_argument("--elements", default=None, metavar="EL[,EL]",
                        help="analyse only these species (e.g. Zr when oxygen is not traced)")
    parser.add_argument("--analyses", default=None, metavar="LIST",
                        help=f"comma-separated subset of {','.join(ANALYSES)} (default: those "
                             "that suit the --preset material, else all)")
    add_parameter_options(parser, AnalysisParameters, OPTIONS, overrides=True)
    parser.add_argument("--no-figures", action="store_true", help="skip the png/svg figures")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args) -> int:
    from napari_aet.core.analysis import analyse_with_preset, preset_analyses
    from napari_aet.core.jobs import run_to_completion
    from napari_aet.io.analysis_report import write_report
    from napari_aet.io.coordinates import read_atoms

    path = Path(args.atoms)
    if not path.exists():
        raise CLIError(f"atoms file {path} does not exist")
    overrides = parameter_values(AnalysisParameters, args, OPTIONS)
    for field, value in overrides.items():
        if value is not None and not value > 0:
            raise CLIError(f"{field} must be positive; got {value}")
    if args.elements:
        overrides["elements"] = [e.strip() for e in args.elements.split(",") if e.strip()]
    if args.analyses is None:  # as the Analyse widget: those that suit the preset's material
        analyses = list(preset_analyses(args.preset) if args.preset else ANALYSES)
    else:
        analyses = [a.strip() for a in args.analyses.split(",") if a.strip()]
    atoms = read_atoms(path)
    shape = pixel = None
    if args.volume:
        from napari_aet.io.tilt_series import read_volume

        volume, pixel = read_volume(args.volume, pixel_size_A=args.pixel_size)
        if pixel is None:
            raise CLIError("the volume's pixel size is unknown: give --pixel-size")
        shape = volume.shape
        del volume

    def progress(info):
        if not args.quiet:
            print(f"[{info.done}/{info.total}] {info.text}", file=sys.stderr)

    # as the Analyse widget: the preset's thresholds (without --preset the built-in ones)
    result = run_to_completion(analyse_with_preset(atoms, args.preset, overrides, analyses,
                                                   shape, pixel), progress)
    source = result.summary["thresholds_source"]
    out = Path(args.output)
    written = write_report(out, atoms, result, figures=not args.no_figures)
    if result.phase_volume is not None:
        from napari_aet.io.tilt_series import write_mrc

        write_mrc(out / "phases.mrc", result.phase_volume, pixel)
        written.append(out / "phases.mrc")
    if not args.quiet:
        s = result.summary
        print(f"analysed {s['n_analysed']} of {s['n_atoms']} atoms; first shell "
              f"{s['first_shell_A']} A; voids {s.get('voids', {})}; phases "
              f"{s.get('phase_counts', {})}; thresholds: {source}", file=sys.stderr)
        for p in written:
            print(p)
    return 0
