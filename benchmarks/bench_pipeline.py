"""The whole pipeline on the simulated Zr-ZrO2 particle: wall time per step and the metrics.

Run: ``python benchmarks/bench_pipeline.py [--threads 2] [--iterations 200] [--out DIR]``

Simulates the full 8.6 nm Zr-ZrO2 phantom (55 equal-slope projections to +-72.6 deg,
0.45 A pixels, dose 5e5 e/A^2, random shifts of 2 px), then runs ``napari-aet run`` on it
with the ZrO2 preset exactly as a user would (align with common line and centre of mass,
RESIRE, trace, score against the true Zr, every analysis, export, project file) and prints
the step timings recorded in run.json. There is no peer for the whole chain; the per-step
peers are in the other benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP threads (default 2)")
    parser.add_argument("--iterations", type=int, default=200, help="RESIRE iterations (200)")
    parser.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    from napari_aet.cli import main as cli

    root = Path(args.out or tempfile.mkdtemp(prefix="bench_pipeline_"))
    t0 = time.perf_counter()
    assert cli(["simulate", "zr", "-o", str(root / "data"), "--shift-sigma", "2", "--seed", "3"]) == 0
    simulate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    status = cli(["run", str(root / "data" / "tilt_series.mrc"), "--angles",
                  str(root / "data" / "angles.tlt"), "--preset", "ZrO2", "--truth",
                  str(root / "data" / "truth_atoms.xyz"), "--iterations", str(args.iterations),
                  "-o", str(root / "run"), "--quiet"])
    wall = time.perf_counter() - t0
    record = json.loads((root / "run" / "run.json").read_text())
    if status != 0:
        raise SystemExit(f"the run failed: {record.get('failure')}")
    m = record["metrics"]
    print(f"\nZr-ZrO2 {m['read']['shape']} at {m['read']['pixel_size_A']:.2f} A/px "
          f"({args.threads} threads); simulation {simulate_s:.1f} s (not part of the run)")
    print(f"{'step':<12s} {'wall time (s)':>14s}")
    for step, seconds in record["timings_s"].items():
        if step != "total":
            print(f"{step:<12s} {seconds:>14.2f}")
    print(f"{'total':<12s} {record['timings_s']['total']:>14.2f}   (command wall {wall:.1f} s)")
    s = m["score"]
    print(f"alignment: shifts RMS {m['align']['shifts_rms_px']:.2f} px; RESIRE "
          f"{m['reconstruct']['parameters']['iterations']} it, R1 {100 * m['reconstruct']['r1_final']:.2f} %")
    print(f"tracing vs truth (Zr): recall {100 * s['recall']:.2f} %, precision "
          f"{100 * s['precision']:.2f} %, RMSD {100 * s['rmsd_A']:.1f} pm; "
          f"{m['trace']['n_atoms']} atoms")
    a = m["analysis"]["summary"]
    print(f"analysis: voids {a.get('voids')}, phases {a.get('phase_counts')}")
    print(f"outputs in {root / 'run'}")


if __name__ == "__main__":
    main()
