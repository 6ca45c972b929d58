"""Benchmark: the whole `napari-aet reconstruct` command on real data (Ta film, published files).

Run:  .venv/bin/python benchmarks/bench_ta_film.py [--iterations 500] [--skip-peer]

Reconstructs ``../shared/data/ta_film_area2`` as a new user would, from the published MATLAB
files as they are (``Projections_area2.mat`` (x, y, n) = 131 x 61 x 46 pixels, ``angles.mat``
refined Euler angles), with RESIRE, ``--extended-object`` and the real phi/psi (batched
general projector). Prints the command's wall time with the load average before and after,
and the correlation (flip/permutation invariant) with the published RESIRE reconstruction
(500 iterations, extended-object mode). The peer, in the same run, is the same command
without ``--extended-object`` (the field-of-view box): time ratio and both correlations.
Targets (issue 13): correlation >= 0.93, whole command <= 300 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ta_film_area2"


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def run_command(extra, iterations, out) -> float:
    cmd = [sys.executable, "-m", "napari_aet.cli", "reconstruct",
           str(DATA / "Projections_area2.mat"), "--angles", str(DATA / "angles.mat"),
           "--pixel-size", "0.3216", "-o", str(out), "--iterations", str(iterations),
           "--quiet", *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def main(argv=None):
    from napari_aet.core.scoring import volume_correlation
    from napari_aet.io.tilt_series import read_volume

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--skip-peer", action="store_true",
                        help="do not run the field-of-view (no --extended-object) peer")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found")
    published = np.transpose(np.load(DATA / "published_reconstruction_xyz.npy"), (2, 1, 0))
    runs = [("extended object", ["--extended-object"])]
    if not args.skip_peer:
        runs.append(("field of view only (peer)", []))
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in runs:
            out = Path(tmp) / "volume.mrc"
            before = load()
            seconds = run_command(extra, args.iterations, out)
            volume, _ = read_volume(out)
            corr = volume_correlation(volume, published)
            times[name] = seconds
            print(f"{name:27s}: {seconds:7.1f} s for {args.iterations} iterations "
                  f"({before} -> {load()}); corr with published {corr:.4f}", flush=True)
    if len(times) == 2:
        ext, peer = times.values()
        print(f"time ratio extended / field of view: {ext / peer:.2f}")


if __name__ == "__main__":
    main()
