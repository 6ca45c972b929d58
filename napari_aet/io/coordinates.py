"""Atom coordinate files. Files hold (x, y, z) in Angstrom; :class:`Atoms` holds (z, y, x).

``read_atoms`` and ``write_atoms`` dispatch on the file extension.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_aet.core.atoms import Atoms, normalize_symbol
from napari_aet.io.atomic import atomic_write


def read_xyz(path) -> Atoms:
    """Read a plain xyz file: count line, comment line, then ``Element x y z`` (Angstrom)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text xyz file") from exc
    if len(lines) < 2:
        raise ValueError(f"{path}: too short for an xyz file (needs a count and a comment line)")
    try:
        n = int(lines[0].split()[0])
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{path}: first line must be the atom count; got {lines[0][:40]!r}") from exc
    body = [ln for ln in lines[2:] if ln.strip()]
    if len(body) < n:
        raise ValueError(f"{path}: header says {n} atoms but the file has {len(body)} atom lines")
    elements, xyz = [], np.empty((n, 3))
    for i, line in enumerate(body[:n]):
        parts = line.split()
        if len(parts) < 4:
            raise ValueError(f"{path}: line {i + 3} is not 'Element x y z': {line[:60]!r}")
        elements.append(normalize_symbol(parts[0]))
        try:
            xyz[i] = [float(v) for v in parts[1:4]]
        except ValueError as exc:
            raise ValueError(f"{path}: line {i + 3} has a non-numeric coordinate") from exc
    if not np.all(np.isfinite(xyz)):
        raise ValueError(f"{path}: coordinates contain NaN or infinite values")
    return Atoms(xyz[:, ::-1], np.array(elements))


def write_xyz(path, atoms: Atoms, comment: str = "") -> None:
    """Write a plain xyz file (x, y, z in Angstrom, 6 decimals), atomically."""
    comment = comment.replace("\n", " ")
    with atomic_write(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write(f"{len(atoms)}\n{comment}\n")
            for element, (x, y, z) in zip(atoms.elements, atoms.xyz):
                fh.write(f"{element} {x:.6f} {y:.6f} {z:.6f}\n")


READERS = {".xyz": read_xyz}
WRITERS = {".xyz": write_xyz}


def read_atoms(path, **kwargs) -> Atoms:
    """Read atoms from a coordinate file chosen by extension (see ``READERS``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"{path}: unsupported atoms format {path.suffix!r}; "
                         f"use one of {', '.join(sorted(READERS))}")
    return reader(path, **kwargs)


def write_atoms(path, atoms: Atoms, **kwargs) -> None:
    """Write atoms to a coordinate file chosen by extension (see ``WRITERS``)."""
    path = Path(path)
    writer = WRITERS.get(path.suffix.lower())
    if writer is None:
        raise ValueError(f"{path}: unsupported atoms format {path.suffix!r}; "
                         f"use one of {', '.join(sorted(WRITERS))}")
    writer(path, atoms, **kwargs)
