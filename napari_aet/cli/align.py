"""Align a tilt series: optional denoising, background subtraction, common line, centre of mass.

Steps, in order: denoise (--denoise), background subtraction (--background: by default when
a support film is detected), tilt-axis direction (--estimate-axis), common-line alignment
along the tilt axis, centre of mass across it, projection matching (--projection-matching,
by default up to 5 rounds). Writes the aligned series as MRC
and, with --shifts-out, the shifts (dy, dx in pixels) and angles as CSV or JSON, which the
widget and `napari_aet.io.alignment.load_alignment` read back.
"""

from __future__ import annotations

import sys
from pathlib import Path

from napari_aet.cli import CLIError
from napari_aet.core.align import DEFAULTS

COMMAND = "align"


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
    parser.add_argument("--denoise", default=None, choices=["nlm", "tv", "bm3d", "gaussian"],
                        help="denoise every image first (bm3d needs the optional bm3d package)")
    parser.add_argument("--background", nargs="?", const="on", default="auto",
                        choices=["auto", "on", "off"],
                        help="subtract a Laplace-inpainted background under an automatic particle "
                             "mask: auto (default) when a support film is detected, on (the bare "
                             "flag) or off")
    parser.add_argument("--normalize", action="store_true",
                        help="scale images to equal total intensity (after background subtraction)")
    parser.add_argument("--estimate-axis", action="store_true",
                        help="estimate the in-plane tilt-axis direction and remove it")
    parser.add_argument("--tilt-axis", type=float, default=0.0, metavar="DEG",
                        help="known in-plane tilt-axis direction (degrees, counter-clockwise from y)")
    parser.add_argument("--reference", choices=["zero", "mean"], default="zero",
                        help="common-line reference: the 0-degree curve or the mean curve")
    parser.add_argument("--projection-matching", type=int,
                        default=DEFAULTS["projection_matching_rounds"], metavar="N",
                        help="at most N rounds of projection-matching refinement, fewer once an "
                             f"update is below {DEFAULTS['tolerance_px']} px (default "
                             f"{DEFAULTS['projection_matching_rounds']}; 0 = none)")
    parser.add_argument("--binning", type=int, default=DEFAULTS["binning"], metavar="B",
                        help="binning of the images for projection matching")
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
    if args.projection_matching < 0:
        raise CLIError("--projection-matching must be >= 0")
    series, pixel_size = read_tilt_series(args.tilt_series, args.pixel_size)
    if pixel_size is None:
        raise CLIError("the tilt series has no pixel size: give --pixel-size (Angstrom)")
    angles = read_angles(args.angles, n_images=series.shape[0])
    series, angles = align.validate_tilt_series(series, angles)

    def say(text):
        if not args.quiet:
            print(text, file=sys.stderr)

    generator = preprocess_and_align(
        series, angles, denoise=args.denoise, background=args.background,
        normalize=args.normalize, estimate_axis=args.estimate_axis, tilt_axis_deg=args.tilt_axis,
        common_line_reference=args.reference,
        projection_matching_rounds=args.projection_matching, binning=args.binning)
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
