"""Does reconstruct-and-refine help on data we did not make? Plain RESIRE against
:func:`napari_aet.core.angle_refinement.refine_and_reconstruct_iter` on the pAET multislice
NP1 set (published angles and true atoms; R1, traced recall / precision / RMSD) and, with
``--ta-film``, on the real Ta film (R1, correlation with the published volume); each from the
published angles and from angles with random errors (RMS angle error before / after).

    .venv/bin/python benchmarks/bench_angle_refinement.py [--ta-film] [--modes theta]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from napari_aet.core.align import apply_shifts
from napari_aet.core.angle_refinement import refine_and_reconstruct_iter
from napari_aet.core.jobs import run_to_completion
from napari_aet.core.projectors import make_projector
from napari_aet.core.reconstruct import resire

PERTURB_DEG = 0.7


def r1(series, angles, shifts, volume, subpixel=True) -> float:
    images = apply_shifts(series, shifts)
    projections = make_projector(angles, volume.shape, subpixel=subpixel).forward(volume)
    return float(np.abs(projections - images).sum() / np.abs(series).sum())


def angle_errors(angles, reference) -> str:
    """RMS error of phi, theta, psi (degrees), raw and after removing the mean offset."""
    d = np.asarray(angles) - reference
    raw = np.sqrt((d ** 2).mean(0))
    centred = np.sqrt(((d - d.mean(0)) ** 2).mean(0))
    return (f"rms (phi, theta, psi) {np.round(raw, 3).tolist()} deg, "
            f"less mean offset {np.round(centred, 3).tolist()}")


def runs(series, angles, options, cycles, modes, perturb, refine_shifts=True):
    """(label, start angles, refine) cases: published and perturbed starts (``perturb``: the
    angles given errors, or "none"), plain and each refinement mode."""
    rng = np.random.default_rng(1)
    perturbed = angles + rng.normal(0, PERTURB_DEG, angles.shape)
    if perturb != "all":
        kept = [i for i, name in enumerate(("phi", "theta", "psi")) if name not in perturb]
        perturbed[:, kept] = angles[:, kept]
    starts = [("published", angles)] * (perturb in ("all", "published")) + \
        [("perturbed", perturbed)] * (perturb != "published")
    cases = [(label, start, refine) for label, start in starts for refine in (None, *modes)]
    for label, start, refine in cases:
        t0 = time.perf_counter()
        if refine is None:
            volume, _ = resire(series, start, **options)
            final, shifts = start, np.zeros((len(series), 2))
        else:
            volume, result = run_to_completion(refine_and_reconstruct_iter(
                series, start, cycles=cycles, rounds=3, refine=refine,
                refine_shifts=refine_shifts, **options))
            final, shifts = result.angles_deg, result.shifts_px
        yield (label, refine or "plain", volume, final, shifts, start,
               time.perf_counter() - t0)


def multislice(iterations, cycles, modes, perturb, refine_shifts):
    from napari_aet.core.trace import trace
    from tests.core.test_trace_multislice import PIXEL_A, _case, _score

    counts, angles, truth, _ = _case()
    print(f"pAET NP1 multislice {counts.shape}, RESIRE {iterations} iterations, "
          f"{cycles} cycles x 3 rounds; perturbation {PERTURB_DEG} deg rms ({perturb})")
    for label, refine, volume, final, shifts, start, dt in runs(
            counts, angles, dict(iterations=iterations), cycles, modes, perturb,
            refine_shifts):
        s = _score(trace(volume, PIXEL_A, preset="Si").atoms, truth, volume.shape)
        print(f"{label:9s} {refine:14s} R1 {r1(counts, final, shifts, volume):.4f}  "
              f"recall {s.recall:.3f} precision {s.precision:.3f} RMSD {s.rmsd_A * 100:.1f} pm  "
              f"shifts rms {np.sqrt((shifts ** 2).mean()):.3f} px  {dt:.0f} s\n"
              f"    start {angle_errors(start, angles)}\n    final {angle_errors(final, angles)}",
              flush=True)


def ta_film(iterations, cycles, modes, perturb, refine_shifts):
    from napari_aet.core.scoring import volume_correlation
    from napari_aet.io.tilt_series import read_angles, read_tilt_series
    from tests.conftest import shared_file

    folder = shared_file("ta_film_area2")
    series, _ = read_tilt_series(folder / "Projections_area2.mat", 0.3216)
    angles = read_angles(folder / "angles.mat")
    published = np.load(folder / "published_reconstruction_xyz.npy").transpose(2, 1, 0)
    options = dict(iterations=iterations, step=3.0, subpixel=False, extended_object=True)
    print(f"Ta film {series.shape}, extended object, RESIRE {iterations} iterations step 3, "
          f"{cycles} cycles x 3 rounds")
    for label, refine, volume, final, shifts, start, dt in runs(series, angles, options, cycles,
                                                                          modes, perturb,
                                                                          refine_shifts):
        corr = volume_correlation(volume, published)
        print(f"{label:9s} {refine:14s} R1 (field of view, no box) "
              f"{r1(series, final, shifts, volume, False):.4f}  corr with published {corr:.3f}  "
              f"shifts rms {np.sqrt((shifts ** 2).mean()):.3f} px  {dt:.0f} s\n"
              f"    start {angle_errors(start, angles)}\n    final {angle_errors(final, angles)}",
              flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ta-film", action="store_true", help="the real Ta film instead")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--modes", default="theta;phi,theta,psi",
                        help="refinement modes to compare with plain RESIRE, ';' separated")
    parser.add_argument("--perturb", default="all",
                        help="'all': published and perturbed (phi, theta, psi) starts; "
                             "'theta' or 'phi,theta,psi': perturbed start only, those angles; "
                             "'published': published start only")
    parser.add_argument("--no-refine-shifts", dest="refine_shifts", action="store_false",
                        help="refine the angles only")
    args = parser.parse_args()
    if args.ta_film:
        ta_film(args.iterations or 80, args.cycles, args.modes.split(";"), args.perturb,
                args.refine_shifts)
    else:
        multislice(args.iterations or 200, args.cycles, args.modes.split(";"), args.perturb,
                args.refine_shifts)
