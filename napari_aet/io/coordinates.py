"""Atom coordinate files. Files hold (x, y, z) in Angstrom; :class:`Atoms` holds (z, y, x).

``read_atoms`` and ``write_atoms`` dispatch on the file extension:

=================  ==========================================================================
``.xyz``           plain xyz (``Element x y z``, 6 decimals); a ``Properties=`` comment line
                   is read as extended xyz
``.extxyz``        extended xyz: every feature is a column (``R`` float, ``I`` int,
                   ``L`` bool, ``S`` text); positions at full double precision
``.csv``           napari Points csv: ``index, axis-0, axis-1, axis-2`` (z, y, x in
                   Angstrom, as an atoms layer holds them), ``element``, then features;
                   plain csv with ``x, y, z`` (and ``element``) columns is read too
``.mat``           MATLAB, published AET layout (see :func:`write_mat`)
``.cif``,          through ASE (optional extra ``ase``): positions only to the precision
``.pdb``,          these formats keep (PDB 0.001 Angstrom, CIF 1e-5 of the cell);
``.lmp``/``.data`` LAMMPS data (``atomic`` style, full precision)
=================  ==========================================================================

Every writer is atomic (:func:`napari_aet.io.atomic.atomic_write`).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np

from napari_aet.core.atoms import Atoms, normalize_symbol
from napari_aet.io.atomic import atomic_write


def read_xyz(path) -> Atoms:
    """Read a plain xyz file: count line, comment line, then ``Element x y z`` (Angstrom).

    A comment line with ``Properties=`` makes it an extended xyz file (:func:`read_extxyz`).
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text xyz file") from exc
    if len(lines) >= 2 and "properties=" in lines[1].lower():
        return read_extxyz(path)
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



# --- extended xyz ------------------------------------------------------------------------

_EXT_TYPES = {"f": "R", "i": "I", "u": "I", "b": "L"}


def _format_text(value) -> str:
    text = "" if value is None else str(value)
    if text == "" or any(ch.isspace() for ch in text) or '"' in text:
        return json.dumps(text)
    return text


def write_extxyz(path, atoms: Atoms, comment: str = "") -> None:
    """Write extended xyz keeping every feature as a column (atomically).

    Column types: ``R`` (float, written with ``repr`` precision, ``nan`` allowed), ``I``
    (integer), ``L`` (``T``/``F``), ``S`` (text; empty text or text with spaces is
    double-quoted). Positions are written with 10 decimals (1e-10 Angstrom).
    """
    names, kinds, columns = [], [], []
    for name, values in atoms.features.items():
        if not name or any(ch.isspace() or ch in ':="' for ch in name):
            raise ValueError(f"feature name {name!r} cannot be an extended xyz column name")
        values = np.asarray(values)
        kind = _EXT_TYPES.get(values.dtype.kind, "S")
        names.append(name)
        kinds.append(kind)
        if kind == "R":
            columns.append([repr(float(v)) for v in values])
        elif kind == "I":
            columns.append([str(int(v)) for v in values])
        elif kind == "L":
            columns.append(["T" if v else "F" for v in values])
        else:
            columns.append([_format_text(v) for v in values])
    props = "species:S:1:pos:R:3" + "".join(f":{n}:{k}:1" for n, k in zip(names, kinds))
    comment = comment.replace("\n", " ").replace('"', "'")
    header = f'Properties={props} pbc="F F F"' + (f' comment="{comment}"' if comment else "")
    xyz = atoms.xyz
    with atomic_write(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write(f"{len(atoms)}\n{header}\n")
            for i, element in enumerate(atoms.elements):
                x, y, z = xyz[i]
                extra = "".join(" " + col[i] for col in columns)
                fh.write(f"{element} {x:.10f} {y:.10f} {z:.10f}{extra}\n")


def _parse_properties(comment: str, path) -> list[tuple[str, str, int]]:
    match = re.search(r"properties=(\S+)", comment, flags=re.IGNORECASE)
    if not match:
        return [("species", "S", 1), ("pos", "R", 3)]
    parts = match.group(1).split(":")
    if len(parts) % 3:
        raise ValueError(f"{path}: malformed Properties= in the comment line")
    out = []
    for k in range(0, len(parts), 3):
        try:
            out.append((parts[k], parts[k + 1].upper(), int(parts[k + 2])))
        except ValueError as exc:
            raise ValueError(f"{path}: malformed Properties= entry {parts[k:k + 3]}") from exc
    return out


def read_extxyz(path) -> Atoms:
    """Read extended xyz (species, pos and any per-atom columns become features)."""
    path = Path(path)
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        raise ValueError(f"{path}: too short for an xyz file")
    try:
        n = int(lines[0].split()[0])
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{path}: first line must be the atom count") from exc
    props = _parse_properties(lines[1], path)
    names = [p[0] for p in props]
    if "pos" not in names:
        raise ValueError(f"{path}: extended xyz without a 'pos' column")
    width = sum(p[2] for p in props)
    body = [ln for ln in lines[2:2 + n]]
    if len(body) < n:
        raise ValueError(f"{path}: header says {n} atoms but the file has {len(body)} atom lines")
    rows = []
    for i, line in enumerate(body):
        parts = shlex.split(line) if '"' in line else line.split()
        if len(parts) != width:
            raise ValueError(f"{path}: line {i + 3} has {len(parts)} columns, expected {width}")
        rows.append(parts)
    table = np.array(rows, dtype=object).reshape(n, width)
    col = 0
    elements = np.full(n, "X")
    xyz = np.zeros((n, 3))
    features = {}
    for name, kind, count in props:
        block = table[:, col:col + count]
        col += count
        if name == "pos":
            xyz = block.astype(float)
        elif name in ("species", "element") and kind == "S":
            elements = np.array([normalize_symbol(e) for e in block[:, 0]])
        elif count == 1:
            values = block[:, 0]
            if kind == "R":
                features[name] = values.astype(float)
            elif kind == "I":
                features[name] = values.astype(int)
            elif kind == "L":
                features[name] = np.isin(values, ("T", "True", "true", "1"))
            else:
                features[name] = values.astype(str)
        else:
            for k in range(count):
                features[f"{name}_{k}"] = block[:, k].astype(float if kind == "R" else str)
    if not np.all(np.isfinite(xyz)):
        raise ValueError(f"{path}: coordinates contain NaN or infinite values")
    return Atoms(xyz[:, ::-1], elements, features)


# --- csv (napari Points layout) --------------------------------------------------------------

def write_csv(path, atoms: Atoms) -> None:
    """Write a napari Points csv: ``index, axis-0, axis-1, axis-2, element, features...``.

    ``axis-0..2`` are (z, y, x) in Angstrom, the data of an atoms Points layer (scale 1), so
    napari's own csv reader opens the file as the same layer. Floats keep full precision.
    """
    import pandas as pd

    table = pd.DataFrame({"index": np.arange(len(atoms)),
                          "axis-0": atoms.positions[:, 0], "axis-1": atoms.positions[:, 1],
                          "axis-2": atoms.positions[:, 2], "element": atoms.elements.astype(str)})
    for name, values in atoms.features.items():
        if name in table.columns:
            raise ValueError(f"feature name {name!r} clashes with a csv column")
        table[name] = values
    with atomic_write(path) as tmp:
        # repr: shortest exact text, always with a '.' or exponent ("1.0", not "1"), so a
        # float feature of whole numbers reads back as float, not int
        table.to_csv(tmp, index=False, float_format=lambda v: repr(float(v)), na_rep="nan")


def read_csv(path) -> Atoms:
    """Read a csv of atoms: napari Points layout (``axis-0..2`` = z, y, x) or ``x, y, z``.

    The element is taken from an ``element``/``species``/``symbol`` column (``X`` when
    there is none); every other column (except ``index``) becomes a feature.
    """
    import pandas as pd

    path = Path(path)
    try:
        table = pd.read_csv(path, keep_default_na=False, na_values=["nan", "NaN"])
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path}: not a readable csv file ({exc})") from exc
    cols = {c.strip().lower(): c for c in table.columns}
    if all(f"axis-{k}" in cols for k in range(3)):
        zyx = table[[cols["axis-0"], cols["axis-1"], cols["axis-2"]]].to_numpy(float)
        used = {cols["axis-0"], cols["axis-1"], cols["axis-2"]}
    elif all(k in cols for k in ("x", "y", "z")):
        zyx = table[[cols["z"], cols["y"], cols["x"]]].to_numpy(float)
        used = {cols["x"], cols["y"], cols["z"]}
    else:
        raise ValueError(f"{path}: needs columns axis-0, axis-1, axis-2 (z, y, x) or x, y, z; "
                         f"found {list(table.columns)}")
    if "index" in cols:
        used.add(cols["index"])
    element_col = next((cols[k] for k in ("element", "species", "symbol") if k in cols), None)
    if element_col is not None:
        elements = np.array([normalize_symbol(e) for e in table[element_col].astype(str)])
        used.add(element_col)
    else:
        elements = np.full(len(table), "X")
    features = {}
    for c in table.columns:
        if c in used:
            continue
        values = table[c].to_numpy()
        if values.dtype.kind == "O":
            values = values.astype(str)
        features[c] = values
    if not np.all(np.isfinite(zyx)):
        raise ValueError(f"{path}: coordinates contain NaN or infinite values")
    return Atoms(zyx, elements, features)


# --- MATLAB .mat (published AET layout) ------------------------------------------------------

#: Keys accepted for the 3 x N coordinates (first found wins) and for the 1 x N types.
MAT_POSITION_KEYS = ("atom_pos", "model", "atomPos", "atom_positions", "pos", "xyz")
MAT_TYPE_KEYS = ("atom_types", "atomtype", "atomType", "atom_type", "types", "type")


def write_mat(path, atoms: Atoms, pixel_size_A: float | None = None) -> None:
    """Write MATLAB .mat in the published AET layout (atomically).

    Keys written:

    * ``atom_pos`` and ``model``: 3 x N double, rows x, y, z in Angstrom (the same array
      under both names used by published codes);
    * ``atom_types``: 1 x N double, atomic number Z of each atom (``0`` for ``X``);
    * ``atom_species``: 1 x N cell of element symbols;
    * ``features``: a struct with one 1 x N field per feature (double, or cell for text)
      and ``feature_dtypes``: a struct of the numpy dtype of each (to read them back exactly);
    * ``pixel_size_A``: when given (the reconstruction's voxel size).
    """
    from scipy.io import savemat

    from napari_aet.core.atoms import ATOMIC_NUMBER

    xyz = atoms.xyz.T.copy()
    z = np.array([ATOMIC_NUMBER.get(str(e), 0) for e in atoms.elements], float)[None, :]
    species = np.empty((1, len(atoms)), dtype=object)
    species[0, :] = [str(e) for e in atoms.elements]
    feats, dtypes = {}, {}
    for name, values in atoms.features.items():
        key = re.sub(r"\W", "_", name)
        if not re.match(r"[A-Za-z]", key):
            key = "f_" + key
        values = np.asarray(values)
        if key in feats:
            raise ValueError(f"features {name!r} and another have the same MATLAB name {key!r}")
        dtypes[key] = values.dtype.str if values.dtype.kind in "fiub" else "str"
        if values.dtype.kind in "fiub":
            feats[key] = values.astype(float)[None, :]
        else:
            cell = np.empty((1, len(values)), dtype=object)
            cell[0, :] = ["" if v is None else str(v) for v in values]
            feats[key] = cell
    out = {"atom_pos": xyz, "model": xyz, "atom_types": z, "atom_species": species}
    if feats:
        out["features"] = feats
        out["feature_dtypes"] = dtypes
    if pixel_size_A is not None:
        out["pixel_size_A"] = float(pixel_size_A)
    with atomic_write(path) as tmp:
        savemat(tmp, out, do_compression=True, oned_as="row")


def read_mat(path, type_elements=None, scale_A: float = 1.0) -> Atoms:
    """Read atoms from a MATLAB .mat file in the published AET layout.

    Coordinates: the first of :data:`MAT_POSITION_KEYS` (3 x N or N x 3, x, y, z),
    multiplied by ``scale_A`` (use the voxel size for files in voxel units). Elements, in
    order of preference: an ``atom_species`` cell; the types (first of
    :data:`MAT_TYPE_KEYS`) mapped through ``type_elements`` (dict or list: type 1 is the
    first entry, as in published codes); else the types read as atomic numbers. Features
    come from a ``features`` struct when present.
    """
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    path = Path(path)
    try:
        data = loadmat(path, squeeze_me=False, struct_as_record=False)
    except (ValueError, NotImplementedError, OSError, MatReadError) as exc:
        raise ValueError(f"{path}: not a readable MATLAB file ({exc})") from exc
    key = next((k for k in MAT_POSITION_KEYS if k in data), None)
    if key is None:
        raise ValueError(f"{path}: no coordinates; expected one of {', '.join(MAT_POSITION_KEYS)}"
                         f" (found {', '.join(k for k in data if not k.startswith('__'))})")
    pos = np.asarray(data[key], float)
    if pos.ndim != 2 or 3 not in pos.shape:
        raise ValueError(f"{path}: {key!r} must be 3 x N; got shape {pos.shape}")
    xyz = pos.T if pos.shape[0] == 3 else pos  # 3 x N (published layout) or N x 3
    xyz = np.asarray(xyz, float) * float(scale_A)
    n = len(xyz)
    elements = None
    if "atom_species" in data:
        elements = np.array([normalize_symbol(_mat_str(v)) for v in np.ravel(data["atom_species"])])
    else:
        tkey = next((k for k in MAT_TYPE_KEYS if k in data), None)
        if tkey is not None:
            types = np.ravel(np.asarray(data[tkey], float)).astype(int)
            if len(types) != n:
                raise ValueError(f"{path}: {len(types)} types for {n} atoms")
            if type_elements is not None:
                table = (dict(type_elements) if isinstance(type_elements, dict)
                         else {k + 1: e for k, e in enumerate(type_elements)})
                missing = sorted(set(types.tolist()) - set(table))
                if missing:
                    raise ValueError(f"{path}: types {missing} have no element in type_elements")
                elements = np.array([normalize_symbol(table[t]) for t in types])
            else:
                from napari_aet.core.atoms import _SYMBOLS

                if types.min(initial=1) < 0 or types.max(initial=1) > len(_SYMBOLS):
                    raise ValueError(f"{path}: types are not atomic numbers; pass type_elements")
                elements = np.array(["X" if t == 0 else _SYMBOLS[t - 1] for t in types])
    if elements is None:
        elements = np.full(n, "X")
    features = {}
    if "features" in data:
        struct = np.ravel(data["features"])[0]
        dtypes = {}
        if "feature_dtypes" in data:
            dstruct = np.ravel(data["feature_dtypes"])[0]
            dtypes = {f: _mat_str(getattr(dstruct, f)) for f in dstruct._fieldnames}
        for name in struct._fieldnames:
            values = np.asarray(getattr(struct, name))
            if values.dtype.kind == "O":
                features[name] = np.array([_mat_str(v) for v in np.ravel(values)])
            else:
                values = np.ravel(values)
                dt = dtypes.get(name, "")
                features[name] = values.astype(dt) if dt and dt != "str" else values
    return Atoms(xyz[:, ::-1], elements, features)


def _mat_str(value) -> str:
    arr = np.asarray(value)
    if arr.size == 0:
        return ""
    return str(np.ravel(arr)[0]) if arr.dtype.kind != "U" or arr.ndim else str(arr)


# --- ASE formats (optional extra ``ase``) ----------------------------------------------------

def _ase():
    try:
        import ase
        import ase.io
    except ImportError as exc:
        raise ImportError("cif, pdb and LAMMPS data files need ASE: "
                          "pip install 'napari-aet[ase]' (or pip install ase)") from exc
    return ase


def _to_ase(atoms: Atoms, margin_A: float = 5.0):
    ase = _ase()
    xyz = atoms.xyz
    if np.any(atoms.elements == "X"):
        raise ValueError("atoms with unknown element 'X' cannot be written in this format")
    hi = (xyz.max(axis=0) if len(xyz) else np.zeros(3)) + margin_A
    return ase.Atoms(symbols=[str(e) for e in atoms.elements], positions=xyz,
                     cell=np.diag(np.maximum(hi, margin_A)), pbc=False)


def _from_ase(obj) -> Atoms:
    xyz = np.asarray(obj.get_positions(), float)
    return Atoms(xyz[:, ::-1], np.array(obj.get_chemical_symbols()))


def write_ase(path, atoms: Atoms, format: str | None = None) -> None:
    """Write cif / pdb / LAMMPS data through ASE (atomically); elements and positions only."""
    ase = _ase()
    path = Path(path)
    fmt = format or _ASE_FORMATS[path.suffix.lower()]
    obj = _to_ase(atoms)
    if len(atoms) and np.any(atoms.xyz < 0) and fmt in ("cif", "lammps-data"):
        raise ValueError(f"{fmt} needs coordinates >= 0 (positions in the volume frame); "
                         "shift the atoms first")
    kwargs = {}
    if fmt == "lammps-data":
        species = sorted(set(obj.get_chemical_symbols()),
                         key=lambda s: obj.get_atomic_numbers()[obj.get_chemical_symbols().index(s)])
        kwargs = {"masses": True, "specorder": species, "atom_style": "atomic"}
    with atomic_write(path) as tmp:
        ase.io.write(str(tmp), obj, format=fmt, **kwargs)


def read_ase(path, format: str | None = None) -> Atoms:
    """Read cif / pdb / LAMMPS data through ASE (elements and positions)."""
    ase = _ase()
    path = Path(path)
    fmt = format or _ASE_FORMATS[path.suffix.lower()]
    kwargs = {"atom_style": "atomic"} if fmt == "lammps-data" else {}
    try:
        obj = _read_cif(path) if fmt == "cif" else ase.io.read(str(path), format=fmt, **kwargs)
    except Exception as exc:  # ASE raises many kinds for a bad file
        raise ValueError(f"{path}: cannot read as {fmt} ({exc})") from exc
    return _from_ase(obj)


def _read_cif(path):
    """ASE's CIF reader (last data block), skipping its symmetry expansion for P1 files.

    ASE expands every site by the space group and removes duplicates pairwise, in Python
    (minutes for a few thousand atoms). A P1 file with full occupancies, such as the ones
    :func:`write_ase` writes, already lists every atom, so its sites are used as they are.
    """
    from ase.io.cif import parse_cif

    with open(path) as fh:
        blocks = [b for b in parse_cif(fh) if b.has_structure()]
    if not blocks:
        raise ValueError("no atom sites in the file")
    block = blocks[-1]
    occupancy = block.get("_atom_site_occupancy")
    full = occupancy is None or np.all(np.asarray(occupancy, float) == 1)
    if full and block.get_spacegroup(True).nsymop == 1:
        return block.get_unsymmetrized_structure()
    return block.get_atoms()


_ASE_FORMATS = {".cif": "cif", ".pdb": "proteindatabank", ".lmp": "lammps-data",
                ".data": "lammps-data"}

READERS = {".xyz": read_xyz, ".extxyz": read_extxyz, ".csv": read_csv, ".mat": read_mat,
           **{ext: read_ase for ext in _ASE_FORMATS}}
WRITERS = {".xyz": write_xyz, ".extxyz": write_extxyz, ".csv": write_csv, ".mat": write_mat,
           **{ext: write_ase for ext in _ASE_FORMATS}}


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
