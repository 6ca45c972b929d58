"""Reconstruct a volume from an aligned tilt series: RESIRE, SIRT or WBP.

Images may be rectangular (ny != nx; the volume is (nx, ny, nx)). Single tilt axis
(phi = psi = 0) uses the fast batched projector; angle files with three Euler angles per
image use the batched general-orientation projector (on-the-fly beyond 5 degrees of phi/psi).
--extended-object reconstructs a film that extends beyond the field of view.
--refine-angles-cycles N alternates reconstruction and per-image angle and shift refinement
(--angles-out writes the refined values). --scheduler runs slabs along
the tilt axis on Dask ('local' starts a LocalCluster; or give a scheduler address). The
volume is written as MRC (atomically) with the pixel size; the progress bar shows R1 as it
converges and the final R1 is printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from napari_aet.cli import CLIError
from napari_aet.cli._options import add_parameter_options, option_name, parameter_values
from napari_aet.cli._progress import ProgressBar
from napari_aet.core.parameters import parameter_map
from napari_aet.core.reconstruct import ReconstructParameters

COMMAND = "reconstruct"
#: The angle-refinement fields of :class:`ReconstructParameters`.
REFINE = ("refine_angles_cycles", "refine_angles", "refine_rounds", "refine_shifts")


def add_arguments(parser):
    parser.add_argument("tilt_series", metavar="TILT",
                        help="aligned tilt series (n, ny, nx): .mrc, .tif, .npy, .mat, ...")
    parser.add_argument("--angles", required=True, metavar="ANGLES",
                        help="angles file: one tilt angle or (phi, theta, psi) per image, degrees")
    parser.add_argument("-o", "--output", required=True, metavar="VOLUME.mrc",
                        help="reconstructed volume (nz, ny, nx), MRC")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="A",
                        help="pixel size (Angstrom) when the file does not say")
    add_parameter_options(parser, ReconstructParameters, ("method", "iterations", "step"))
    parser.add_argument("--support", default=None, metavar="MASK",
                        help="support mask volume (nz, ny, nx); non-zero voxels are inside")
    add_parameter_options(parser, ReconstructParameters, ("tight_support",))
    box = parameter_map(ReconstructParameters)["extended_box"]
    parser.add_argument("--extended-object", nargs="?", type=float, const=box.default,
                        default=None, metavar="BOX",
                        help="the object extends beyond the field of view (a film): "
                             f"reconstruct in a box BOX (default {box.default:g}, {box.min:g} to "
                             f"{box.max:g}) fields of view wide along x, fit the projections on "
                             "the field of view only, write the field-of-view volume (resire, "
                             "sirt)")
    add_parameter_options(parser, ReconstructParameters, ("positivity", "subpixel", "gpu"))
    add_parameter_options(parser, ReconstructParameters, REFINE)
    parser.add_argument("--angles-out", default=None, metavar="ALIGNMENT.csv",
                        help="with --refine-angles-cycles: write the refined angles and shifts "
                             "(applied to TILT) as an alignment file (.csv or .json)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS|local",
                        help="run slabs on Dask: 'local' or a scheduler address (tcp://host:8786)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from napari_aet.core import reconstruct as rec
    from napari_aet.core.jobs import run_to_completion
    from napari_aet.io.tilt_series import (
        read_angles,
        read_tilt_series,
        read_volume,
        write_mrc,
    )

    out = Path(args.output)
    if out.suffix.lower() != ".mrc":
        raise CLIError(f"the volume is written as MRC: give a .mrc output, not {out.name!r}")
    if args.iterations is not None and args.iterations < 1:
        raise CLIError("--iterations must be at least 1")
    if args.step is not None and not args.step > 0:
        raise CLIError("--step must be positive")
    if args.extended_object is not None:
        if args.method == "wbp":
            raise CLIError("--extended-object needs --method resire or sirt")
        if not args.extended_object >= 1:
            raise CLIError("--extended-object BOX must be at least 1 (fields of view)")
    if args.gpu and args.scheduler:
        raise CLIError("--gpu and --scheduler cannot be combined: choose one")
    described = parameter_map(ReconstructParameters)
    for name in ("refine_angles_cycles", "refine_rounds"):
        problem = described[name].check(getattr(args, name))
        if problem:
            raise CLIError(f"{option_name(described[name])} {problem}")
    if args.refine_angles_cycles and args.scheduler:
        raise CLIError("--refine-angles-cycles and --scheduler cannot be combined: angle "
                       "refinement re-projects the whole volume in one process")
    if args.angles_out is not None:
        if not args.refine_angles_cycles:
            raise CLIError("--angles-out needs --refine-angles-cycles 1 or more")
        if Path(args.angles_out).suffix.lower() not in (".csv", ".json"):
            raise CLIError(f"--angles-out is an alignment file: .csv or .json, not "
                           f"{Path(args.angles_out).name!r}")
    series, pixel_size = read_tilt_series(args.tilt_series, args.pixel_size)
    if pixel_size is None:
        raise CLIError("the tilt series has no pixel size: give --pixel-size (Angstrom)")
    angles = read_angles(args.angles, n_images=series.shape[0])
    support = None
    if args.support:
        support, _ = read_volume(args.support, pixel_size_A=pixel_size)
        support = support > 0
    values = parameter_values(ReconstructParameters, args, ("method", "iterations", "step",
                                                            "tight_support", "positivity",
                                                            "subpixel", "gpu") + REFINE)
    if args.extended_object is not None:
        values.update(extended_object=True, extended_box=args.extended_object)
    options = ReconstructParameters(**values).options()
    iterations = options["iterations"]
    options["support"] = support
    rec.check_inputs(series, angles, support)

    desc = f"{args.method} (dask slabs)" if args.scheduler else args.method
    bar = ProgressBar(iterations, desc, args.quiet)
    try:
        result = run_to_completion(
            rec.run_reconstruction(args.method, series, angles, gpu=args.gpu,
                                   scheduler=args.scheduler, preview_every=0, **options),
            bar.show)
    finally:
        bar.close()
    write_mrc(out, result.volume, pixel_size)
    if not args.quiet:
        print(f"wrote {out} {result.volume.shape} ({args.method}, final R1 "
              f"{result.r1_final:.4f})", file=sys.stderr)
    if args.angles_out is not None:
        from napari_aet.io.alignment import Alignment, save_alignment

        refined = result.refinement
        steps = [{"step": "refine angles", **{k: v for k, v in result.parameters.items()
                                               if k.startswith("refine")},
                  "residual_history": refined.residual_history}]
        save_alignment(args.angles_out, Alignment(refined.angles_deg, refined.shifts_px,
                                                  pixel_size_A=pixel_size, steps=steps))
        if not args.quiet:
            print(f"wrote {args.angles_out} (refined angles and shifts)", file=sys.stderr)
    return 0
