"""Single-axis reconstruction split into slabs along the tilt axis, run on Dask.

With one tilt axis (y) every x-z slice is reconstructed independently, so the volume is cut
into slabs of rows, each slab is reconstructed by the same serial code on a
``dask.distributed`` worker, and the slabs are stacked again. The result equals the serial
reconstruction (to float32 rounding). A loose-then-tight support needs the whole volume
between its two halves; it runs as two rounds of slab tasks with the tight support derived
in between, exactly as the serial code does.

Needs the optional ``dask`` extra (``dask[array]``, ``distributed``), imported lazily.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from napari_aet.core.geometry import as_euler_angles
from napari_aet.core.jobs import run_to_completion
from napari_aet.core.progress import Progress
from napari_aet.core.reconstruct import (
    METHODS,
    check_inputs,
    reconstruct_iter,
    tight_support_from,
)

DASK_HINT = "Dask reconstruction needs the 'dask' extra: pip install 'dask[array]' distributed"


def _slab_task(method, tilt_slab, angles, volume_shape, support_slab, initial_slab, options):
    """Reconstruct one slab: ``(volume_slab, residual_l1 per iteration, data_l1)``."""
    data_l1 = float(np.abs(tilt_slab).sum())
    iterations = 1 if method == "wbp" else int(options.get("iterations", 1))
    empty = (support_slab is not None and not support_slab.any()) or data_l1 == 0
    if empty:
        return np.zeros(volume_shape, np.float32), [data_l1] * iterations, data_l1
    generator = reconstruct_iter(method, tilt_slab, angles, volume_shape=volume_shape,
                                 support=support_slab, initial_volume=initial_slab,
                                 preview_every=0, **options)
    residuals = []
    volume = run_to_completion(generator, lambda info: residuals.append(info.residual_l1))
    return volume, residuals, data_l1


def get_client(scheduler="local", **cluster_kwargs):
    """A ``(client, owned)`` pair for ``scheduler``: ``"local"`` (a new LocalCluster with
    ``cluster_kwargs``), a scheduler address such as ``"tcp://host:8786"``, or a Client.
    ``owned`` says whether the caller must close it."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise RuntimeError(DASK_HINT) from exc
    if isinstance(scheduler, Client):
        return scheduler, False
    if scheduler in (None, "", "local"):
        cluster = LocalCluster(**cluster_kwargs)
        return Client(cluster), True
    if not isinstance(scheduler, str):
        raise ValueError(f"scheduler must be 'local', an address or a Client; got {scheduler!r}")
    return Client(scheduler, timeout="20s"), True


def slab_bounds(ny: int, n_slabs: int) -> list[tuple[int, int]]:
    """Row ranges ``[(y0, y1), ...]`` of ``n_slabs`` near-equal slabs of ``ny`` rows."""
    n_slabs = max(1, min(int(n_slabs), ny))
    edges = np.linspace(0, ny, n_slabs + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def reconstruct_dask_iter(method: str, tilt_series, angles_deg, scheduler="local",
                          n_slabs: int | None = None, cluster_kwargs: dict | None = None,
                          **options) -> Generator[Progress, None, tuple]:
    """Reconstruct slab by slab on Dask; yields a :class:`~napari_aet.core.progress.Progress`
    as each slab finishes (``done`` slabs of ``total``, ``stage`` the round) and returns
    ``(volume, r1_history)``. :func:`napari_aet.core.reconstruct.run_reconstruction` calls
    it when given a scheduler.

    Parameters
    ----------
    method : ``"resire"``, ``"sirt"`` or ``"wbp"``.
    tilt_series, angles_deg : as for :func:`napari_aet.core.reconstruct.resire_iter`; the
        angles must describe a single tilt axis (``phi = psi = 0``).
    scheduler : ``"local"``, a scheduler address, or a ``distributed.Client``.
    n_slabs : number of slabs (default: 2 per worker thread, at least 2).
    cluster_kwargs : arguments of ``LocalCluster`` when ``scheduler == "local"``.
    options : the algorithm's parameters (iterations, step, positivity, support,
        tight_support, tight_threshold, volume_shape, subpixel, window, ...). ``gpu`` is
        not supported here.
    """
    if method not in METHODS:
        raise ValueError(f"unknown reconstruction method {method!r}; choose one of {METHODS}")
    if options.pop("gpu", False):
        raise ValueError("GPU and Dask cannot be combined: choose one")
    options.pop("preview_every", None)
    options.pop("projector", None)
    support = options.pop("support", None)
    volume_shape = options.pop("volume_shape", None)
    initial = options.pop("initial_volume", None)
    tight = bool(options.pop("tight_support", False)) and method != "wbp"
    threshold = float(options.pop("tight_threshold", 0.1))
    tilt_series, angles, volume_shape, support = check_inputs(
        tilt_series, angles_deg, support, volume_shape)
    angles = as_euler_angles(angles)
    if np.any(np.abs(angles[:, [0, 2]]) > 1e-9):
        raise ValueError("Dask slabs need a single tilt axis (phi = psi = 0); "
                         "reconstruct general orientations without a scheduler")
    iterations = int(options.get("iterations", 1))
    if method != "wbp" and iterations < 1:
        raise ValueError(f"iterations must be at least 1; got {iterations}")
    if initial is not None:
        initial = np.asarray(initial, np.float32)
        if initial.shape != volume_shape:
            raise ValueError(f"initial_volume has shape {initial.shape}; expected {volume_shape}")
    client, owned = get_client(scheduler, **(cluster_kwargs or {}))
    try:
        if n_slabs is None:
            n_slabs = max(2, 2 * sum(client.nthreads().values()))
        bounds = slab_bounds(volume_shape[1], n_slabs)
        rounds = [iterations] if not tight else [iterations // 2, iterations - iterations // 2]
        if tight and rounds[0] == 0:
            rounds = [iterations]
            tight = False
        volume = initial
        residual_total = []
        data_l1 = 0.0
        done = 0
        for r, n_iter in enumerate(rounds):
            if r == 1:
                tight_mask = tight_support_from(volume, threshold)
                if support is not None:
                    tight_mask &= support
                if tight_mask.any():
                    support = tight_mask
                    volume = volume * support
            round_options = dict(options, iterations=n_iter)
            futures = {}
            for y0, y1 in bounds:
                shape = (volume_shape[0], y1 - y0, volume_shape[2])
                sup = None if support is None else np.ascontiguousarray(support[:, y0:y1])
                init = None if volume is None else np.ascontiguousarray(volume[:, y0:y1])
                future = client.submit(_slab_task, method,
                                       np.ascontiguousarray(tilt_series[:, y0:y1]), angles,
                                       shape, sup, init, round_options, pure=False)
                futures[future] = (y0, y1)
            from distributed import as_completed

            result = np.zeros(volume_shape, np.float32)
            residuals = np.zeros(1 if method == "wbp" else n_iter)
            data_l1 = 0.0
            for future in as_completed(list(futures)):
                y0, y1 = futures[future]
                slab, slab_residuals, slab_l1 = future.result()
                result[:, y0:y1] = slab
                residuals += np.asarray(slab_residuals, float)
                data_l1 += slab_l1
                done += 1
                yield Progress("reconstruct", done, len(bounds) * len(rounds),
                               stage=f"round {r + 1} of {len(rounds)}",
                               message=f"slab {done} of {len(bounds) * len(rounds)}")
            residual_total.extend(residuals.tolist())
            volume = result
        return volume, [float(v / data_l1) for v in residual_total]
    finally:
        if owned:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()


def reconstruct_dask(method: str, tilt_series, angles_deg, scheduler="local", callback=None,
                     **kwargs):
    """:func:`reconstruct_dask_iter` run to the end: ``(volume, r1_history)``."""
    return run_to_completion(
        reconstruct_dask_iter(method, tilt_series, angles_deg, scheduler, **kwargs), callback)
