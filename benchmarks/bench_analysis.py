"""Benchmark: every structure analysis of about 20,000 atoms, with per-part times, and the
averaged Q4/Q6 compared against freud (speed ratio and agreement) when freud is installed.

Atoms: the 20,000 atoms of the Zr-ZrO2 phantom (Zr and O) nearest its centre, first-shell
cutoff 3.0 A (the Zr-O + O-O shell of the mixed model). Run:

    python benchmarks/bench_analysis.py [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-atoms", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP threads (2 = target)")
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np

    from napari_aet.core.analysis import AnalysisParameters, run_analysis
    from napari_aet.core.analysis.order import neighbor_pairs, steinhardt
    from napari_aet.core.simulate import phantom

    atoms = phantom("zr").atoms
    keep = np.argsort(np.linalg.norm(atoms.positions, axis=1))[: args.n_atoms]
    atoms = atoms.select(np.sort(keep))
    params = AnalysisParameters(first_shell_A=3.0, r_void_A=2.4)
    print(f"{len(atoms)} atoms ({atoms.counts()}), {args.threads} threads")
    t0 = time.perf_counter()
    result = run_analysis(atoms, params)
    total = time.perf_counter() - t0
    for part, seconds in result.timings_s.items():
        print(f"  {part:<12s} {seconds:7.3f} s")
    print(f"  {'all':<12s} {total:7.3f} s   (target <= 15 s on 2 cores)")

    pos = atoms.positions
    t0 = time.perf_counter()
    pairs = neighbor_pairs(pos, 3.0)
    ours = steinhardt(pos, 3.0, (4, 6), average=True, pairs=pairs)
    t_ours = time.perf_counter() - t0
    try:
        import freud
    except ImportError:
        print("freud not installed: pip install freud-analysis for the BOO comparison")
        return 0
    freud.parallel.set_num_threads(args.threads)
    span = np.ptp(pos, axis=0).max() + 20
    box = freud.box.Box.cube(span)
    centred = (pos - pos.mean(0)).astype(np.float32)
    t0 = time.perf_counter()
    theirs = {}
    for l in (4, 6):
        ql = freud.order.Steinhardt(l, average=True)
        ql.compute((box, centred), neighbors={"r_max": 3.0, "exclude_ii": True})
        theirs[l] = np.asarray(ql.particle_order, float)
    t_freud = time.perf_counter() - t0
    for l in (4, 6):
        ok = np.isfinite(ours[l]) & np.isfinite(theirs[l])
        diff = np.abs(ours[l][ok] - theirs[l][ok])
        print(f"  Q{l}: max |ours - freud| = {diff.max():.2e}, "
              f"{np.mean(diff < 1e-4) * 100:.1f}% within 1e-4")
    print(f"  averaged Q4+Q6: ours {t_ours:.3f} s, freud {t_freud:.3f} s, "
          f"ratio ours/freud {t_ours / t_freud:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
