"""Speed of alignment: common line + centre of mass, one projection-matching round, and a
plain scikit-image ``phase_cross_correlation`` loop (each image against the 0-degree image);
then the front-ends' defaults (film detection and background, projection matching) on a
low-dose series on a support film, against the seeds alone.

Usage: python benchmarks/bench_align.py [--size 256] [--n 55] [--threads 2]
Prints times in seconds and the ratio against the scikit-image loop.
"""

from __future__ import annotations

import argparse
import os
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="image side (pixels)")
    parser.add_argument("--n", type=int, default=55, help="number of projections")
    parser.add_argument("--threads", type=int, default=2, help="BLAS/FFT threads")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))

    import numpy as np
    from skimage.registration import phase_cross_correlation

    from napari_aet.core import align
    from napari_aet.core.simulate import simulate

    sim = simulate("silica", n_angles=args.n, shift_sigma_px=3.0, image_size=args.size)
    pixel = sim.pixel_size_A
    series, angles = sim.tilt_series, sim.angles_deg
    print(f"tilt series {series.shape}, pixel {pixel:.3f} A, R_noise {sim.r_noise:.3f}")

    def best(fn):
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return min(times), out

    def ours():
        return np.stack([align.common_line_shifts(series, angles),
                         align.center_of_mass_shifts(series)], axis=1)

    def skimage_loop():
        ref = series[int(np.argmin(np.abs(angles[:, 1])))]
        return np.array([phase_cross_correlation(ref, img, upsample_factor=20,
                                                 normalization=None)[0] for img in series])

    t_ours, shifts = best(ours)
    t_sk, shifts_sk = best(skimage_loop)
    rms = np.sqrt(np.mean(align.remove_rigid_translation(shifts + sim.shifts_px, angles) ** 2, 0))
    rms_sk = np.sqrt(np.mean(align.remove_rigid_translation(shifts_sk + sim.shifts_px, angles) ** 2, 0))
    print(f"common line + centre of mass : {t_ours:7.3f} s  residual RMS (dy, dx) "
          f"{rms[0]:.3f}, {rms[1]:.3f} px  (target <= 3 s)")
    print(f"skimage phase_cross_correlation loop: {t_sk:7.3f} s  residual RMS (dy, dx) "
          f"{rms_sk[0]:.3f}, {rms_sk[1]:.3f} px")
    print(f"ratio skimage / ours: {t_sk / t_ours:.1f}x")
    t = time.perf_counter()
    refined = align.run(align.projection_matching(series, angles, shifts, n_rounds=1))
    t_pm = time.perf_counter() - t
    rms_pm = np.sqrt(np.mean(align.remove_rigid_translation(refined + sim.shifts_px, angles) ** 2, 0))
    print(f"one projection-matching round (bin 2, SIRT 15): {t_pm:7.3f} s  residual RMS "
          f"{rms_pm[0]:.3f}, {rms_pm[1]:.3f} px; ratio to skimage loop {t_pm / t_sk:.1f}x")

    from napari_aet.core import preprocess

    film = simulate("silica", n_angles=args.n, shift_sigma_px=2.0, image_size=args.size,
                    dose_e_per_A2=2.5e5, background_fraction=0.1, background_ramp=0.3)
    t = time.perf_counter()
    work, _, _, level = preprocess.background_for_alignment(film.tilt_series)
    t_bg = time.perf_counter() - t
    result = align.run(align.align_tilt_series(work, film.angles_deg))  # align.DEFAULTS
    t_all = time.perf_counter() - t
    t_seeds, seeds = best(lambda: align.run(align.align_tilt_series(
        film.tilt_series, film.angles_deg, projection_matching_rounds=0)))

    def residual(applied):
        return np.sqrt(np.mean(align.remove_rigid_translation(
            applied + film.shifts_px, film.angles_deg) ** 2, 0))

    rms_all, rms_seeds = residual(result.shifts_px), residual(seeds.shifts_px)
    print(f"support film (level {100 * level:.1f} %), 2.5e5 e/A^2: defaults {t_all:7.3f} s "
          f"(background {t_bg:.3f} s, {result.steps[-1]['rounds']} projection-matching rounds) "
          f"residual RMS {rms_all[0]:.3f}, {rms_all[1]:.3f} px (target <= 0.08)")
    print(f"  seeds alone (no background, no projection matching): {t_seeds:7.3f} s residual RMS "
          f"{rms_seeds[0]:.3f}, {rms_seeds[1]:.3f} px; defaults take {t_all / t_seeds:.0f}x longer")


if __name__ == "__main__":
    main()
