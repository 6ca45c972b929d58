"""Rank the atoms and places of a traced model that deserve a human look (review queue).

Reads ATOMS (xyz, extxyz, csv, mat, cif/pdb/LAMMPS data with ASE) and the reconstruction
VOLUME it was traced from (same frame: voxel i at i * pixel size, Angstrom), and writes a
csv, most suspicious first: rank, kind, x, y, z (Angstrom, the atoms file's frame),
atom_index (row of the input atom; empty for a place with no atom such as a missed-atom
candidate), score (0-1), suggested_action.

Kinds: close_pair, weak_atom, wrong_class, ambiguous_class, poor_fit, isolated, missed_atom.
"""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path

from napari_aet.cli import CLIError
from napari_aet.cli._options import add_parameter_options, option_name, parameter_values
from napari_aet.core.curation.review import REVIEW_SETTINGS, ReviewParameters
from napari_aet.core.parameters import parameter_map
from napari_aet.core.trace import TraceParameters

COMMAND = "curate-check"
COLUMNS = ("rank", "kind", "x", "y", "z", "atom_index", "score", "suggested_action")
FLAGS = {"d_min_A": "--min-distance"}


def add_arguments(parser):
    parser.add_argument("atoms", metavar="ATOMS", help="traced atoms file (Angstrom)")
    parser.add_argument("--volume", required=True, metavar="VOLUME",
                        help="the reconstruction the atoms were traced from (mrc, tif, npy, ...)")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="A",
                        help="voxel size of VOLUME (Angstrom) when the file does not say")
    parser.add_argument("--preset", default=None, metavar="NAME",
                        help="material preset (e.g. SiO2, ZrO2, PdPt); gives the minimum distance")
    add_parameter_options(parser, ReviewParameters, ("d_min_A",), overrides=True, flags=FLAGS)
    add_parameter_options(parser, ReviewParameters, REVIEW_SETTINGS,
                          non_atom_level={"metavar": "VALUE"})
    parser.add_argument("--top", type=int, default=None, metavar="N",
                        help="write only the N most suspicious items")
    parser.add_argument("-o", "--output", required=True, metavar="REVIEW.csv",
                        help="output csv")


def min_distance_from(args) -> float:
    """The minimum distance: --min-distance, else the preset's (the generic preset's when
    none is given), as in the Curate widget."""
    if args.d_min_A is not None:
        if args.d_min_A <= 0:
            raise CLIError(f"--min-distance must be positive (Angstrom); got {args.d_min_A}")
        return float(args.d_min_A)
    return TraceParameters.from_preset(args.preset or "generic").min_distance_A


def review_settings(args) -> ReviewParameters:
    """The review settings of the options (d_min: :func:`min_distance_from`); a value out
    of its field's range is refused naming the option."""
    values = parameter_values(ReviewParameters, args, REVIEW_SETTINGS)
    described = parameter_map(ReviewParameters)
    for name, value in values.items():
        problem = described[name].check(value)
        if problem:
            raise CLIError(f"{option_name(described[name])} {problem}; got {value}")
    return ReviewParameters(d_min_A=min_distance_from(args), **values)


def run(args) -> int:
    import numpy as np

    from napari_aet.core.curation import review_queue, review_table
    from napari_aet.io.atomic import atomic_write
    from napari_aet.io.coordinates import read_atoms
    from napari_aet.io.tilt_series import read_volume

    settings = review_settings(args)
    d_min = settings.d_min_A
    out = Path(args.output)
    if out.suffix.lower() != ".csv":
        raise CLIError(f"output must be a .csv file; got {out.name}")
    atoms = read_atoms(args.atoms)
    if len(atoms) == 0:
        raise CLIError(f"{args.atoms} holds no atoms: nothing to review (the reference "
                       "intensity comes from the atoms; trace first)")
    if not Path(args.volume).is_file():
        raise CLIError(f"{args.volume}: no such file")
    volume, px = read_volume(args.volume, args.pixel_size)
    if px is None:
        raise CLIError(f"{args.volume} has no voxel size; give --pixel-size")
    if float(np.max(volume)) == float(np.min(volume)):
        raise CLIError(f"{args.volume} is constant ({float(np.min(volume)):g} everywhere): "
                       "no signal to check the atoms against")
    extent = (np.array(volume.shape) - 1) * px
    if (np.any(atoms.positions.min(axis=0) < -px)
                       or np.any(atoms.positions.max(axis=0) > extent + px)):
        raise CLIError(f"atoms lie outside the volume ({' x '.join(f'{e:.1f}' for e in extent[::-1])}"
                       " A, x y z): are they in the volume's frame (voxel i at i * pixel size)?")
    items = review_queue(atoms, volume, px, **asdict(settings))
    if args.top is not None:
        items = items[: max(args.top, 0)]
    rows = review_table(items)
    with atomic_write(out) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: (f"{row[k]:.6f}" if k in ("x", "y", "z") else row[k])
                                 for k in COLUMNS})
    kinds = {}
    for it in items:
        kinds[it.kind] = kinds.get(it.kind, 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
    print(f"{len(items)} items for review ({summary or 'none'}); d_min {d_min:g} A -> {out}")
    return 0
