"""The shared layer stack: metadata schema, Angstrom scale, and how a step finds its input.

Every layer the plugin writes carries ``metadata['aet']``, a dict with at least

* ``kind``: one of :data:`KINDS`;
* ``pixel_size_A``: voxel/pixel size in Angstrom (the layer's ``scale`` is this value on
  every spatial axis, so points placed in the viewer are already in Angstrom);
* ``provenance``: a list of steps, each ``{"step": str, "params": dict, "source": str}``.

Tilt series also hold ``angles_deg`` (an ``(n, 3)`` list of Euler triplets) and
``shifts_px`` (``(n, 2)`` (dy, dx) shifts applied so far). A tilt series has no scale along
its first (angle) axis: ``scale = (1, px, px)``.

This module needs napari only for the layer types; the helpers that build layer data
tuples work without a viewer (readers and sample data use them).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from napari_aet.core.atoms import ELEMENT_COLORS, Atoms

KINDS = (
    "tilt_series",   # (n, ny, nx) images, angles in metadata
    "volume",        # (nz, ny, nx) reconstruction or simulated volume
    "support",       # Labels (nz, ny, nx): support mask for reconstruction
    "mask",          # Labels (n, ny, nx) or (ny, nx): particle mask for background work
    "atoms",         # Points (z, y, x) Angstrom, features per atom
    "overlay",       # derived display layer (phases, voids, review markers)
)

#: Point size (Angstrom) by element for atoms layers; others use DEFAULT_ATOM_SIZE_A.
ATOM_SIZE_A = {"O": 0.9, "Si": 1.1, "Zr": 1.4, "Fe": 1.3, "Pt": 1.4, "Pd": 1.4, "Au": 1.4}
DEFAULT_ATOM_SIZE_A = 1.2


def aet_metadata(kind: str, pixel_size_A: float, provenance=None, **extra) -> dict:
    """A ``metadata`` dict for a new layer (``{'aet': {...}}``), validated."""
    if kind not in KINDS:
        raise ValueError(f"unknown layer kind {kind!r}; expected one of {KINDS}")
    if pixel_size_A is None or not np.isfinite(pixel_size_A) or pixel_size_A <= 0:
        raise ValueError(f"pixel size must be a positive number of Angstrom; got {pixel_size_A}")
    meta = {"kind": kind, "pixel_size_A": float(pixel_size_A),
            "provenance": list(provenance or [])}
    for key, value in extra.items():
        meta[key] = value.tolist() if isinstance(value, np.ndarray) else value
    return {"aet": meta}


def provenance_step(step: str, params: dict | None = None, source: str = "") -> dict:
    """One provenance entry (JSON-friendly)."""
    clean = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in (params or {}).items()}
    return {"step": step, "params": clean, "source": source}


def aet_meta(layer) -> dict:
    """The ``metadata['aet']`` dict of a layer (empty dict when the layer has none)."""
    return layer.metadata.get("aet", {}) if hasattr(layer, "metadata") else {}


def kind_of(layer) -> str | None:
    return aet_meta(layer).get("kind")


def pixel_size_of(layer) -> float:
    """Pixel size (Angstrom) of a layer, from its metadata or its scale; raises if unknown."""
    px = aet_meta(layer).get("pixel_size_A")
    if px is None:
        scale = np.asarray(layer.scale, float)
        if not np.allclose(scale[-1], 1.0):
            px = float(scale[-1])
    if px is None:
        raise ValueError(
            f"layer {layer.name!r} has no pixel size: enter it in the Align widget's "
            "'pixel size' row (or set metadata['aet']['pixel_size_A'] or the layer's scale "
            "in Angstrom)"
        )
    return float(px)


def angles_of(layer) -> np.ndarray:
    """``(n, 3)`` Euler angles (degrees) of a tilt-series layer; raises with the layer name."""
    angles = aet_meta(layer).get("angles_deg")
    if angles is None:
        raise ValueError(f"layer {layer.name!r} has no tilt angles: open the stack with its "
                         "angles file beside it (same name, angles.txt/.tlt/.csv, or a file "
                         "named angles*.npy/.mat), or set metadata['aet']['angles_deg']")
    angles = np.asarray(angles, float)
    if angles.ndim != 2 or angles.shape != (layer.data.shape[0], 3):
        raise ValueError(
            f"layer {layer.name!r}: {angles.shape[0] if angles.ndim else 0} angles for "
            f"{layer.data.shape[0]} images"
        )
    return angles


def find_layers(viewer, kind: str) -> list:
    """Layers of the viewer with ``metadata['aet']['kind'] == kind``, newest first."""
    return [layer for layer in reversed(list(viewer.layers)) if kind_of(layer) == kind]


def find_layer(viewer, kind: str):
    """The selected layer if it has ``kind``, else the newest layer of that kind, else None."""
    active = viewer.layers.selection.active
    if active is not None and kind_of(active) == kind:
        return active
    found = find_layers(viewer, kind)
    return found[0] if found else None


def unique_name(viewer, name: str) -> str:
    """``name`` if free in the viewer, else ``name [2]``, ``name [3]``, ..."""
    existing = {layer.name for layer in viewer.layers}
    if name not in existing:
        return name
    k = 2
    while f"{name} [{k}]" in existing:
        k += 1
    return f"{name} [{k}]"


# --- layer data tuples (readers, sample data, widgets) ------------------------------------

def tilt_series_tuple(tilt_series: np.ndarray, angles_deg, pixel_size_A: float,
                      name: str = "tilt series", provenance=None, shifts_px=None,
                      **extra) -> tuple:
    """``(data, kwargs, 'image')`` for a tilt series ``(n, ny, nx)``."""
    from napari_aet.core.geometry import as_euler_angles

    tilt_series = np.asarray(tilt_series)
    angles = as_euler_angles(angles_deg)
    if tilt_series.ndim != 3:
        raise ValueError(f"a tilt series must be (n, ny, nx); got shape {tilt_series.shape}")
    if len(angles) != tilt_series.shape[0]:
        raise ValueError(f"{len(angles)} angles for {tilt_series.shape[0]} images")
    shifts = np.zeros((len(angles), 2)) if shifts_px is None else np.asarray(shifts_px, float)
    meta = aet_metadata("tilt_series", pixel_size_A, provenance, angles_deg=angles,
                        shifts_px=shifts, **extra)
    kwargs = {"name": name, "metadata": meta, "scale": (1.0, pixel_size_A, pixel_size_A),
              "colormap": "gray"}
    return (tilt_series, kwargs, "image")


def volume_tuple(volume: np.ndarray, pixel_size_A: float, name: str = "volume",
                 provenance=None, **extra) -> tuple:
    """``(data, kwargs, 'image')`` for a volume ``(nz, ny, nx)`` with atom-friendly rendering."""
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"a volume must be (nz, ny, nx); got shape {volume.shape}")
    kwargs = {"name": name, "metadata": aet_metadata("volume", pixel_size_A, provenance, **extra),
              "scale": (pixel_size_A,) * 3, "colormap": "gray", "rendering": "attenuated_mip",
              "attenuation": 0.2}
    return (volume, kwargs, "image")


def atom_colors(elements) -> np.ndarray:
    """RGBA colours ``(n, 4)`` by element."""
    from matplotlib.colors import to_rgba

    lut = {e: to_rgba(ELEMENT_COLORS.get(e, "#c7c7cc")) for e in np.unique(elements)}
    return np.array([lut[e] for e in elements]).reshape(-1, 4)


def atom_sizes(elements) -> np.ndarray:
    return np.array([ATOM_SIZE_A.get(str(e), DEFAULT_ATOM_SIZE_A) for e in elements])


def atoms_tuple(atoms: Atoms, pixel_size_A: float, name: str = "atoms", provenance=None,
                **extra) -> tuple:
    """``(data, kwargs, 'points')`` for an atom model: Angstrom data, ``scale`` 1.

    Points data are already physical (Angstrom), so the layer's scale is 1; the volume's
    pixel size is kept in metadata. Features: ``element`` plus every atom feature.
    """
    import pandas as pd

    features = pd.DataFrame({"element": atoms.elements.astype(str)})
    for key, values in atoms.features.items():
        features[key] = values
    kwargs = {
        "name": name,
        "metadata": aet_metadata("atoms", pixel_size_A, provenance, **extra),
        "features": features,
        "face_color": atom_colors(atoms.elements),
        "border_width": 0,
        "shading": "spherical",
        "size": atom_sizes(atoms.elements),
        "projection_mode": "rescale_spherical",  # atoms cut by the slice plane shrink with depth
    }
    return (atoms.positions.copy(), kwargs, "points")


def atoms_from_layer(layer) -> Atoms:
    """An :class:`Atoms` model from a Points layer (data in Angstrom, 'element' feature)."""
    data = np.asarray(layer.data, float)
    if data.ndim != 2 or data.shape[1] != 3:
        raise ValueError(f"layer {layer.name!r} is not a 3D points layer (shape {data.shape})")
    scale = np.asarray(layer.scale, float)[-3:]
    positions = data * scale
    feats = layer.features
    if "element" in feats:
        elements = feats["element"].astype(str).to_numpy()
    else:
        elements = np.full(len(data), "X")
    features = {c: feats[c].to_numpy() for c in feats.columns if c != "element"}
    return Atoms(positions, elements, features)


def add_layer(viewer, layer_tuple: tuple, replace: Any = None):
    """Add a layer data tuple to the viewer with a unique name and return the new layer.

    When ``replace`` is a layer of the viewer, its data, metadata and features are updated
    in place instead (a step updating its own output layer).
    """
    data, kwargs, layer_type = layer_tuple
    if replace is not None and replace in viewer.layers:
        replace.data = data
        replace.metadata = kwargs.get("metadata", {})
        if layer_type == "points":
            for key in ("features", "face_color", "size"):
                if key in kwargs:
                    setattr(replace, key, kwargs[key])
        return replace
    kwargs = dict(kwargs)
    kwargs["name"] = unique_name(viewer, kwargs.get("name", layer_type))
    add = getattr(viewer, f"add_{layer_type}")
    layer = add(data, **kwargs)
    if kind_of(layer) == "volume":
        show_volume(viewer, layer)
    return layer


_WATCHED: weakref.WeakSet = weakref.WeakSet()  # viewers whose axes follow name_axes
_AXIS_NAMES = (("-3", "-2", "-1"), ("tilt", "y", "x"), ("z", "y", "x"))


def name_axes(viewer, event=None) -> None:
    """Name the sliders' axes by what is shown: ``tilt, y, x`` for a tilt series alone,
    ``z, y, x`` once a volume or atoms are visible (instead of napari's -3, -2, -1).

    Labels a user set differently are left alone."""
    labels = list(viewer.dims.axis_labels)
    if len(labels) < 3 or tuple(labels[-3:]) not in _AXIS_NAMES:
        return
    spatial = any(layer.visible and kind_of(layer) in ("volume", "atoms", "support")
                  for layer in viewer.layers)
    series = any(kind_of(layer) == "tilt_series" and layer.visible for layer in viewer.layers)
    names = ("z", "y", "x") if spatial or not series else ("tilt", "y", "x")
    if tuple(labels[-3:]) != names:
        viewer.dims.axis_labels = labels[:-3] + list(names)


def watch_axes(viewer) -> None:
    """Keep :func:`name_axes` true as layers are added, removed or shown (once per viewer)."""
    viewer = getattr(viewer, "__wrapped__", viewer)  # plugin widgets get a public-only proxy
    if viewer in _WATCHED:
        name_axes(viewer)
        return
    _WATCHED.add(viewer)
    viewer.layers.events.inserted.connect(lambda e: name_axes(viewer))
    viewer.layers.events.removed.connect(lambda e: name_axes(viewer))
    viewer.layers.events.inserted.connect(
        lambda e: e.value.events.visible.connect(lambda _: name_axes(viewer)))
    for layer in viewer.layers:
        layer.events.visible.connect(lambda _: name_axes(viewer))
    name_axes(viewer)


def show_volume(viewer, layer) -> None:
    """Show a new volume at its centre slice, with the tilt series hidden.

    A tilt series ``(n, ny, nx)`` and a volume ``(nz, ny, nx)`` share napari's first axis
    (projection index vs depth): left visible, the series draws a grey slab in 3D and sets
    the slider's range. Hiding it, naming the axes z, y, x (instead of napari's -3, -2, -1)
    and moving the slider to the volume's centre shows the reconstruction as meant.
    """
    for other in viewer.layers:
        if other is not layer and kind_of(other) == "tilt_series":
            other.visible = False
    name_axes(viewer)
    nd = viewer.dims.ndim
    centre = np.asarray(layer.data_to_world(np.array(layer.data.shape) // 2), float)[-3:]
    for axis in range(nd - 3, nd):
        if axis not in viewer.dims.displayed:
            viewer.dims.set_point(axis, centre[axis - (nd - 3)])
