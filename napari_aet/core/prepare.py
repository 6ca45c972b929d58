"""Preprocessing then alignment of a tilt series: the one composition of the Align widget,
``napari-aet align`` and ``napari-aet run``.

Order: denoise (optional), background subtraction for alignment (``'auto'``: when a support
film is detected), intensity normalisation (optional), then
:func:`napari_aet.core.align.align_tilt_series` (optional). Intensities in the tilt series'
unit, shifts in pixels, angles in degrees.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field, replace

import numpy as np

from napari_aet.core import preprocess
from napari_aet.core.align import (
    DEFAULTS,
    AlignmentResult,
    align_tilt_series,
    alignment_steps,
    validate_tilt_series,
)
from napari_aet.core.progress import Progress


@dataclass
class PreparedSeries:
    """Outcome of :func:`preprocess_and_align`.

    ``images`` float32 ``(n, ny, nx)``: the preprocessed series, the one the shifts apply to;
    ``alignment`` the :class:`~napari_aet.core.align.AlignmentResult` (None when alignment was
    off); ``background`` float32 ``(n, ny, nx)`` estimate and ``film_masks`` bool particle
    masks (None when no background was subtracted); ``film_level`` median film level
    (fraction of the particle's peak); ``applied`` the preprocessing steps done, in order;
    ``timings_s`` seconds spent on ``"preprocess"`` and ``"align"``.
    """

    images: np.ndarray
    alignment: AlignmentResult | None
    background: np.ndarray | None = None
    film_masks: np.ndarray | None = None
    film_level: float = 0.0
    applied: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def aligned(self) -> np.ndarray:
        """The aligned series (the preprocessed one when alignment was off)."""
        return self.images if self.alignment is None else self.alignment.aligned


def preprocess_and_align(tilt_series, angles_deg, *, denoise: str | None = None,
                         denoise_strength: float = 1.0, background: str = "auto", mask=None,
                         normalize: bool = False, align: bool = True, **align_options
                         ) -> Generator[Progress, None, PreparedSeries]:
    """Preprocess and align a tilt series (a generator returning a :class:`PreparedSeries`).

    Parameters
    ----------
    tilt_series : ``(n, ny, nx)`` images; angles_deg : ``(n,)`` or ``(n, 3)`` degrees.
    denoise : None / ``"none"``, or a :func:`napari_aet.core.preprocess.denoise` method.
    denoise_strength : its strength (1 is the method's default).
    background : ``"auto"``, ``"on"`` or ``"off"``
        (:func:`napari_aet.core.preprocess.background_for_alignment`).
    mask : particle mask replacing the automatic one for the background.
    normalize : scale every image to the same total intensity.
    align : run :func:`napari_aet.core.align.align_tilt_series` with ``align_options``.

    Yields one :class:`~napari_aet.core.progress.Progress` per step (``step`` is
    ``"preprocess"`` or ``"align"``; ``done`` counts over both).
    """
    work, angles = validate_tilt_series(tilt_series, angles_deg)
    denoise = None if denoise in (None, "", "none") else denoise
    total = 1 + int(bool(denoise)) + int(bool(normalize))
    if align:
        total += alignment_steps(align_options.get("common_line", True),
                                 align_options.get("center_of_mass", True),
                                 align_options.get("projection_matching_rounds",
                                                   DEFAULTS["projection_matching_rounds"]))
    done = 0
    applied = []
    t0 = time.perf_counter()
    if denoise:
        work, _ = preprocess.denoise(work, denoise, strength=denoise_strength)
        applied.append("denoise")
        done += 1
        yield Progress("preprocess", done, total, stage=f"denoise ({denoise})")
    work, estimate, masks, level = preprocess.background_for_alignment(work, background, mask)
    if estimate is not None:
        applied.append("background")
    done += 1
    verb = "subtracted" if estimate is not None else "left"
    yield Progress("preprocess", done, total,
                   stage=f"background {verb} (film level {100 * level:.1f} % of the peak)")
    if normalize:
        work, _ = preprocess.normalize_intensity(work)
        applied.append("normalize")
        done += 1
        yield Progress("preprocess", done, total, stage="normalise")
    images = np.asarray(work, np.float32)
    timings = {"preprocess": time.perf_counter() - t0}
    alignment = None
    if align:
        t0 = time.perf_counter()
        generator = align_tilt_series(images, angles, **align_options)
        while True:
            try:
                info = next(generator)
            except StopIteration as stop:
                alignment = stop.value
                break
            yield replace(info, done=done + info.done, total=total)
        timings["align"] = time.perf_counter() - t0
    return PreparedSeries(images, alignment, estimate, masks, float(level), applied, timings)

