"""Analyse an atom model: PDF, Q4/Q6 and BOO, structure types, Voronoi rho_N, voids, oxidation, phases.

Writes DIR/atoms.csv (one row per input atom in input order: x, y, z, element, q4, q6, boo,
structure, rho_n, oxidation, phase, ...), DIR/voids.csv, DIR/profiles.csv (against distance
from the metal core surface), DIR/summary.json and the figures (png and svg). Parameters come
from a material preset's [analysis] table (--preset) and any option overrides them. Lengths in
Angstrom, volumes in A^3. With --volume, a phase Labels volume (phases.mrc, 1 metal,
2 crystalline oxide, 3 amorphous oxide) is written on that volume's grid.
"""

from __future__ import annotations

import sys
from pathlib import Path

from napari_aet.cli import CLIError

COMMAND = "analyze"

#: option name -> AnalysisParameters field, help
_OPTIONS = {
    "first-shell": ("first_shell_A", "first-shell cutoff (A); default: first valley of the PDF"),
    "alpha": ("alpha_A", "alpha radius of the particle region (A); default: the first-shell cutoff"),
    "r-void": ("r_void_A", "circumsphere radius above which a tetrahedron is void (A; ZrO2 3.19)"),
    "vacancy-min": ("vacancy_min_A3", "smallest vacancy volume (A^3; 45)"),
    "vacancy-max": ("vacancy_max_A3", "largest vacancy volume (A^3; 125)"),
    "nanopore-max": ("nanopore_max_A3", "largest nano-pore volume (A^3; 4500)"),
    "boo-threshold": ("boo_threshold", "normalised BOO below which an atom is disordered (0.534)"),
    "max-distortion": ("max_distortion", "tetrahedron distortion above which no oxygen fits (0.255)"),
    "oxygen-volume": ("oxygen_volume_A3", "smallest tetrahedron holding an oxygen (A^3; 4.68)"),
    "rho-metal-min": ("rho_metal_min", "first-shell mean rho_N separating metal from oxide (A^-3; 0.035)"),
    "min-face-fraction": ("min_face_fraction",
                          "Voronoi faces below this share of the cell area are dropped (0.01)"),
    "shell-width": ("shell_width_A", "width of the interface shells around the core (A; 5)"),
    "profile-bin": ("profile_bin_A", "bin width of the profiles (A; 2)"),
    "pdf-r-max": ("pdf_r_max_A", "largest PDF distance (A; 12)"),
}


def add_arguments(parser):
    from napari_aet.core.analysis import ANALYSES

    parser.add_argument("atoms", metavar="ATOMS", help="atom coordinates (.xyz, ...; Angstrom)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--preset", default=None, metavar="NAME",
                        help="material preset with an [analysis] table (e.g. ZrO2, Zr, PdPt, Pt)")
    parser.add_argument("--volume", default=None, metavar="VOLUME",
                        help="reconstructed volume: a phase Labels volume is written on its grid")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="A",
                        help="pixel size of --volume (Angstrom) when the file does not say")
    parser.add_argument("--elements", default=None, metavar="EL[,EL]",
                        help="analyse only these species (e.g. Zr when oxygen is not traced)")
    parser.add_argument("--analyses", default=",".join(ANALYSES), metavar="LIST",
                        help=f"comma-separated subset of {','.join(ANALYSES)}")
    for name, (_, text) in _OPTIONS.items():
        parser.add_argument(f"--{name}", type=float, default=None, metavar="X", help=text)
    parser.add_argument("--no-figures", action="store_true", help="skip the png/svg figures")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args) -> int:
    from napari_aet.core.analysis import AnalysisParameters, run_analysis
    from napari_aet.io.analysis_report import write_report
    from napari_aet.io.coordinates import read_atoms

    path = Path(args.atoms)
    if not path.exists():
        raise CLIError(f"atoms file {path} does not exist")
    overrides = {field: getattr(args, name.replace("-", "_")) for name, (field, _) in _OPTIONS.items()}
    for field, value in overrides.items():
        if value is not None and not value > 0:
            raise CLIError(f"{field} must be positive; got {value}")
    if args.elements:
        overrides["elements"] = [e.strip() for e in args.elements.split(",") if e.strip()]
    params = (AnalysisParameters.from_preset(args.preset, **overrides) if args.preset
              else AnalysisParameters().updated(**overrides))
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

    result = run_analysis(atoms, params, analyses, shape, pixel, progress=progress)
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
              f"{s.get('phase_counts', {})}", file=sys.stderr)
        for p in written:
            print(p)
    return 0
