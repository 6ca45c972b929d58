"""Tracing speed: a ~300^3 volume with ~20,000 atoms, and the ratio to per-atom least squares.

Run: ``python benchmarks/bench_trace.py [--threads 2] [--subset 300]``
or ``python benchmarks/bench_trace.py --multislice`` (below).

The volume is a Pt fcc sphere (radius 42 A, about 20,000 atoms) voxelised at 0.30 A with a
0.40 A blur. ``trace`` is timed end to end (candidates, refinement, minimum distance,
classification, features) and scored against the known atoms. The baseline refines the same
candidates one atom at a time with ``scipy.optimize.least_squares`` fitting a 3D Gaussian to
the same 3x up-sampled neighbourhood (the MATLAB lsqcurvefit approach); it is timed on a
random subset of ``--subset`` candidates and extrapolated to all of them (stated in the output).

``--multislice``: the noisy 128^3 reconstruction (0.195 A voxels) of the pAET NP1 counts in
``../shared/data/paet_np1_1p6e4`` (RESIRE, 200 iterations). ``trace`` with the Si preset and
without its smoothing (about 16,000 noise maxima above the threshold) is timed against
refining every maximum before the minimum distance (the former order; timed on ``--subset``
maxima and extrapolated), and scored against the true atoms.
"""

from __future__ import annotations

import argparse
import os
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP threads (default 2)")
    parser.add_argument("--subset", type=int, default=300,
                        help="candidates refined by the per-atom baseline (default 300)")
    parser.add_argument("--radius", type=float, default=42.0, help="particle radius (A)")
    parser.add_argument("--multislice", action="store_true",
                        help="the pAET multislice case (noise maxima) instead of the Pt sphere")
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    print("load average (1, 5, 15 min):", os.getloadavg())
    if args.multislice:
        return multislice(args)

    import numpy as np
    from scipy.optimize import least_squares

    from napari_aet.core.geometry import grid_center
    from napari_aet.core.phantoms import fcc_particle
    from napari_aet.core.scoring import score_atoms
    from napari_aet.core.simulate import voxelize_atoms
    from napari_aet.core.trace import (
        UPSAMPLE,
        SplinePatches,
        _sphere_offsets,
        find_candidates,
        refine_polynomial,
        trace,
    )

    px, blur = 0.30, 0.40
    shape = (300, 300, 300)
    atoms = fcc_particle("Pt", 3.92, args.radius, seed=1).atoms
    truth = atoms.shifted(grid_center(shape) * px)
    t0 = time.perf_counter()
    volume = voxelize_atoms(truth, shape, px, blur).astype(np.float32)
    print(f"volume {shape} at {px} A, {len(truth)} Pt atoms (voxelised in "
          f"{time.perf_counter() - t0:.1f} s)")

    t0 = time.perf_counter()
    result = trace(volume, px, preset="Pt")
    t_trace = time.perf_counter() - t0
    score = score_atoms(result.atoms, truth)
    n_cand = len(result.candidates)
    print(f"trace: {t_trace:.1f} s for {len(result.atoms)} atoms -> "
          f"{len(result.atoms) / t_trace:.0f} atoms/s ({args.threads} threads)")
    print("accuracy:", score.summary().splitlines()[0])

    # Baseline: per-atom scipy least_squares (3D Gaussian) on the same candidates.
    patches = SplinePatches(volume, margin=12)
    start, _, _ = find_candidates(volume, patches, 0.10)
    rng = np.random.default_rng(0)
    subset = rng.choice(len(start), min(args.subset, len(start)), replace=False)
    radius_up = max(UPSAMPLE * 0.7 / px, 3.0)
    offs, mask = _sphere_offsets(radius_up)
    zz, yy, xx = np.meshgrid(offs, offs, offs, indexing="ij")
    pts = np.stack([zz[mask], yy[mask], xx[mask]], 1) / UPSAMPLE

    def residual(theta, values):
        d2 = np.sum((pts - theta[1:4]) ** 2, 1)
        return theta[0] * np.exp(-d2 / (2 * theta[4] ** 2)) + theta[5] - values

    t0 = time.perf_counter()
    for i in subset:  # the straightforward way: sample and fit one atom at a time
        values = patches.cubes(start[i:i + 1], offs)[0][mask]
        theta0 = np.array([values.max() - values.min(), 0, 0, 0, blur / px, values.min()])
        least_squares(residual, theta0, args=(values,), method="lm")
    t_sub = time.perf_counter() - t0
    t_base = t_sub / len(subset) * len(start)
    print(f"per-atom least_squares baseline: {t_sub:.1f} s for {len(subset)} candidates, "
          f"extrapolated to all {len(start)} candidates: {t_base:.0f} s "
          f"(refinement only; candidates after min-distance: {n_cand})")
    t0 = time.perf_counter()
    refine_polynomial(patches, start, 0.7 / px)
    t_ref = time.perf_counter() - t0
    print(f"napari-aet batched polynomial refinement of the same {len(start)} candidates: "
          f"{t_ref:.1f} s")
    print(f"ratio baseline / napari-aet: refinement {t_base / t_ref:.1f}x, "
          f"whole pipeline {t_base / t_trace:.1f}x")


def multislice(args):
    """Tracing cost on a noisy reconstruction follows the atoms, not the noise maxima."""
    from pathlib import Path

    import numpy as np

    from napari_aet.core.atoms import Atoms
    from napari_aet.core.geometry import grid_center
    from napari_aet.core.reconstruct import resire
    from napari_aet.core.scoring import score_atoms
    from napari_aet.core.trace import (
        SplinePatches,
        find_candidates,
        refine_polynomial,
        trace,
        trace_parameters,
    )

    folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "paet_np1_1p6e4"
    px = 0.195
    counts = np.transpose(np.load(folder / "projections_counts.npy"), (2, 1, 0))
    angles = np.load(folder / "angles_deg.npy")
    t0 = time.perf_counter()
    volume, _ = resire(counts.astype(np.float32), angles)
    print(f"RESIRE 200 iterations of {counts.shape}: {time.perf_counter() - t0:.1f} s")
    truth_xyz = np.load(folder / "truth_atoms_A.npy")
    truth = Atoms(truth_xyz[:, ::-1] + grid_center(volume.shape) * px,
                  np.full(len(truth_xyz), "Si"))
    p = trace_parameters("Si")
    patches = SplinePatches(volume, margin=12)
    start, _, _ = find_candidates(volume, patches, p["threshold_fraction"])
    print(f"{len(start)} local maxima above the threshold in the unsmoothed volume")
    for label, extra in (("Si preset", {}), ("Si preset, no smoothing", {"smooth_sigma_A": 0})):
        t0 = time.perf_counter()
        result = trace(volume, px, preset="Si", **extra)
        dt = time.perf_counter() - t0
        score = score_atoms(result.atoms, truth, cutoff_A=0.9)
        print(f"trace ({label}): {dt:.2f} s, {len(result.candidates)} candidates refined "
              f"-> {score.summary().splitlines()[0]}")
    rng = np.random.default_rng(0)
    subset = start[rng.choice(len(start), min(args.subset, len(start)), replace=False)]
    t0 = time.perf_counter()
    refine_polynomial(patches, subset, p["fit_radius_A"] / px)
    t_all = (time.perf_counter() - t0) / len(subset) * len(start)
    print(f"refining every maximum first (former order): {t_all:.0f} s extrapolated from "
          f"{len(subset)} maxima; ratio to trace without smoothing: {t_all / dt:.0f}x")


if __name__ == "__main__":
    main()
