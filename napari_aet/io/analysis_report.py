"""Writing a structure analysis report: csv tables, ``summary.json`` and figures.

The content comes from :mod:`napari_aet.core.analysis.report`; every file is written
atomically (:func:`napari_aet.io.atomic.atomic_write`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_aet.core.analysis.report import FIGURES, csv_text, report_files
from napari_aet.core.atoms import Atoms
from napari_aet.io.atomic import atomic_write


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def write_csv(path, table: dict[str, np.ndarray]) -> None:
    """Write columns to a csv file atomically (NaN as empty fields)."""
    _write_text(Path(path), csv_text(table))


def write_report(directory, atoms: Atoms, result, figures: bool = True, formats=("png", "svg")
                 ) -> list[Path]:
    """Write ``atoms.csv``, ``voids.csv``, ``profiles.csv``, ``summary.json`` (and figures in
    ``formats``) into ``directory``; returns the paths written."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in report_files(atoms, result).items():
        _write_text(out / name, text)
        written.append(out / name)
    if figures:
        written += write_figures(out, {name: make(result) for name, make in FIGURES.items()},
                                 formats)
    return written


def write_figures(directory, figures: dict, formats=("png", "svg")) -> list[Path]:
    """Write matplotlib ``figures`` ``{name: Figure}`` as ``name.fmt`` (150 dpi) into
    ``directory``, each atomically; returns the paths written."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures.items():
        for fmt in formats:
            path = out / f"{name}.{fmt}"
            with atomic_write(path, suffix=f".{fmt}") as tmp:
                fig.savefig(tmp, format=fmt, dpi=150)
            written.append(path)
    return written
