"""napari reader and writer hooks (registered in napari.yaml)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_aet import layers
from napari_aet.io import coordinates, project, tilt_series
from napari_aet.io.tilt_series import STACK_EXTENSIONS

_TILT_EXTENSIONS = (".st", ".ali")
_VOLUME_EXTENSIONS = (".rec",)


def get_reader(path):
    """Return a reader for a tilt series / volume file, or None when it is not ours."""
    if isinstance(path, list):
        return None
    if Path(path).suffix.lower() not in STACK_EXTENSIONS or project.is_project(path):
        return None
    return read_stack_layer


def get_project_reader(path):
    """Return a reader for a napari-aet project file (``.aet.h5``), or None."""
    if isinstance(path, list) or not str(path).lower().endswith(".h5"):
        return None
    return read_project_layers if project.is_project(path) else None


def read_project_layers(path):
    """Every layer of a project, exactly as saved (curation resumes through the Project
    widget or File > Open napari-aet project)."""
    return [(data, state, layer_type) for data, state, layer_type
            in project.load_project(path).layers]


def read_stack_layer(path):
    """Read a stack as a tilt-series layer (when angles are known) or a volume layer.

    Angles come from the file itself or from an angles file beside it (same stem, or
    ``angles.tlt``/``angles.txt``). A file without a pixel size loads without one; every
    step then asks for it instead of assuming 1 Angstrom.
    """
    path = Path(path)
    stack = tilt_series.read_stack(path, require_pixel_size=False)
    angles = stack.angles_deg
    params = {"path": str(path)}
    if angles is None and path.suffix.lower() not in _VOLUME_EXTENSIONS:
        beside = tilt_series.find_angles_beside(path)
        if beside is not None:
            angles = tilt_series.read_angles(beside)
            stack = _stack_with_images_first(stack, len(angles), beside)
            params["angles"] = str(beside)
    source = layers.provenance_step("read", params, source=str(path))
    name = path.stem
    is_tilt = angles is not None or path.suffix.lower() in _TILT_EXTENSIONS
    if not is_tilt and path.suffix.lower() not in _VOLUME_EXTENSIONS:
        from napari.utils.notifications import show_info

        show_info(f"{path.name} opened as a volume: no tilt angles in it or beside it. For a "
                  "tilt series, put its angles file beside it (same name .txt/.tlt/.csv, "
                  "angles.txt, or angles*.npy/.mat) and open it again.")
    px = stack.pixel_size_A
    if px is None:
        kind = "tilt_series" if is_tilt else "volume"
        meta = {"aet": {"kind": kind, "pixel_size_A": None, "provenance": [source]}}
        if angles is not None:
            meta["aet"]["angles_deg"] = np.asarray(angles).tolist()
        return [(stack.data, {"name": name, "metadata": meta, "colormap": "gray"}, "image")]
    if is_tilt:
        if angles is None:
            return [(stack.data, {"name": name, "scale": (1.0, px, px), "colormap": "gray",
                                  "metadata": {"aet": {"kind": "tilt_series", "pixel_size_A": px,
                                                       "provenance": [source]}}}, "image")]
        return [layers.tilt_series_tuple(stack.data, angles, px, name=name, provenance=[source])]
    return [layers.volume_tuple(stack.data, px, name=name, provenance=[source])]


def _stack_with_images_first(stack, n_angles: int, angles_path):
    """The stack with one image per angle along axis 0: a stack whose last axis matches
    the angle count instead is in MATLAB layout ``(ny, nx, n)`` and is read again as such."""
    if stack.data.shape[0] != n_angles:
        for layout in ("matlab", "aet"):
            other = tilt_series.read_stack(stack.path, layout=layout, require_pixel_size=False)
            if other.data.shape[0] == n_angles:
                return other
        raise tilt_series.FileFormatError(
            f"{Path(angles_path).name}: has {n_angles} angles but no axis of "
            f"{stack.path.name} {tuple(stack.data.shape)} has {n_angles} images")
    return stack


#: Atom formats napari opens through us (.csv and .mat stay with napari's Points csv reader and
#: our stack reader; read them with ``coordinates.read_atoms``).
ATOM_READER_EXTENSIONS = (".xyz", ".extxyz", ".cif", ".pdb", ".lmp")


def get_atoms_reader(path):
    if isinstance(path, list) or Path(path).suffix.lower() not in ATOM_READER_EXTENSIONS:
        return None
    return read_atoms_layer


def read_atoms_layer(path):
    atoms = coordinates.read_atoms(path)
    source = layers.provenance_step("read", {"path": str(path)}, source=str(path))
    # Coordinates are physical; the voxel size of the matching volume is unknown here.
    data, kwargs, kind = layers.atoms_tuple(atoms, 1.0, name=Path(path).stem, provenance=[source])
    kwargs["metadata"]["aet"]["pixel_size_A"] = None
    return [(data, kwargs, kind)]


def write_image(path, data, meta):
    """Write an Image layer as MRC (voxel size from metadata/scale) or TIFF."""
    path = Path(path)
    aet = meta.get("metadata", {}).get("aet", {})
    px = aet.get("pixel_size_A") or float(np.asarray(meta.get("scale", [1.0]))[-1])
    if path.suffix.lower() == ".mrc":
        tilt_series.write_mrc(path, data, px)
    else:
        import tifffile

        from napari_aet.io.atomic import atomic_write

        with atomic_write(path) as tmp:
            tifffile.imwrite(tmp, np.asarray(data, np.float32), imagej=True,
                             resolution=(1.0 / px, 1.0 / px), metadata={"unit": "angstrom"})
    return [str(path)]


def write_atoms(path, data, meta):
    """Write a Points layer of atoms (data in Angstrom, 'element' feature).

    ``.xyz`` keeps positions and elements; ``.extxyz`` and ``.csv`` keep every feature;
    ``.mat`` (published AET layout) keeps them and the volume's pixel size.
    """
    from napari_aet.core.atoms import Atoms

    features = meta.get("features", {})
    columns = {k: np.asarray(v) for k, v in dict(features).items()}
    elements = columns.pop("element", np.full(len(data), "X"))
    scale = np.asarray(meta.get("scale", [1, 1, 1]), float)[-3:]
    extra = {}
    if Path(path).suffix.lower() == ".mat":
        extra["pixel_size_A"] = meta.get("metadata", {}).get("aet", {}).get("pixel_size_A")
    coordinates.write_atoms(path, Atoms(np.asarray(data) * scale, elements, columns), **extra)
    return [str(path)]
