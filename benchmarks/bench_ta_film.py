"""Benchmark: the whole `napari-aet reconstruct` command on real data (Ta film, published files).

Run:  .venv/bin/python benchmarks/bench_ta_film.py [--iterations 500] [--skip-peer]

Reconstructs ``../shared/data/ta_film_area2`` as a new user would, from the published MATLAB
files as they are (``Projections_area2.mat`` (x, y, n) = 131 x 61 x 46 pixels, ``angles.mat``
refined Euler angles), with RESIRE, ``--extended-object`` and the real phi/psi (batched
general projector). Prints the command's wall time with the load average before and after,
the CPU time of all its threads (on an idle machine with as many cores as threads the wall
time approaches CPU time / threads), and the correlation (flip/permutation invariant) with
the published RESIRE reconstruction (500 iterations, extended-object mode). The peer, in the
same run, is the same command without ``--extended-object`` (the field-of-view box): time
ratio and both correlations.
Targets (issue 13): correlation >= 0.93, whole command <= 300 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ta_film_area2"


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def run_command(extra, iterations, out) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, all threads) of one command."""
    cmd = [sys.executable, "-m", "napari_aet.cli", "reconstruct",
           str(DATA / "Projections_area2.mat"), "--angles", str(DATA / "angles.mat"),
           "--pixel-size", "0.3216", "-o", str(out), "--iterations", str(iterations),
           "--quiet", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


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
            seconds, cpu = run_command(extra, args.iterations, out)
            volume, _ = read_volume(out)
            corr = volume_correlation(volume, published)
            times[name] = seconds
            print(f"{name:27s}: {seconds:7.1f} s wall, {cpu:7.1f} s CPU (all threads) for "
                  f"{args.iterations} iterations ({before} -> {load()}); corr with published "
                  f"{corr:.4f}", flush=True)
    if len(times) == 2:
        ext, peer = times.values()
        print(f"time ratio extended / field of view: {ext / peer:.2f}")


if __name__ == "__main__":
    main()
