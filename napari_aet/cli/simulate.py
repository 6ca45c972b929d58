"""Simulate an ADF-STEM tilt series of a phantom particle with known atoms.

Writes DIR/tilt_series.mrc ((n, ny, nx), voxel size set), DIR/angles.tlt (tilt angles,
degrees; or angles.txt with phi theta psi when jitter makes them non-single-axis) and
DIR/truth_atoms.xyz (x y z in Angstrom, in the frame of the volume the series was projected
from: voxel i at i * pixel size).
"""

from __future__ import annotations

import json
from pathlib import Path

from napari_aet.cli import CLIError

COMMAND = "simulate"


def add_arguments(parser):
    parser.add_argument("phantom", choices=["silica", "zr", "fcc"],
                        help="silica: SiO2 glass (1,002 atoms); zr: Zr-ZrO2 core-shell (~8.6 nm); "
                             "fcc: small Pt particle")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--dose", type=float, default=None, metavar="E_PER_A2",
                        help="electron dose per projection (e/A^2); default: the phantom's "
                             "published-style dose; 0 gives noise-free data")
    parser.add_argument("--n-angles", type=int, default=None, metavar="N", help="number of projections")
    parser.add_argument("--tilt-range", type=float, default=None, metavar="DEG",
                        help="maximum tilt angle (degrees); the series spans +-DEG")
    parser.add_argument("--linear", action="store_true",
                        help="linear angle steps instead of equal-slope angles")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="A", help="pixel size (Angstrom)")
    parser.add_argument("--blur", type=float, default=None, metavar="A",
                        help="atom blur sigma (Angstrom)")
    parser.add_argument("--shift-sigma", type=float, default=0.0, metavar="PX",
                        help="random in-plane shifts, standard deviation (pixels)")
    parser.add_argument("--angle-jitter", type=float, default=0.0, metavar="DEG",
                        help="error of the recorded angles, standard deviation (degrees)")
    parser.add_argument("--tilt-axis", type=float, default=0.0, metavar="DEG",
                        help="in-plane rotation of the tilt axis from the image y axis (degrees)")
    parser.add_argument("--frames", type=int, default=1, metavar="N",
                        help="sequential frames per angle (written as frames.mrc when > 1)")
    parser.add_argument("--drift", type=float, default=0.0, metavar="PX",
                        help="linear drift between frames (pixels per frame)")
    parser.add_argument("--background", type=float, default=0.0, metavar="FRACTION",
                        help="support-film background, fraction of the mean particle signal")
    parser.add_argument("--background-ramp", type=float, default=None, metavar="FRACTION",
                        help="make the film flat with a linear ramp of this fraction of its level "
                             "across the image (default: random smooth thickness)")
    parser.add_argument("--diameter", type=float, default=None, metavar="A",
                        help="particle diameter (Angstrom): zr (default 86; fewer vacancies and pores "
                             "in a smaller particle) or fcc (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")


def run(args) -> int:
    import numpy as np

    from napari_aet.core.geometry import is_single_axis
    from napari_aet.core.simulate import ACQUISITION_DEFAULTS, simulate
    from napari_aet.io.coordinates import write_xyz
    from napari_aet.io.tilt_series import write_angles, write_mrc

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{out} exists and is not a folder")
    for name, value in (("--n-angles", args.n_angles), ("--frames", args.frames)):
        if value is not None and value < 1:
            raise CLIError(f"{name} must be at least 1")
    if args.tilt_range is not None and not 0 < args.tilt_range < 90:
        raise CLIError("--tilt-range must be between 0 and 90 degrees")
    for name, value in (("--pixel-size", args.pixel_size), ("--blur", args.blur)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise CLIError(f"{name} must be a positive number of Angstrom; got {value}")
    for name, value in (("--dose", args.dose), ("--shift-sigma", args.shift_sigma),
                        ("--angle-jitter", args.angle_jitter), ("--drift", args.drift),
                        ("--background", args.background)):
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise CLIError(f"{name} must be >= 0; got {value}")
    opts = {}
    if args.dose is not None:
        opts["dose_e_per_A2"] = args.dose or None
    if args.pixel_size is not None:
        opts["pixel_size_A"] = args.pixel_size
    if args.blur is not None:
        opts["blur_sigma_A"] = args.blur
    phantom_kwargs = {}
    if args.diameter is not None:
        if args.phantom == "silica":
            raise CLIError("--diameter applies to the zr and fcc phantoms (silica is a fixed cube)")
        if not 10 <= args.diameter <= 300:
            raise CLIError("--diameter must be between 10 and 300 Angstrom")
        if args.phantom == "zr":
            share = (args.diameter / 86.0) ** 3
            phantom_kwargs = dict(diameter_A=args.diameter, n_vacancies=min(55, round(27.5 * share)),
                                  n_pores=max(1, round(4 * share)))
        else:
            phantom_kwargs = dict(radius_A=args.diameter / 2)
    out.mkdir(parents=True, exist_ok=True)
    sim = simulate(args.phantom, seed=args.seed, phantom_kwargs=phantom_kwargs, n_angles=args.n_angles,
                   tilt_range_deg=args.tilt_range, equal_slope=not args.linear,
                   shift_sigma_px=args.shift_sigma, angle_jitter_deg=args.angle_jitter,
                   tilt_axis_deg=args.tilt_axis, n_frames=args.frames,
                   drift_px_per_frame=args.drift, background_fraction=args.background,
                   background_ramp=args.background_ramp, **opts)
    write_mrc(out / "tilt_series.mrc", sim.tilt_series, sim.pixel_size_A)
    if sim.frames is not None:
        n, f, ny, nx = sim.frames.shape
        write_mrc(out / "frames.mrc", sim.frames.reshape(n * f, ny, nx), sim.pixel_size_A)
    angles_file = "angles.tlt" if is_single_axis(sim.angles_deg) else "angles.txt"
    write_angles(out / angles_file, sim.angles_deg)
    write_xyz(out / "truth_atoms.xyz", sim.atoms,
              comment=f"{sim.name} ground truth, Angstrom, volume frame {sim.volume_shape}")
    record = {
        "phantom": args.phantom, "seed": args.seed, "pixel_size_A": sim.pixel_size_A,
        "blur_sigma_A": sim.blur_sigma_A, "dose_e_per_A2": sim.dose_e_per_A2,
        "r_noise": sim.r_noise, "n_angles": len(sim.angles_deg),
        "volume_shape": list(sim.volume_shape), "atoms": sim.atoms.counts(),
        "shifts_px": np.round(sim.shifts_px, 4).tolist(),
        "true_angles_deg": np.round(sim.true_angles_deg, 4).tolist(),
        "tilt_axis_deg": sim.tilt_axis_deg,
        "defaults": ACQUISITION_DEFAULTS[args.phantom],
        "voids": [{"kind": v.kind, "center_zyx_A": np.round(v.center, 4).tolist(),
                   "volume_A3": round(v.volume_A3, 2)} for v in sim.voids],
    }
    (out / "simulation.json").write_text(json.dumps(record, indent=1))
    print(f"wrote {out}/tilt_series.mrc {sim.tilt_series.shape} at {sim.pixel_size_A} A/px, "
          f"{angles_file}, truth_atoms.xyz ({len(sim.atoms)} atoms), R_noise {sim.r_noise:.3f}")
    return 0
