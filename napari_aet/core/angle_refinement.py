"""Per-projection refinement of Euler angles and shifts against re-projections of a volume.

The published AET angle files (RESIRE, GENFIRE) were refined this way: re-project the current
reconstruction at each image's angles, and move each image's ``(phi, theta, psi)`` and its
``(dy, dx)`` shift to where the re-projection matches the measured image best; then
reconstruct again with the refined values and repeat (:func:`refine_and_reconstruct_iter`).

:func:`refine_angles_iter` does one refinement against a fixed volume. Every round is a
Gauss-Newton step on the angles of all images at once: the derivatives of each
re-projection with respect to its angles (central differences, all images in one batched
projection per difference) give a small least-squares problem per image for the correction
of ``|P_k(v) - b_k|^2`` (clipped to ``max_step_deg``). Then each measured image is registered
to its re-projection (sub-pixel cross-correlation, :func:`napari_aet.core.align.register_translation`)
for the shifts. Angles in degrees, shifts in pixels, conventions as in
:mod:`napari_aet.core.geometry`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator

import numpy as np

from napari_aet.core.geometry import as_euler_angles
from napari_aet.core.progress import Progress


@dataclasses.dataclass
class AngleRefinement:
    """Refined ``angles_deg`` ``(n, 3)``, total ``shifts_px`` ``(n, 2)`` (dy, dx; content
    moves by ``+shift``), the relative residual ``sum|P v - b|^2 / sum|b|^2`` per round and,
    from :func:`refine_and_reconstruct_iter`, the R1 per iteration of the final
    reconstruction."""

    angles_deg: np.ndarray
    shifts_px: np.ndarray
    residual_history: list = dataclasses.field(default_factory=list)
    r1_history: list = dataclasses.field(default_factory=list)


def _project(volume, angles, subpixel) -> np.ndarray:
    """Re-projections ``(n, ny, nx)`` of the volume at ``angles``."""
    from napari_aet.core.projectors import make_projector

    return make_projector(angles, volume.shape, subpixel=subpixel).forward(volume)


def refine_angles_iter(tilt_series, angles_deg, volume, shifts_px=None, rounds: int = 4,
                       max_step_deg: float = 1.0, fd_step_deg: float = 0.25,
                       refine: str = "phi,theta,psi",
                       refine_shifts: bool = True, subpixel: bool = False,
                       ) -> Generator[Progress, None, AngleRefinement]:
    """Refine each image's Euler angles (and shifts) against re-projections of ``volume``.

    Parameters
    ----------
    tilt_series : ``(n, ny, nx)`` images (as measured; ``shifts_px`` are applied to them).
    angles_deg : ``(n, 3)`` starting Euler angles ``(phi, theta, psi)``, degrees.
    volume : ``(nz, ny, nx)`` current reconstruction (same pixel size).
    shifts_px : ``(n, 2)`` starting shifts (dy, dx), pixels; default zeros.
    rounds : Gauss-Newton rounds (each: angles, then shifts).
    max_step_deg : largest angle correction per round (degrees).
    fd_step_deg : finite-difference step of the angle derivatives (degrees).
    refine : which angles to refine, comma separated (``"theta"`` for single-axis data).
    refine_shifts : register each image to its re-projection after the angles.
    subpixel : 4 sub-pixel samples per voxel in the projector.

    Yields a :class:`~napari_aet.core.progress.Progress` (``residual``) per round; returns an
    :class:`AngleRefinement`.
    """
    from napari_aet.core.align import _validate_shifts, apply_shifts, register_translation

    series = np.asarray(tilt_series, np.float32)
    volume = np.asarray(volume, np.float32)
    if series.ndim != 3 or volume.ndim != 3 or volume.shape[1:] != series.shape[1:]:
        raise ValueError(f"the volume {volume.shape} does not fit images {series.shape[1:]}: "
                         "it must be (nz, ny, nx) for (n, ny, nx) images")
    angles = as_euler_angles(angles_deg).copy()
    if len(angles) != len(series):
        raise ValueError(f"{len(angles)} angles for {len(series)} images: they must match")
    names = [s.strip() for s in refine.split(",") if s.strip()]
    unknown = set(names) - {"phi", "theta", "psi"}
    if unknown or not names:
        raise ValueError(f"refine must name some of phi, theta, psi; got {refine!r}")
    if int(rounds) < 1 or not (max_step_deg > 0 and fd_step_deg > 0):
        raise ValueError(f"rounds must be >= 1 and the angle steps > 0; got {rounds}, "
                         f"{max_step_deg}, {fd_step_deg}")
    shifts = (np.zeros((len(series), 2)) if shifts_px is None
              else _validate_shifts(shifts_px, len(series)).copy())
    norm = float((series.astype(np.float64) ** 2).sum())
    components = [("phi", "theta", "psi").index(name) for name in names]
    history = []
    images = apply_shifts(series, shifts)
    projections = _project(volume, angles, subpixel)
    for r in range(1, int(rounds) + 1):
        # Gauss-Newton on the chosen angles: central differences of the re-projections
        jac = []
        for i in components:
            delta = np.zeros(3)
            delta[i] = fd_step_deg
            plus = _project(volume, angles + delta, subpixel)
            minus = _project(volume, angles - delta, subpixel)
            jac.append(((plus - minus) / (2 * fd_step_deg)).reshape(len(series), -1))
        jac = np.stack(jac, axis=-1).astype(np.float64)  # (n, pixels, m)
        rhs = (images - projections).reshape(len(series), -1).astype(np.float64)
        normal = np.einsum("npi,npj->nij", jac, jac)
        gradient = np.einsum("npi,np->ni", jac, rhs)
        normal += 1e-9 * np.trace(normal, axis1=1, axis2=2)[:, None, None] * np.eye(len(components))
        update = np.linalg.solve(normal, gradient[..., None])[..., 0]
        angles[:, components] += np.clip(update, -max_step_deg, max_step_deg)
        projections = _project(volume, angles, subpixel)  # also the next round's base
        if refine_shifts:
            for k in range(len(series)):
                shifts[k] += register_translation(projections[k], images[k])
            images = apply_shifts(series, shifts)
        history.append(float(((projections - images) ** 2).sum()) / norm)
        yield Progress("refine angles", r, int(rounds), stage="angles",
                       message=f"residual {history[-1]:.4g}", residual=history[-1])
    return AngleRefinement(angles, shifts, history)


def refine_and_reconstruct_iter(tilt_series, angles_deg, cycles: int = 3,
                                iterations: int = 50, rounds: int = 3,
                                max_step_deg: float = 1.0,
                                refine: str = "phi,theta,psi", refine_shifts: bool = True,
                                method: str = "resire", gpu: bool = False,
                                **reconstruct_options) -> Generator[Progress, None, tuple]:
    """Alternate reconstruction and :func:`refine_angles_iter`, ``cycles`` times.

    Each cycle reconstructs with the current angles and shifts (``method``, ``iterations``,
    ``gpu`` and further ``reconstruct_options`` as for
    :func:`napari_aet.core.reconstruct.reconstruct_iter`), then refines them against that
    volume (``rounds`` rounds of at most ``max_step_deg``; on the CPU); a last reconstruction
    uses the final values. Yields every :class:`~napari_aet.core.progress.Progress` of the
    reconstructions (``r1``) and the refinements (``residual``), renumbered so that ``done``
    counts all iterations and rounds of the job (``total``) and ``stage`` names the cycle.
    Returns ``(volume, AngleRefinement)``; the refinement's ``r1_history`` is the final
    reconstruction's R1 per iteration.
    """
    from napari_aet.core.align import apply_shifts
    from napari_aet.core.reconstruct import reconstruct_iter

    if int(cycles) < 1:
        raise ValueError(f"cycles must be >= 1; got {cycles}")
    series = np.asarray(tilt_series, np.float32)
    angles = as_euler_angles(angles_deg)
    shifts = np.zeros((len(series), 2))
    passes = 1 if method == "wbp" else int(iterations)
    total = passes * (int(cycles) + 1) + int(rounds) * int(cycles)
    offset = 0
    history = []

    def relay(generator, stage, r1):
        """Pass on ``generator``'s records renumbered; collect their R1; return its value."""
        nonlocal offset
        done = 0
        while True:
            try:
                info = next(generator)
            except StopIteration as stop:
                offset += done
                return stop.value
            done = info.done
            if info.r1 is not None:
                r1.append(float(info.r1))
            yield dataclasses.replace(info, done=offset + done, total=total, stage=stage)

    for c in range(1, int(cycles) + 2):
        stage = f"cycle {c}/{int(cycles)}" if c <= int(cycles) else "final"
        r1 = []
        volume = yield from relay(reconstruct_iter(
            method, apply_shifts(series, shifts), angles, iterations=iterations, gpu=gpu,
            **reconstruct_options), stage, r1)
        if c > int(cycles):
            break
        result = yield from relay(refine_angles_iter(
            series, angles, volume, shifts, rounds, max_step_deg, refine=refine,
            refine_shifts=refine_shifts), stage, [])
        angles, shifts = result.angles_deg, result.shifts_px
        history.extend(result.residual_history)
    return np.asarray(volume, np.float32), AngleRefinement(angles, shifts, history, r1)
