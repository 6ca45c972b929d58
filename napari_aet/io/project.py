"""Project files: the whole working state in one HDF5 file (``NAME.aet.h5``).

Layout (format version 1)::

    /                    attrs: format, format_version, software versions, created (UTC)
    /layers/000, 001...  one group per layer, in stack order; attrs ``layer_type``,
                         ``name``, ``state`` (JSON of the layer's full napari state, arrays
                         referenced into the group's ``arrays/``), ``data_sha256``
        data             the layer data (Surface: ``data/0``, ``data/1``, ...), or none when
                         the layer is a tilt series stored by reference (attrs
                         ``source_path``, ``source_sha256`` of the file)
        arrays/, frames/ arrays and tables (features) of the state
    /curation/<k>        a curation session: the AtomModel (atoms, ids, removed atoms, undo
                         and redo history, reviewed items) plus the review queue and position
    /analysis, /parameters, /info   JSON documents (attrs ``json``)

Saving writes a temporary file beside the target and renames it over the old one
(:func:`napari_aet.io.atomic.atomic_write`), so a crash or a killed process leaves the
previous project intact. Loading checks every array against its SHA-256, so a damaged file
fails with a message instead of loading wrong data.
"""

from __future__ import annotations

import enum
import hashlib
import importlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from napari_aet.io.atomic import atomic_write

FORMAT = "napari-aet project"
FORMAT_VERSION = 1
#: Format versions this code reads (older ones are upgraded on load when listed here).
READABLE_VERSIONS = (1,)
SUFFIX = ".aet.h5"


class ProjectError(ValueError):
    """A project file that cannot be read: not a project, damaged, or from another version."""


@dataclass
class CurationState:
    """A curation session: the edit model, its review queue and where the user was.

    ``model`` is a :class:`napari_aet.core.curation.AtomModel` (undo/redo history and the
    reviewed keys included); ``items`` the review queue (list of ``ReviewItem``);
    ``item_index`` the current item; ``volume_layer`` the name of the volume used for snapping.
    """

    model: object
    items: list = field(default_factory=list)
    item_index: int = -1
    volume_layer: str = ""


@dataclass
class Project:
    """Everything a project file holds.

    ``layers``: napari layer data tuples ``(data, state, layer_type)`` in stack order (bottom
    first), restorable with ``napari.layers.Layer.create``; ``curation``: layer name ->
    :class:`CurationState`; ``analysis``: layer name -> analysis summary (JSON);
    ``parameters``: widget or pipeline parameters (JSON); ``info``: file attributes read back.
    """

    layers: list = field(default_factory=list)
    curation: dict = field(default_factory=dict)
    analysis: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def sha256_array(array) -> str:
    """SHA-256 of an array's dtype, shape and bytes (C order)."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B") if a.size else b"")
    return h.hexdigest()


def sha256_file(path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def software_versions() -> dict:
    """Versions of Python and the libraries a result depends on."""
    import platform

    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("napari_aet", "numpy", "scipy", "skimage", "h5py", "napari", "dask", "cupy"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        versions[name] = getattr(module, "__version__", "unknown")
    return versions


# --- encoding of napari layer state ------------------------------------------------------------

class _Store:
    """Writes arrays and tables of a layer's state under an HDF5 group, keyed by number."""

    def __init__(self, group: h5py.Group):
        self.group = group
        self.count = 0

    def array(self, value: np.ndarray) -> str:
        key = f"arrays/{self.count}"
        self.count += 1
        _write_array(self.group, key, value)
        return key

    def frame(self, frame) -> str:
        key = f"frames/{self.count}"
        self.count += 1
        g = self.group.create_group(key)
        g.attrs["columns"] = json.dumps([str(c) for c in frame.columns])
        _write_array(g, "index", np.asarray(frame.index))
        for i, column in enumerate(frame.columns):
            series = frame[column]
            name = f"c{i}"
            if str(series.dtype) == "category":
                cg = g.create_group(name)
                cg.attrs["kind"] = "category"
                cg.attrs["ordered"] = bool(series.cat.ordered)
                _write_array(cg, "codes", series.cat.codes.to_numpy())
                _write_array(cg, "categories", np.asarray(series.cat.categories))
            else:
                _write_array(g, name, series.to_numpy())
        return key


def _write_array(group: h5py.Group, key: str, value) -> None:
    """One array as a dataset; strings as UTF-8, objects as JSON text; checksum in attrs."""
    a = np.asarray(value)
    if a.dtype.kind == "O":
        if all(isinstance(v, str) for v in a.ravel()):
            d = group.create_dataset(key, data=a.astype(h5py.string_dtype()), dtype=h5py.string_dtype())
            d.attrs["kind"] = "str_object"
        else:
            d = group.create_dataset(key, data=json.dumps([_plain(v) for v in a.ravel()]))
            d.attrs["kind"] = "json_object"
            d.attrs["shape"] = a.shape
        return
    if a.dtype.kind == "U":
        d = group.create_dataset(key, data=a.astype(h5py.string_dtype()), dtype=h5py.string_dtype())
        d.attrs["kind"] = "str"
        d.attrs["width"] = a.dtype.itemsize // 4
        return
    compress = a.size > 4096 and a.dtype.kind in "iub"
    d = group.create_dataset(key, data=a, compression="lzf" if compress else None)
    d.attrs["kind"] = "array"
    d.attrs["sha256"] = sha256_array(a)


def _read_array(d: h5py.Dataset) -> np.ndarray:
    kind = d.attrs.get("kind", "array")
    if kind == "json_object":
        values = json.loads(d[()])
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out.reshape(tuple(d.attrs["shape"]))
    if kind in ("str", "str_object"):
        strings = d.asstr()[()]
        a = np.asarray(strings, dtype=object)
        if kind == "str":
            return a.astype(f"<U{max(int(d.attrs['width']), 1)}")
        return a
    a = d[()]
    a = np.asarray(a)
    if "sha256" in d.attrs and sha256_array(a) != d.attrs["sha256"]:
        raise ProjectError(f"{d.file.filename}: {d.name} is damaged (checksum mismatch)")
    return a


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _encode(value, store: _Store):
    """A JSON-ready description of ``value``; arrays and tables go into ``store``."""
    import pandas as pd

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return _encode(value.value, store)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return {"__ndarray__": store.array(value)}
    if isinstance(value, pd.DataFrame):
        return {"__frame__": store.frame(value)}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, store) for k, v in value.items()}
        return {"__items__": [[_encode(k, store), _encode(v, store)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, store) for v in value]}
    if isinstance(value, list):
        return [_encode(v, store) for v in value]
    if hasattr(value, "dict") and hasattr(value, "__fields__"):  # napari EventedModel
        cls = type(value)
        return {"__model__": f"{cls.__module__}:{cls.__qualname__}",
                "fields": _encode(dict(value.dict()), store)}
    if type(value).__module__.startswith("pint"):
        return str(value)
    raise TypeError(f"cannot store a {type(value).__name__} in a project file")


def _decode(value, group: h5py.Group):
    import pandas as pd

    if isinstance(value, list):
        return [_decode(v, group) for v in value]
    if not isinstance(value, dict):
        return value
    if "__ndarray__" in value:
        return _read_array(group[value["__ndarray__"]])
    if "__frame__" in value:
        g = group[value["__frame__"]]
        columns = json.loads(g.attrs["columns"])
        data = {}
        for i, name in enumerate(columns):
            item = g[f"c{i}"]
            if isinstance(item, h5py.Group):
                data[name] = pd.Categorical.from_codes(
                    _read_array(item["codes"]), categories=_read_array(item["categories"]),
                    ordered=bool(item.attrs["ordered"]))
            else:
                data[name] = _read_array(item)
        return pd.DataFrame(data, index=_read_array(g["index"]), columns=columns or None)
    if "__items__" in value:
        return {_hashable(_decode(k, group)): _decode(v, group) for k, v in value["__items__"]}
    if "__tuple__" in value:
        return tuple(_decode(v, group) for v in value["__tuple__"])
    if "__model__" in value:
        module, _, name = value["__model__"].partition(":")
        cls = importlib.import_module(module)
        for part in name.split("."):
            cls = getattr(cls, part)
        return cls(**_decode(value["fields"], group))
    return {k: _decode(v, group) for k, v in value.items()}


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


#: State entries that duplicate others (napari rebuilds them) and are not passed back.
_DERIVED = {"properties", "property_choices"}


def layer_tuple(layer) -> tuple:
    """``(data, state, layer_type)`` of a napari layer, for :func:`save_project`."""
    data, state, layer_type = layer.as_layer_data_tuple()
    return data, dict(state), layer_type


# --- writing --------------------------------------------------------------------------------------

def _reference_source(data, meta: dict) -> dict | None:
    """``{path, sha256}`` when a tilt series equals the file it was read from, else None."""
    from napari_aet.io.tilt_series import read_stack

    first = (meta.get("provenance") or [{}])[0]
    path = (first.get("params") or {}).get("path") if first.get("step") == "read" else None
    if not path or not Path(path).is_file():
        return None
    try:
        stack = read_stack(path, require_pixel_size=False)
    except (OSError, ValueError):
        return None
    if stack.data.shape == np.shape(data) and np.array_equal(np.asarray(stack.data), data):
        return {"path": str(Path(path).resolve()), "sha256": sha256_file(path)}
    return None


def _write_layer(group: h5py.Group, data, state: dict, layer_type: str, embed: bool):
    state = {k: v for k, v in state.items() if k not in _DERIVED}
    group.attrs["layer_type"] = layer_type
    group.attrs["name"] = str(state.get("name", layer_type))
    meta = (state.get("metadata") or {}).get("aet", {})
    reference = None
    if not embed and layer_type == "image" and meta.get("kind") == "tilt_series":
        reference = _reference_source(np.asarray(data), meta)
    if isinstance(data, (list, tuple)):
        group.attrs["data_parts"] = len(data)
        for i, part in enumerate(data):
            _write_array(group, f"data/{i}", np.asarray(part))
    elif reference is not None:
        group.attrs["source_path"] = reference["path"]
        group.attrs["source_sha256"] = reference["sha256"]
        group.attrs["data_sha256"] = sha256_array(np.asarray(data))
    else:
        _write_array(group, "data", np.asarray(data))
    group.attrs["state"] = json.dumps(_encode(state, _Store(group)))


def _write_json(h5: h5py.File, name: str, value) -> None:
    g = h5.create_group(name)
    g.attrs["json"] = json.dumps(value, default=_plain)


def save_project(path, layers, curation: dict | None = None, analysis: dict | None = None,
                 parameters: dict | None = None, embed_tilt_series: bool = True) -> Path:
    """Write a project file atomically and return its path.

    Parameters
    ----------
    path : target file (``.aet.h5`` is added when the name has no ``.h5`` suffix).
    layers : napari layers or layer data tuples ``(data, state, layer_type)``, bottom first.
    curation : layer name -> :class:`CurationState` (sessions to resume).
    analysis : layer name -> analysis summary (JSON-ready dict).
    parameters : widget or pipeline parameters (JSON-ready dict).
    embed_tilt_series : False stores a tilt series read from a file by reference (absolute
        path and SHA-256 of the file) when the layer still equals that file.
    """
    path = Path(path)
    if path.suffix.lower() != ".h5":
        path = path.with_name(path.name + SUFFIX)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist")
    tuples = [layer_tuple(x) if hasattr(x, "as_layer_data_tuple") else x for x in layers]
    names = [str(t[1].get("name", "")) for t in tuples]
    for name in (curation or {}):
        if name not in names:
            raise ValueError(f"curation session for {name!r}, which is not among the layers saved")
    with atomic_write(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["format"] = FORMAT
            h5.attrs["format_version"] = FORMAT_VERSION
            h5.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            h5.attrs["software"] = json.dumps(software_versions())
            lg = h5.create_group("layers")
            for i, (data, state, layer_type) in enumerate(tuples):
                _write_layer(lg.create_group(f"{i:03d}"), data, state, layer_type,
                             embed_tilt_series)
            cg = h5.create_group("curation")
            for k, (name, session) in enumerate((curation or {}).items()):
                _write_curation(cg.create_group(f"{k:03d}"), name, session)
            _write_json(h5, "analysis", analysis or {})
            _write_json(h5, "parameters", parameters or {})
    return path


def _item_to_json(item) -> dict:
    return {"kind": item.kind, "position": np.asarray(item.position, float).tolist(),
            "atom_index": item.atom_index, "score": float(item.score),
            "suggested_action": item.suggested_action, "detail": item.detail,
            "atom_id": item.atom_id, "partner_index": item.partner_index,
            "extra": item.extra}


def _write_curation(group: h5py.Group, name: str, session: CurationState) -> None:
    group.attrs["layer"] = name
    group.attrs["volume_layer"] = session.volume_layer or ""
    group.attrs["item_index"] = int(session.item_index)
    group.attrs["items"] = json.dumps([_item_to_json(it) for it in session.items], default=_plain)
    for key, value in session.model.to_state().items():
        _write_array(group, "model/" + key.replace("/", "\\"), value)


# --- reading ----------------------------------------------------------------------------------------

def _check_format(h5: h5py.File, path) -> int:
    if h5.attrs.get("format") != FORMAT:
        raise ProjectError(f"{path} is an HDF5 file but not a napari-aet project")
    version = int(h5.attrs.get("format_version", -1))
    if version not in READABLE_VERSIONS:
        newer = version > FORMAT_VERSION
        raise ProjectError(
            f"{path} is a napari-aet project of format version {version}, "
            + ("newer than this napari-aet reads (up to version "
               f"{FORMAT_VERSION}): upgrade napari-aet to open it" if newer else
               f"which this napari-aet no longer reads (it reads versions "
               f"{', '.join(map(str, READABLE_VERSIONS))})"))
    return version


def _read_layer(group: h5py.Group, project_dir: Path) -> tuple:
    layer_type = group.attrs["layer_type"]
    state = _decode(json.loads(group.attrs["state"]), group)
    if "data_parts" in group.attrs:
        data = tuple(_read_array(group[f"data/{i}"]) for i in range(int(group.attrs["data_parts"])))
    elif "source_path" in group.attrs:
        data = _read_reference(group, project_dir)
    else:
        data = _read_array(group["data"])
    return data, state, layer_type


def _read_reference(group: h5py.Group, project_dir: Path) -> np.ndarray:
    from napari_aet.io.tilt_series import read_stack

    path = Path(group.attrs["source_path"])
    if not path.is_file() and (project_dir / path.name).is_file():
        path = project_dir / path.name  # project and data moved together
    name = group.attrs["name"]
    if not path.is_file():
        raise ProjectError(f"layer {name!r} refers to {group.attrs['source_path']}, which is "
                           f"missing; put the file back (or beside the project) and open it again")
    if sha256_file(path) != group.attrs["source_sha256"]:
        raise ProjectError(f"layer {name!r}: {path} has changed since the project was saved "
                           "(SHA-256 differs)")
    data = np.asarray(read_stack(path, require_pixel_size=False).data)
    if sha256_array(data) != group.attrs["data_sha256"]:
        raise ProjectError(f"layer {name!r}: {path} no longer reads as the saved tilt series")
    return data


def _read_curation(group: h5py.Group) -> tuple[str, CurationState]:
    from napari_aet.core.curation import AtomModel, ReviewItem

    state = {key.replace("\\", "/"): _read_array(group["model"][key]) for key in group["model"]}
    model = AtomModel.from_state(state)
    items = []
    for d in json.loads(group.attrs["items"]):
        d["position"] = np.asarray(d["position"], float)
        items.append(ReviewItem(**d))
    return str(group.attrs["layer"]), CurationState(model, items, int(group.attrs["item_index"]),
                                                    str(group.attrs["volume_layer"]))


def read_info(path) -> dict:
    """The project's attributes and layer list without loading any data."""
    path = Path(path)
    with _open(path) as h5:
        return {**_file_info(h5, path),
                "layers": [{"name": g.attrs["name"], "layer_type": g.attrs["layer_type"],
                            "by_reference": "source_path" in g.attrs}
                           for _, g in sorted(h5["layers"].items())],
                "curation": [g.attrs["layer"] for _, g in sorted(h5["curation"].items())]}


def _file_info(h5: h5py.File, path: Path) -> dict:
    """Format version (checked), save time and software versions of an open project."""
    return {"format_version": _check_format(h5, path), "created": h5.attrs.get("created", ""),
            "software": json.loads(h5.attrs.get("software", "{}"))}


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise FileNotFoundError(f"project file {path} does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ProjectError(f"{path} is not a readable HDF5 file (damaged or truncated?): "
                           f"{exc}") from None


def load_project(path) -> Project:
    """Read a project file written by :func:`save_project`.

    Raises :class:`ProjectError` (a ``ValueError``) with a message naming the problem for a
    file that is not a project, from an unreadable format version, damaged, or whose
    referenced tilt series is missing or changed.
    """
    path = Path(path)
    with _open(path) as h5:
        info = {**_file_info(h5, path), "path": str(path)}
        try:
            layers = [_read_layer(g, path.parent) for _, g in sorted(h5["layers"].items())]
            curation = dict(_read_curation(g) for _, g in sorted(h5["curation"].items()))
            analysis = json.loads(h5["analysis"].attrs["json"])
            parameters = json.loads(h5["parameters"].attrs["json"])
        except (KeyError, json.JSONDecodeError) as exc:
            raise ProjectError(f"{path}: incomplete or damaged project ({exc})") from None
    return Project(layers, curation, analysis, parameters, info)


def is_project(path) -> bool:
    """True when ``path`` is an HDF5 file with the project format attribute."""
    try:
        with h5py.File(path, "r") as h5:
            return h5.attrs.get("format") == FORMAT
    except (OSError, ValueError):
        return False
