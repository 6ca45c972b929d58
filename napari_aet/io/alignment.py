"""Alignment files: per-projection shifts and angles, saved atomically as CSV or JSON.

An alignment is the tilt angles ``(n, 3)`` (degrees), the shifts ``(n, 2)`` (dy, dx) in
pixels applied to the original images, and the in-plane tilt-axis direction (degrees) removed
before shifting (:func:`napari_aet.core.align.apply_alignment`). Values are written with full
float precision (``repr``), so reloading reproduces the aligned stack bit for bit.

CSV layout (``# key = value`` header lines, then one row per projection)::

    # napari-aet alignment
    # tilt_axis_deg = 2.0
    # pixel_size_A = 0.35
    index,phi_deg,theta_deg,psi_deg,dy_px,dx_px
    0,0.0,-72.6,0.0,1.25,-0.5
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_aet.io.atomic import atomic_write

COLUMNS = ("index", "phi_deg", "theta_deg", "psi_deg", "dy_px", "dx_px")


@dataclass
class Alignment:
    """Angles ``(n, 3)`` degrees, shifts ``(n, 2)`` (dy, dx) pixels, tilt axis (degrees)."""

    angles_deg: np.ndarray
    shifts_px: np.ndarray
    tilt_axis_deg: float = 0.0
    pixel_size_A: float | None = None
    steps: list = field(default_factory=list)

    def __post_init__(self):
        self.angles_deg = np.asarray(self.angles_deg, float).reshape(-1, 3)
        self.shifts_px = np.asarray(self.shifts_px, float)
        if self.shifts_px.shape != (len(self.angles_deg), 2):
            raise ValueError(f"{len(self.angles_deg)} angles but shifts of shape "
                             f"{self.shifts_px.shape}; expected ({len(self.angles_deg)}, 2)")
        if not (np.all(np.isfinite(self.shifts_px)) and np.all(np.isfinite(self.angles_deg))):
            raise ValueError("alignment contains NaN or infinite values")
        self.tilt_axis_deg = float(self.tilt_axis_deg)


def save_alignment(path, alignment: Alignment) -> Path:
    """Write ``alignment`` to ``path`` (``.csv`` or ``.json``) atomically; return the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ValueError(f"alignment files are .csv or .json; got {path.name!r}")
    with atomic_write(path) as tmp:
        if suffix == ".json":
            payload = {"format": "napari-aet alignment", "version": 1,
                       "tilt_axis_deg": alignment.tilt_axis_deg,
                       "pixel_size_A": alignment.pixel_size_A,
                       "angles_deg": alignment.angles_deg.tolist(),
                       "shifts_px": alignment.shifts_px.tolist(),
                       "steps": alignment.steps}
            tmp.write_text(json.dumps(payload, indent=1))
        else:
            lines = ["# napari-aet alignment",
                     f"# tilt_axis_deg = {alignment.tilt_axis_deg!r}"]
            if alignment.pixel_size_A is not None:
                lines.append(f"# pixel_size_A = {float(alignment.pixel_size_A)!r}")
            lines.append(",".join(COLUMNS))
            for k, (a, s) in enumerate(zip(alignment.angles_deg, alignment.shifts_px)):
                lines.append(",".join([str(k)] + [repr(float(v)) for v in (*a, *s)]))
            tmp.write_text("\n".join(lines) + "\n")
    return path


def load_alignment(path) -> Alignment:
    """Read an alignment written by :func:`save_alignment` (or a CSV with those columns)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"alignment file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            payload = json.loads(path.read_text())
            return Alignment(payload["angles_deg"], payload["shifts_px"],
                             payload.get("tilt_axis_deg", 0.0), payload.get("pixel_size_A"),
                             payload.get("steps", []))
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path.name}: not a napari-aet alignment file ({exc})") from exc
    if suffix != ".csv":
        raise ValueError(f"alignment files are .csv or .json; got {path.name!r}")
    header, rows, names = {}, [], None
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            if "=" in line:
                key, value = line[1:].split("=", 1)
                header[key.strip()] = value.strip()
            continue
        if names is None:
            names = [c.strip() for c in line.split(",")]
            missing = [c for c in COLUMNS[1:] if c not in names]
            if missing:
                raise ValueError(f"{path.name}: missing columns {missing}")
            continue
        try:
            rows.append([float(v) for v in line.split(",")])
        except ValueError as exc:
            raise ValueError(f"{path.name} line {line_no}: {exc}") from exc
    if not rows:
        raise ValueError(f"{path.name}: no projections in the alignment file")
    table = np.array(rows)
    col = {name: i for i, name in enumerate(names)}
    angles = table[:, [col["phi_deg"], col["theta_deg"], col["psi_deg"]]]
    shifts = table[:, [col["dy_px"], col["dx_px"]]]
    pixel = header.get("pixel_size_A")
    return Alignment(angles, shifts, float(header.get("tilt_axis_deg", 0.0)),
                     float(pixel) if pixel not in (None, "None") else None)
