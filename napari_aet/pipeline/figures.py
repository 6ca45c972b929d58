"""Figures of a pipeline run (png): alignment shifts, R1 convergence, slices with atoms."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _save(fig, path: Path) -> Path:
    from napari_aet.io.atomic import atomic_write

    with atomic_write(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=130)
    return path


def _subplots(ncols=1, figsize=(5.2, 3.4)):
    """A figure without pyplot (no GUI backend: works headless and inside napari)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def figure_shifts(angles_deg, shifts_px, pixel_size_A: float):
    """Shifts (dy along the tilt axis, dx across it) per projection against tilt angle."""
    fig, ax = _subplots()
    theta = np.asarray(angles_deg)[:, 1]
    ax.plot(theta, shifts_px[:, 0], "o-", ms=3, label="dy (along the tilt axis)")
    ax.plot(theta, shifts_px[:, 1], "s-", ms=3, label="dx (across)")
    ax.set_xlabel("tilt angle (deg)")
    ax.set_ylabel(f"shift (px, {pixel_size_A:g} A)")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("alignment shifts", fontsize=10)
    return fig


def figure_r1(r1_history, method: str):
    """R1 (relative L1 residual of the projections) against iteration."""
    fig, ax = _subplots()
    r1 = np.asarray(r1_history, float)
    ax.plot(np.arange(1, len(r1) + 1), 100 * r1, "-", lw=1.5)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("R1 (%)")
    ax.set_title(f"{method}: final R1 {100 * r1[-1]:.2f} %" if len(r1) else method, fontsize=10)
    return fig


def figure_slices(volume, pixel_size_A: float, atoms, slab_A: float = 1.0):
    """Central xy, xz and yz slices of the volume with the atoms within +-slab_A drawn on them."""
    from napari_aet.core.atoms import ELEMENT_COLORS

    vol = np.asarray(volume, float)
    nz, ny, nx = vol.shape
    centre = np.array([nz // 2, ny // 2, nx // 2]) * pixel_size_A
    panels = [("xy (z = centre)", 0, (2, 1)), ("xz (y = centre)", 1, (2, 0)),
              ("yz (x = centre)", 2, (1, 0))]
    fig, axes = _subplots(3, figsize=(11, 4))
    half = max(round(slab_A / pixel_size_A), 0)
    for ax, (title, axis, (hor, ver)) in zip(axes, panels):
        c = vol.shape[axis] // 2
        image = np.take(vol, range(max(c - half, 0), min(c + half + 1, vol.shape[axis])),
                        axis=axis).mean(axis=axis)
        extent = (0, vol.shape[hor] * pixel_size_A, vol.shape[ver] * pixel_size_A, 0)
        ax.imshow(image, cmap="gray", extent=extent)
        if len(atoms):
            near = np.abs(atoms.positions[:, axis] - centre[axis]) <= slab_A
            for element in sorted(set(atoms.elements[near].tolist())):
                sel = near & (atoms.elements == element)
                ax.scatter(atoms.positions[sel, hor], atoms.positions[sel, ver], s=14,
                           facecolors="none", edgecolors=ELEMENT_COLORS.get(element, "#c7c7cc"),
                           linewidths=0.9, label=f"{element} ({sel.sum()})")
            ax.legend(loc="upper right", fontsize=7, frameon=True, framealpha=0.6)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("xyz"[2 - hor] + " (A)")
        ax.set_ylabel("xyz"[2 - ver] + " (A)")
    fig.suptitle(f"central slices (+-{slab_A:g} A) with traced atoms", fontsize=10)
    return fig


def write_run_figures(folder: Path, run) -> list[Path]:
    """Write the figures of a finished data set run (``_DatasetRun``) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if run.metrics.get("align", {}).get("enabled"):
        written.append(_save(figure_shifts(run.angles, run.shifts, run.px),
                             folder / "alignment_shifts.png"))
    if getattr(run, "r1", None):
        written.append(_save(figure_r1(run.r1, run.p["reconstruct"]["method"]),
                             folder / "r1_convergence.png"))
    if getattr(run, "volume", None) is not None and getattr(run, "atoms", None) is not None:
        written.append(_save(figure_slices(run.volume, run.px, run.atoms),
                             folder / "slices_with_atoms.png"))
    return written
