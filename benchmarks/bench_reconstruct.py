"""Benchmark: RESIRE iteration time and memory at 256^3 / 55 projections vs. peers.

Run:  .venv/bin/python benchmarks/bench_reconstruct.py [--size 256] [--angles 55]

Prints, measured side by side in one run on this machine:
* our RESIRE (single axis, batched sparse projector, threaded): median seconds per
  iteration over ``--iterations`` iterations, peak traced memory vs the volume's bytes;
* scikit-image ``iradon_sart`` (one SART pass per slice), timed on ``--sample-slices``
  slices and scaled to all ``size`` slices;
* ASTRA toolbox CPU ``SIRT`` per slice (if ``astra-toolbox`` is installed), one iteration
  per slice from a 10-iteration run, scaled the same way;
* our batched general-orientation projector (refined Euler angles: 46 images, theta -63 to
  +56 deg, phi and psi in {-0.2, 0, 0.2, 0.4} deg as in a published data set) against our
  single-axis projector at the same sizes (``--ratio-sizes``, default 128 and 256):
  forward + adjoint per iteration, ratio general / single (target <= 3);
* our on-the-fly general-orientation projector (phi, psi != 0): forward + adjoint time for
  ``--general-angles`` projections, scaled to all projections;
* our GPU RESIRE at 256^3 and 512^3 when CuPy and a CUDA device are present.
Ratios are peer time / our time per iteration (higher is better for us).
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc

import numpy as np

from napari_aet.core.geometry import equal_slope_tilt_angles
from napari_aet.core.projectors import (
    BatchedGeneralProjector,
    GeneralProjector,
    SingleAxisProjector,
    gpu_available,
    make_projector,
)
from napari_aet.core.reconstruct import resire_iter


def phantom_volume(size: int, n_atoms: int, seed: int = 0) -> np.ndarray:
    """Gaussian blobs (sigma 1.2 voxels) inside a sphere of radius size/3."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    vol = np.zeros((size,) * 3, np.float32)
    centre = size // 2
    pts = rng.normal(size=(n_atoms * 3, 3))
    pts = pts / np.linalg.norm(pts, axis=1, keepdims=True) * (rng.random((len(pts), 1)) ** (1 / 3))
    idx = np.round(centre + pts * size / 3).astype(int)[:n_atoms]
    vol[tuple(idx.T)] = 1.0
    return ndimage.gaussian_filter(vol, 1.2)


def time_resire(tilt, angles, iterations, gpu=False):
    times = []
    tracemalloc.start()
    tracemalloc.reset_peak()
    gen = resire_iter(tilt, angles, iterations=iterations, preview_every=0, gpu=gpu)
    t0 = time.perf_counter()
    setup = None
    for info in gen:  # noqa: B007 (the last record's R1 is returned)
        now = time.perf_counter()
        if setup is None:
            setup = now - t0  # includes building the operator and the first iteration
        times.append(now - t0)
        t0 = now
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return float(np.median(times[1:])), setup, peak, info.r1


def time_skimage(tilt, angles, sample):
    from skimage.transform import iradon_sart

    n, ny, nx = tilt.shape
    theta = angles[:, 1]
    rows = np.linspace(ny // 4, 3 * ny // 4, sample).astype(int)
    t0 = time.perf_counter()
    for y in rows:
        sinogram = tilt[:, y, :].T.astype(np.float64)  # (nx, n_angles)
        iradon_sart(sinogram, theta=theta)
    return (time.perf_counter() - t0) / sample * ny


def time_astra(tilt, angles, sample, iterations=10):
    import astra

    n, ny, nx = tilt.shape
    vol_geom = astra.create_vol_geom(nx, nx)
    proj_geom = astra.create_proj_geom("parallel", 1.0, nx, np.deg2rad(angles[:, 1]))
    projector = astra.create_projector("linear", proj_geom, vol_geom)
    rows = np.linspace(ny // 4, 3 * ny // 4, sample).astype(int)
    total = 0.0
    for y in rows:
        sino_id = astra.data2d.create("-sino", proj_geom, tilt[:, y, :].astype(np.float32))
        rec_id = astra.data2d.create("-vol", vol_geom, 0)
        cfg = astra.astra_dict("SIRT")
        cfg["ProjectorId"] = projector
        cfg["ProjectionDataId"] = sino_id
        cfg["ReconstructionDataId"] = rec_id
        alg = astra.algorithm.create(cfg)
        t0 = time.perf_counter()
        astra.algorithm.run(alg, iterations)
        total += time.perf_counter() - t0
        astra.algorithm.delete(alg)
        astra.data2d.delete([sino_id, rec_id])
    astra.projector.delete(projector)
    return total / sample / iterations * ny


def time_general(angles, size, n_general):
    rng = np.random.default_rng(1)
    sub = angles[np.linspace(0, len(angles) - 1, n_general).astype(int)].copy()
    sub[:, 0] = rng.normal(0, 1.0, len(sub))
    sub[:, 2] = rng.normal(0, 1.0, len(sub))
    proj = GeneralProjector(sub, (size,) * 3)
    x = np.ones((size,) * 3, np.float32)
    t0 = time.perf_counter()
    p = proj.forward(x)
    t1 = time.perf_counter()
    proj.adjoint(p)
    t2 = time.perf_counter()
    scale = len(angles) / n_general
    return (t1 - t0) * scale, (t2 - t1) * scale


def refined_angles(n: int = 46, seed: int = 2) -> np.ndarray:
    """Euler angles like a refined published set: theta -63..+56 deg, phi and psi in
    {-0.2, 0, 0.2, 0.4} deg."""
    rng = np.random.default_rng(seed)
    steps = np.array([-0.2, 0.0, 0.0, 0.2, 0.4])
    return np.c_[rng.choice(steps, n), np.linspace(-63, 56, n), rng.choice(steps, n)]


def time_general_vs_single(size: int, repeats: int = 3) -> tuple[float, float]:
    """Median forward + adjoint seconds per iteration: (single axis, batched general)."""
    angles = refined_angles()
    x = np.random.default_rng(0).random((size,) * 3).astype(np.float32)
    result = []
    for cls in (SingleAxisProjector, BatchedGeneralProjector):
        proj = cls(angles, x.shape)
        native = proj.to_native_volume(x)
        proj.adjoint_native(proj.forward_native(native))  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            proj.adjoint_native(proj.forward_native(native))
            times.append(time.perf_counter() - t0)
        result.append(float(np.median(times)))
        del proj, native
    return result[0], result[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--angles", type=int, default=55)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--sample-slices", type=int, default=4)
    parser.add_argument("--general-angles", type=int, default=2)
    parser.add_argument("--skip-general", action="store_true")
    parser.add_argument("--ratio-sizes", default="128,256",
                        help="sizes for the batched general / single-axis ratio ('' to skip)")
    parser.add_argument("--ratio-only", action="store_true",
                        help="measure only the batched general / single-axis ratio")
    args = parser.parse_args(argv)
    for rsize in [int(v) for v in args.ratio_sizes.split(",") if v.strip()]:
        single, general = time_general_vs_single(rsize)
        print(f"batched general vs single axis, {rsize}^3, 46 refined Euler angles: "
              f"{general:.3f} s vs {single:.3f} s per iteration (forward + adjoint)  "
              f"ratio general/single {general / single:.2f} (target <= 3)", flush=True)
    if args.ratio_only:
        return
    size, n = args.size, args.angles
    print(f"machine: {os.cpu_count()} CPU cores; volume {size}^3 float32, {n} projections "
          f"(equal slope, +-72.6 deg), single tilt axis")
    angles = equal_slope_tilt_angles(n, 72.6)
    volume = phantom_volume(size, n_atoms=size * 20)
    t0 = time.perf_counter()
    projector = make_projector(angles, volume.shape)
    build = time.perf_counter() - t0
    tilt = projector.forward(volume)
    vol_bytes = volume.nbytes
    print(f"operator: built in {build:.2f} s, {projector.operator_nbytes / 2**20:.0f} MiB, "
          f"{projector.n_slabs} thread slab(s)")
    del projector

    ours, first, peak, r1 = time_resire(tilt, angles, args.iterations)
    print(f"ours RESIRE        : {ours:.3f} s/iteration (median of {args.iterations - 1}; first "
          f"incl. operator build {first:.2f} s), R1 after {args.iterations} it {r1:.3f}")
    print(f"  peak traced memory {peak / 2**20:.0f} MiB = {peak / vol_bytes:.2f} x volume bytes "
          f"({vol_bytes / 2**20:.0f} MiB), operator included")
    sk = time_skimage(tilt, angles, args.sample_slices)
    print(f"skimage iradon_sart: {sk:.2f} s/iteration (all {size} slices, from "
          f"{args.sample_slices})  ratio {sk / ours:.1f}x")
    try:
        ast = time_astra(tilt, angles, args.sample_slices)
        print(f"ASTRA CPU SIRT     : {ast:.2f} s/iteration (all {size} slices, from "
              f"{args.sample_slices})  ratio {ast / ours:.1f}x")
    except ImportError:
        print("ASTRA CPU SIRT     : astra-toolbox not installed (pip install astra-toolbox)")
    if not args.skip_general:
        fwd, adj = time_general(angles, size, args.general_angles)
        print(f"ours general proj. : forward {fwd:.1f} s + adjoint {adj:.1f} s = {fwd + adj:.1f} "
              f"s/iteration (phi, psi ~ 1 deg; from {args.general_angles} projections, scaled "
              f"to {n})")
    ok, reason = gpu_available()
    if ok:
        for gsize in (256, 512):
            vol = phantom_volume(gsize, n_atoms=gsize * 20)
            data = make_projector(angles, vol.shape).forward(vol)
            t, first, _, _ = time_resire(data, angles, args.iterations, gpu=True)
            print(f"ours RESIRE GPU    : {gsize}^3 {t:.3f} s/iteration (first {first:.2f} s)")
    else:
        print(f"GPU                : not measured ({reason})")


if __name__ == "__main__":
    main()
