"""Readers and writers for tilt series, volumes and tilt angles.

Layouts: our arrays are ``(n, ny, nx)`` (tilt series, tilt axis along y) and ``(nz, ny, nx)``
(volumes). MATLAB files of the published AET codes hold ``(ny, nx, n)`` / ``(x, y, z)``
column-major arrays; ``layout="matlab"`` converts them with ``np.transpose(a, (2, 1, 0))``
(this is the default for ``.mat`` files, and is exact: the 0-degree projection of a MATLAB
volume then equals ``volume.sum(axis=0)`` of ours). MATLAB v7.3 files are HDF5 and h5py
already reads them in reversed order, so they need no transpose.

Pixel sizes come from file metadata where the format has it (MRC voxel size, EMD dims,
TIFF resolution, npz ``pixel_size_A``); otherwise the caller must pass ``pixel_size_A``:
there is never a silent default of 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_aet.io.atomic import atomic_write

STACK_EXTENSIONS = (".mrc", ".st", ".ali", ".rec", ".map", ".tif", ".tiff", ".npy", ".npz",
                    ".h5", ".hdf5", ".emd", ".mat", ".dm3", ".dm4")
ANGLE_EXTENSIONS = (".tlt", ".rawtlt", ".txt", ".csv", ".mat", ".npy")

_PREFERRED_NAMES = ("tilt_series", "projections", "Projections", "proj", "projs", "data",
                    "volume", "vol", "Vol", "rec", "reconstruction", "RESIRE", "GENFIRE")
_ANGLE_NAMES = ("angles_deg", "angles", "Angles", "angle", "tilt_angles", "euler_angles")
_LENGTH_TO_A = {"a": 1.0, "å": 1.0, "angstrom": 1.0, "ang": 1.0, "nm": 10.0, "um": 1e4,
                "µm": 1e4, "micron": 1e4, "m": 1e10, "pm": 0.01}


@dataclass
class StackData:
    """What a file holds: ``data`` (3D, our layout), pixel size (A) or None, angles or None."""

    data: np.ndarray
    pixel_size_A: float | None
    angles_deg: np.ndarray | None
    path: Path


class FileFormatError(ValueError):
    """A file that cannot be read as what was asked (names the file and the problem)."""


def _fail(path, problem: str):
    raise FileFormatError(f"{Path(path).name}: {problem}")


def _length_in_A(value: float, unit: str) -> float | None:
    factor = _LENGTH_TO_A.get(str(unit).strip().lower().replace("angstroms", "angstrom"))
    return None if factor is None or not value or value <= 0 else float(value) * factor


def _pick_array(arrays: dict, path, ndim=3) -> tuple[str, np.ndarray]:
    candidates = {k: v for k, v in arrays.items()
                  if isinstance(v, np.ndarray) and v.ndim == ndim and v.dtype.kind in "fiub"}
    if not candidates:
        shapes = {k: getattr(v, "shape", None) for k, v in arrays.items() if not k.startswith("__")}
        _fail(path, f"no {ndim}-D numeric array found (variables: {shapes})")
    for name in _PREFERRED_NAMES:
        if name in candidates:
            return name, candidates[name]
    if len(candidates) > 1:
        _fail(path, f"several 3-D arrays ({', '.join(candidates)}); name one 'tilt_series' "
                    "or 'volume'")
    return next(iter(candidates.items()))


def _pick_angles(arrays: dict):
    for name in _ANGLE_NAMES:
        if name in arrays:
            return np.asarray(arrays[name], float)
    return None


def _read_mrc(path):
    import mrcfile

    try:
        mrc = mrcfile.mmap(path, mode="r", permissive=False)
    except (ValueError, OSError, EOFError) as exc:
        _fail(path, f"not a valid MRC file ({exc})")
    data = mrc.data
    vs = float(mrc.voxel_size.x)
    # 0 means unset; IMOD and others write 1.0 when the pixel size is unknown.
    px = vs if vs > 0 and not np.isclose(vs, 1.0) else None
    return data, px, None


def _read_tiff(path):
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            data = tif.asarray()
            px = None
            ij = tif.imagej_metadata or {}
            tags = tif.pages[0].tags
            res = tags.get("XResolution")
            if res is not None:
                num, den = res.value
                if num > 0:
                    per_unit = num / den
                    unit = ij.get("unit", "")
                    px = _length_in_A(1.0 / per_unit, unit) if unit else None
    except (tifffile.TiffFileError, ValueError, OSError, IndexError) as exc:
        _fail(path, f"not a readable TIFF ({exc})")
    return data, px, None


def _read_npy(path):
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        _fail(path, f"not a readable .npy file ({exc})")
    return data, None, None


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, KeyError) as exc:
        _fail(path, f"not a readable .npz file ({exc})")
    _, data = _pick_array(arrays, path)
    px = arrays.get("pixel_size_A")
    return data, (float(px) if px is not None else None), _pick_angles(arrays)


def _read_emd(path):
    import h5py

    try:
        with h5py.File(path, "r") as f:
            groups = []
            f.visititems(lambda name, obj: groups.append(obj)
                         if isinstance(obj, h5py.Group) and obj.attrs.get("emd_group_type") == 1
                         else None)
            if groups:
                g = groups[0]
                data = np.asarray(g["data"])
                px, angles = None, None
                dims = [g[f"dim{i + 1}"] for i in range(data.ndim) if f"dim{i + 1}" in g]
                for i, dim in enumerate(dims):
                    units = dim.attrs.get("units", b"")
                    units = units.decode() if isinstance(units, bytes) else str(units)
                    values = np.asarray(dim, float)
                    if i == 0 and units.lower() in ("deg", "degree", "degrees", "°"):
                        angles = values
                    elif i == data.ndim - 1 and len(values) > 1:
                        px = _length_in_A(values[1] - values[0], units)
                return data, px, angles
            arrays = {}
            f.visititems(lambda name, obj: arrays.setdefault(name.split("/")[-1], np.asarray(obj))
                         if isinstance(obj, h5py.Dataset) else None)
            px = f.attrs.get("pixel_size_A")
    except (OSError, KeyError, ValueError) as exc:
        _fail(path, f"not a readable HDF5/EMD file ({exc})")
    _, data = _pick_array(arrays, path)
    return data, (float(px) if px is not None else None), _pick_angles(arrays)


def _read_mat(path):
    import scipy.io

    try:
        arrays = scipy.io.loadmat(path)
        v73 = False
    except NotImplementedError:  # MATLAB v7.3 is HDF5
        import h5py

        v73 = True
        with h5py.File(path, "r") as f:
            arrays = {k: np.asarray(f[k]) for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    except (ValueError, OSError, TypeError) as exc:
        _fail(path, f"not a readable MATLAB file ({exc})")
    _, data = _pick_array(arrays, path)
    px = arrays.get("pixel_size_A", arrays.get("pixelsize"))
    px = float(np.asarray(px).ravel()[0]) if px is not None else None
    angles = _pick_angles(arrays)
    if angles is not None and v73:
        angles = angles.T
    # v7.3 arrays are already reversed (our layout); v5 arrays need the transpose.
    return data, px, angles, ("aet" if v73 else "matlab")


def _read_dm(path):
    try:
        from rsciio.digitalmicrograph import file_reader
    except ImportError as exc:
        raise ImportError("reading DM3/DM4 needs the optional extra: pip install 'napari-aet[dm]' "
                          "(rosettasciio, GPL-3)") from exc
    try:
        d = file_reader(str(path))[0]
    except Exception as exc:  # rosettasciio raises many types on bad files
        _fail(path, f"not a readable DigitalMicrograph file ({exc})")
    axes = d.get("axes", [])
    px = _length_in_A(axes[-1]["scale"], axes[-1].get("units", "")) if axes else None
    return np.asarray(d["data"]), px, None


def read_stack(path, pixel_size_A: float | None = None, layout: str | None = None,
               require_pixel_size: bool = True) -> StackData:
    """Read a 3-D stack (tilt series or volume) from any supported format.

    Parameters
    ----------
    pixel_size_A : pixel size in Angstrom; overrides the file's value when given.
    layout : ``"aet"`` (file already ``(n, ny, nx)``) or ``"matlab"`` (``(ny, nx, n)``
        column-major, transposed on reading); default ``"matlab"`` for v5 ``.mat``, else ``"aet"``.
    require_pixel_size : raise when neither the file nor the caller gives a pixel size.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    ext = path.suffix.lower()
    if ext not in STACK_EXTENSIONS:
        _fail(path, f"unsupported extension {ext!r}; supported: {', '.join(STACK_EXTENSIONS)}")
    file_layout = "aet"
    try:
        if ext in (".mrc", ".st", ".ali", ".rec", ".map"):
            data, px, angles = _read_mrc(path)
        elif ext in (".tif", ".tiff"):
            data, px, angles = _read_tiff(path)
        elif ext == ".npy":
            data, px, angles = _read_npy(path)
        elif ext == ".npz":
            data, px, angles = _read_npz(path)
        elif ext in (".h5", ".hdf5", ".emd"):
            data, px, angles = _read_emd(path)
        elif ext == ".mat":
            data, px, angles, file_layout = _read_mat(path)
        else:
            data, px, angles = _read_dm(path)
    except (FileFormatError, ImportError):
        raise
    except Exception as exc:  # any library failure on a damaged file gets one clear message
        _fail(path, f"could not be read as {ext} ({type(exc).__name__}: {exc})")
    layout = layout or file_layout
    if layout not in ("aet", "matlab"):
        raise ValueError(f"layout must be 'aet' or 'matlab'; got {layout!r}")
    if data.ndim == 2:
        _fail(path, f"holds a single 2-D image {data.shape}; a stack needs 3 dimensions")
    if data.ndim != 3:
        _fail(path, f"has {data.ndim} dimensions {data.shape}; expected a 3-D stack")
    if data.dtype.kind not in "fiub":
        _fail(path, f"holds non-numeric data ({data.dtype})")
    if min(data.shape) < 1:
        _fail(path, f"is empty (shape {data.shape})")
    need = data.size * max(data.dtype.itemsize, 4)  # read as float32 or wider
    if need > physical_memory_bytes():
        _fail(path, f"claims {' x '.join(map(str, data.shape))} voxels ({need / 2**30:.0f} GiB), "
                    f"more than this machine's memory ({physical_memory_bytes() / 2**30:.0f} "
                    "GiB): a damaged header, or a file to crop first")
    if layout == "matlab":
        data = np.transpose(data, (2, 1, 0))
    _check_finite(data, path)
    if pixel_size_A is not None:
        if not np.isfinite(pixel_size_A) or pixel_size_A <= 0:
            raise ValueError(f"pixel size must be a positive number of Angstrom; got {pixel_size_A}")
        px = float(pixel_size_A)
    if px is None and require_pixel_size:
        _fail(path, "has no pixel size in its metadata; give it (pixel_size_A / --pixel-size, "
                    "in Angstrom)")
    if angles is not None:
        from napari_aet.core.geometry import as_euler_angles

        angles = as_euler_angles(angles.T if angles.ndim == 2 and angles.shape[0] == 3
                                 and angles.shape[1] != 3 else angles)
        angles = _checked_angles(angles, path)
    return StackData(data, px, angles, path)


def physical_memory_bytes() -> int:
    """The machine's memory (bytes); 1 TiB where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def _check_finite(data, path, chunk: int = 8):
    if data.dtype.kind != "f":
        return
    for start in range(0, data.shape[0], chunk):
        if not np.all(np.isfinite(data[start:start + chunk])):
            _fail(path, "contains NaN or infinite values")


def read_tilt_series(path, pixel_size_A: float | None = None, layout: str | None = None):
    """Read a tilt series ``(n, ny, nx)``; returns ``(float32 array, pixel_size_A)``."""
    stack = read_stack(path, pixel_size_A, layout)
    if stack.data.shape[0] < 2:
        _fail(path, "holds one image; a tilt series needs at least 2")
    return np.asarray(stack.data, dtype=np.float32), stack.pixel_size_A


def read_volume(path, pixel_size_A: float | None = None, layout: str | None = None):
    """Read a volume ``(nz, ny, nx)``; returns ``(float32 array, pixel_size_A)``."""
    stack = read_stack(path, pixel_size_A, layout)
    return np.asarray(stack.data, dtype=np.float32), stack.pixel_size_A


def read_angles(path, n_images: int | None = None) -> np.ndarray:
    """Read tilt angles as ``(n, 3)`` Euler triplets (degrees).

    ``.tlt``/``.rawtlt``: one tilt angle per line (IMOD). ``.txt``/``.csv``: 1 column
    (theta) or 3 columns (phi, theta, psi), comma or whitespace separated, ``#`` comments and
    a header line allowed. ``.mat``/``.npy``: an ``(n,)``, ``(n, 3)`` or ``(3, n)`` array.
    ``n_images``, when given, must match the number of angles.
    """
    from napari_aet.core.geometry import as_euler_angles

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    ext = path.suffix.lower()
    if ext == ".npy":
        try:
            angles = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            _fail(path, f"not a readable .npy file ({exc})")
    elif ext == ".mat":
        import scipy.io

        try:
            arrays = scipy.io.loadmat(path)
        except (ValueError, OSError, TypeError, NotImplementedError) as exc:
            _fail(path, f"not a readable MATLAB v5 file ({exc})")
        angles = _pick_angles(arrays)
        if angles is None:
            numeric = [v for k, v in arrays.items() if not k.startswith("__")
                       and isinstance(v, np.ndarray) and v.dtype.kind in "fi" and v.ndim <= 2]
            if len(numeric) != 1:
                _fail(path, "no variable named 'angles' and not exactly one numeric array")
            angles = numeric[0]
        angles = np.squeeze(np.asarray(angles, float))
    elif ext in (".tlt", ".rawtlt", ".txt", ".csv"):
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            _fail(path, "not a text angles file")
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            line = line.split("#")[0].strip()
            if not line:
                continue
            parts = line.replace(",", " ").replace(";", " ").split()
            try:
                rows.append([float(p) for p in parts])
            except ValueError:
                if rows:
                    _fail(path, f"line {lineno} is not numeric: {line[:50]!r}")
                continue  # a header line
        if not rows:
            _fail(path, "holds no angles")
        widths = {len(r) for r in rows}
        if len(widths) != 1 or widths.pop() not in (1, 3):
            _fail(path, "each line needs 1 value (theta) or 3 values (phi theta psi)")
        angles = np.array(rows, float)
    else:
        _fail(path, f"unsupported angles extension {ext!r}; use one of {', '.join(ANGLE_EXTENSIONS)}")
    if angles.ndim == 2 and angles.shape[0] == 3 and angles.shape[1] not in (1, 3):
        angles = angles.T  # (3, n) triplets; a (3, 1) column is three tilts
    try:
        angles = as_euler_angles(angles)
    except ValueError as exc:
        _fail(path, str(exc))
    if n_images is not None and len(angles) != n_images:
        _fail(path, f"has {len(angles)} angles but the tilt series has {n_images} images")
    return _checked_angles(angles, path)


def _checked_angles(angles, path):
    from napari_aet.core.geometry import check_tilt_angles

    try:
        return check_tilt_angles(angles)
    except ValueError as exc:
        _fail(path, str(exc))


def write_angles(path, angles_deg) -> None:
    """Write angles atomically: ``.tlt`` (theta per line; single-axis only) or 3-column text."""
    from napari_aet.core.geometry import as_euler_angles, is_single_axis

    angles = as_euler_angles(angles_deg)
    path = Path(path)
    with atomic_write(path) as tmp:
        if path.suffix.lower() in (".tlt", ".rawtlt"):
            if not is_single_axis(angles):
                raise ValueError(f"{path.name}: .tlt holds one angle per image; these angles have "
                                 "non-zero phi/psi — write .txt or .csv instead")
            np.savetxt(tmp, angles[:, 1], fmt="%.6f")
        else:
            sep = "," if path.suffix.lower() == ".csv" else " "
            np.savetxt(tmp, angles, fmt="%.6f", delimiter=sep, header="phi theta psi (degrees)")


def write_mrc(path, array, pixel_size_A: float) -> None:
    """Write a 3-D array as float32 MRC with the voxel size set (Angstrom), atomically.

    The header carries one fixed label instead of mrcfile's time stamp, so the same data
    give the same file bytes (run.json checksums compare between runs).
    """
    import mrcfile

    from napari_aet import __version__

    array = np.asarray(array, dtype=np.float32)
    if array.ndim not in (2, 3):
        raise ValueError(f"MRC data must be 2-D or 3-D; got shape {array.shape}")
    if pixel_size_A is None or pixel_size_A <= 0:
        raise ValueError(f"pixel size must be a positive number of Angstrom; got {pixel_size_A}")
    with atomic_write(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(array)
            mrc.voxel_size = float(pixel_size_A)
            mrc.header.label[0] = f"napari-aet {__version__}".encode()
            mrc.header.nlabl = 1


def find_angles_beside(path) -> Path | None:
    """An angles file next to a stack: same stem with an angles extension, ``angles.*``, or
    else the first file whose name starts with ``angle`` (``angles_deg.npy``, ``angle.mat``:
    the published AET codes keep angles in a separate array file)."""
    path = Path(path)
    for ext in (".tlt", ".rawtlt", ".txt", ".csv"):
        for candidate in (path.with_suffix(ext), path.parent / f"angles{ext}"):
            if candidate.is_file() and candidate != path:
                return candidate
    others = sorted(p for p in path.parent.iterdir()
                    if p.is_file() and p != path and p.name.lower().startswith("angle")
                    and p.suffix.lower() in ANGLE_EXTENSIONS)
    return others[0] if others else None
