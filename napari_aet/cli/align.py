"""Align a tilt series: optional denoising, background subtraction, common line, centre of mass.

Steps, in order: denoise (--denoise), background subtraction (--background: by default when
a support film is detected), tilt-axis direction (--estimate-axis), common-line alignment
along the tilt axis, centre of mass across it, projection matching
(--projection-matching-rounds, by default up to 5). Writes the aligned series as MRC
and, with --shifts-out, the shifts (dy, dx in pixels) and angles as CSV or JSON, which the
widget and `napari_aet.io.alignment.load_alignment` read back.
"""

from __future__ import annotations

import sys
from pathlib import Path

from napari_aet.cli import CLIError
from napari_aet.cli._options import add_parameter_options, parameter_values
from napari_aet.core.align import AlignParameters
from napari_aet.core.preprocess import PreprocessParameters

COMMAND = "align"
#: The preprocessing options (the denoising strength is the noise estimate's).
PREPROCESS_OPTIONS = ("denoise", "background", "normalize")


def add_arguments(parser):
    parser.add_argument("tilt_series", metavar="TILT", help="tilt series (n, ny, nx): .mrc, .tif, .npy, ...")
    parser.add_argument("--angles", required=True, metavar="ANGLES",
                        help="tilt angles file (.tlt, .txt, .csv, .npy, .mat; degrees)")
    parser.add_argument("-o", "--output", required=True, metavar="ALIGNED.mrc",
                        help="aligned tilt series (MRC, written atomically)")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="A",
                        help="pixel size (Angstrom) when the file does not say")
    parser.add_argument("--shifts-out", default=None, metavar="SHIFTS",
                        help="write shifts and angles here (.csv or .json)")
    add_parameter_options(parser, PreprocessParameters, PREPROCESS_OPTIONS,
                          background={"nargs": "?", "const": "on"})
    add_parameter_options(parser, AlignParameters)
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args) -> int:
    import numpy as np

    from napari_aet.core import align
    from napari_aet.core.jobs import run_to_completion
    from napari_aet.core.prepare import preprocess_and_align
    from napari_aet.io.alignment import Alignment, save_alignment
    from napari_aet.io.tilt_series import read_angles, read_tilt_series, write_mrc

    out = Path(args.output)
    if out.suffix.lower() != ".mrc":
        raise CLIError(f"the aligned series is written as MRC: give a .mrc output, not {out.name!r}")
    if args.shifts_out and Path(args.shifts_out).suffix.lower() not in (".csv", ".json"):
        raise CLIError("--shifts-out must end in .csv or .json")
    if args.projection_matching_rounds < 0:
        raise CLIError("--projection-matching-rounds must be >= 0")
    series, pixel_size = read_tilt_series(args.tilt_series, args.pixel_size)
    if pixel_size is None:
        raise CLIError("the tilt series has no pixel size: give --pixel-size (Angstrom)")
    angles = read_angles(args.angles, n_images=series.shape[0])
    series, angles = align.validate_tilt_series(series, angles)

    def say(text):
        if not args.quiet:
            print(text, file=sys.stderr)

    options = AlignParameters(**parameter_values(AlignParameters, args)).options()
    generator = preprocess_and_align(series, angles, denoise=args.denoise,
                                     background=args.background, normalize=args.normalize,
                                     **options)
    prepared = run_to_completion(
        generator, lambda info: say(f"[{info.done}/{info.total}] {info.text}"))
    result = prepared.alignment
    write_mrc(out, result.aligned, pixel_size)
    if args.shifts_out:
        save_alignment(args.shifts_out, Alignment(angles, result.shifts_px, result.tilt_axis_deg,
                                                  pixel_size, result.steps))
    rms = float(np.sqrt(np.mean(result.shifts_px**2)))
    say(f"wrote {out} ({len(series)} images); shifts RMS {rms:.2f} px, "
        f"tilt axis {result.tilt_axis_deg:.2f} deg")
    return 0
