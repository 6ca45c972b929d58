"""The progress record every core step generator yields.

A step (``"reconstruct"``, ``"align"``, ``"preprocess"``, ``"trace"``, ``"analyse"``,
``"refine angles"``) yields one :class:`Progress` per unit of work: ``done`` of ``total``
units (iterations, rounds, stages, slabs), the ``stage`` it is in and a human-readable
``message``. Step-specific results travel in typed optional fields, None when a step does
not report them. Widgets, the terminal bar and the pipeline read these attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Progress:
    """One progress report of a core step.

    Parameters
    ----------
    step : the step reporting (``"reconstruct"``, ``"align"``, ...).
    done : units of work finished (1-based count of iterations, rounds, stages or slabs).
    total : units of work expected (0: unknown).
    stage : the part of the step just finished (``"common line"``, ``"pdf"``, ...).
    message : a one-line description for a status bar or log.
    r1 : reconstruction residual ``sum|A x - b| / sum|b|`` of the volume entering iteration
        ``done`` (reconstruction, angle refinement).
    residual_l1, data_l1 : ``sum|A x - b|`` and ``sum|b|`` (reconstruction; intensity units).
    support : support state of the reconstruction (``"loose"``, ``"tight"``, ``"given"``,
        ``"none"``).
    preview : central slices ``{"yx", "zx", "zy"}`` of the current volume (reconstruction,
        every ``preview_every`` iterations).
    shifts_px : ``(n, 2)`` current total (dy, dx) shifts, pixels (alignment).
    tilt_axis_deg : in-plane tilt-axis direction, degrees (alignment).
    update_rms_px : RMS of a projection-matching round's shift update, pixels.
    reprojection_error : ``sum|A x - b| / sum|b|`` of a projection-matching round (binned).
    residual : relative residual ``sum|P v - b|^2 / sum|b|^2`` (angle refinement).
    """

    step: str
    done: int
    total: int = 0
    stage: str = ""
    message: str = ""
    r1: float | None = None
    residual_l1: float | None = None
    data_l1: float | None = None
    support: str | None = None
    preview: dict | None = field(default=None, repr=False)
    shifts_px: np.ndarray | None = field(default=None, repr=False)
    tilt_axis_deg: float | None = None
    update_rms_px: float | None = None
    reprojection_error: float | None = None
    residual: float | None = None

    @property
    def fraction(self) -> float | None:
        """``done / total`` in ``[0, 1]``; None when the total is unknown."""
        if self.total <= 0:
            return None
        return min(max(self.done / self.total, 0.0), 1.0)

    @property
    def text(self) -> str:
        """``"stage: message"`` (or whichever of the two is set) for a status line."""
        return ": ".join(part for part in (self.stage, self.message) if part)
