"""Project files: the whole working state in one HDF5 file (``NAME.aet.h5``).

Layout (format version 2; version 1 lacks ``attrs_sha256`` and string checksums)::

    /                    attrs: format, format_version, software versions, created (UTC)
    /layers/000, 001...  one group per layer, in stack order; attrs ``layer_type``,
                         ``name``, ``state`` (JSON of the layer's full napari state, arrays
                         referenced into the group's ``arrays/``), ``data_sha256``,
                         ``attrs_sha256`` (of the other attributes)
        data             the layer data (Surface: ``data/0``, ``data/1``, ...), or none when
                         the layer is a tilt series stored by reference (attrs
                         ``source_path``, ``source_sha256`` of the file)
        arrays/, frames/ arrays and tables (features) of the state
    /curation/<k>        a curation session: the AtomModel (atoms, ids, removed atoms, undo
                         and redo history, reviewed items) plus the review queue and position
    /analysis, /parameters, /info   JSON documents (attrs ``json``)

Saving writes a temporary file beside the target and renames it over the old one
(:func:`napari_aet.io.atomic.atomic_write`), so a crash or a killed process leaves the
previous project intact. Loading checks every array and string table against its SHA-256 and
(format version 2) the attributes of every layer, curation session and JSON document against
``attrs_sha256``; it rebuilds napari state from plain values and an allow-list of napari
colormap models only, never importing or calling anything a file names. A damaged or hostile
file fails with a :class:`ProjectError` naming the file instead of loading wrong data.
"""

from __future__ import annotations

import enum
import hashlib
import importlib
import inspect
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from napari_aet.io.atomic import atomic_write

FORMAT = "napari-aet project"
FORMAT_VERSION = 2
#: Format versions this code reads (older ones are upgraded on load when listed here).
READABLE_VERSIONS = (1, 2)
#: napari layer types a project may hold.
LAYER_TYPES = ("image", "labels", "points", "shapes", "surface", "vectors", "tracks")
#: The only classes a project file may name (``__model__``): napari colormaps.
MODELS = {f"napari.utils.colormaps.colormap:{name}": name for name in (
    "Colormap", "CyclicLabelColormap", "DirectLabelColormap")}
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
            d.attrs["sha256"] = _sha256_strings(a)
        else:
            text = json.dumps([_plain(v) for v in a.ravel()])
            d = group.create_dataset(key, data=text)
            d.attrs["kind"] = "json_object"
            d.attrs["shape"] = a.shape
            d.attrs["sha256"] = _sha256_text(text)
        return
    if a.dtype.kind == "U":
        d = group.create_dataset(key, data=a.astype(h5py.string_dtype()), dtype=h5py.string_dtype())
        d.attrs["kind"] = "str"
        d.attrs["width"] = a.dtype.itemsize // 4
        d.attrs["sha256"] = _sha256_strings(a)
        return
    compress = a.size > 4096 and a.dtype.kind in "iub"
    d = group.create_dataset(key, data=a, compression="lzf" if compress else None)
    d.attrs["kind"] = "array"
    d.attrs["sha256"] = sha256_array(a)


def _sha256_text(text) -> str:
    return hashlib.sha256(str(text).encode("utf-8", "surrogatepass")).hexdigest()


def _sha256_strings(a) -> str:
    """SHA-256 of an array of strings: its shape and the strings as JSON."""
    a = np.asarray(a)
    return _sha256_text(f"{a.shape}" + json.dumps([str(v) for v in a.ravel()]))


def _read_array(d: h5py.Dataset, checked: bool = False) -> np.ndarray:
    """A dataset written by :func:`_write_array`, checked against its SHA-256 (required
    when ``checked``, i.e. from format version 2 on)."""
    if not isinstance(d, h5py.Dataset):
        raise ProjectError(f"{d.file.filename}: {d.name} is not a dataset")
    from napari_aet.io.tilt_series import physical_memory_bytes

    if d.size * d.dtype.itemsize > physical_memory_bytes():
        raise ProjectError(f"{d.file.filename}: {d.name} claims {d.shape} x {d.dtype.itemsize} "
                           "bytes, more than this machine's memory (damaged?)")
    kind = d.attrs.get("kind", "array")
    expected = d.attrs.get("sha256")
    if expected is None and checked:
        raise ProjectError(f"{d.file.filename}: {d.name} has no checksum (damaged)")
    if kind == "json_object":
        text = d.asstr()[()]
        got = _sha256_text(text)
        values = json.loads(text)
        out = np.empty(len(values), dtype=object)
        out[:] = values
        a = out.reshape(tuple(int(n) for n in d.attrs["shape"]))
    elif kind in ("str", "str_object"):
        a = np.asarray(d.asstr()[()], dtype=object)
        got = _sha256_strings(a)
        if kind == "str":
            a = a.astype(f"<U{max(int(d.attrs['width']), 1)}")
    elif kind == "array":
        a = np.asarray(d[()])
        got = sha256_array(a) if expected is not None else None
    else:
        raise ProjectError(f"{d.file.filename}: {d.name} has an unknown kind {kind!r}")
    if expected is not None and got != expected:
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


_STORE_KEY = re.compile(r"(arrays|frames)/\d+")


def _stored(group: h5py.Group, key):
    if not isinstance(key, str) or not _STORE_KEY.fullmatch(key) or key not in group:
        raise ProjectError(f"{group.file.filename}: {group.name} refers to {key!r}, which it "
                           "does not hold (damaged)")
    return group[key]


def _decode(value, group: h5py.Group, checked: bool):
    """Rebuild a value written by :func:`_encode`: plain values, arrays, tables and the
    napari models of :data:`MODELS`; nothing else is imported or called."""
    import pandas as pd

    if isinstance(value, list):
        return [_decode(v, group, checked) for v in value]
    if not isinstance(value, dict):
        return value
    if "__ndarray__" in value:
        return _read_array(_stored(group, value["__ndarray__"]), checked)
    if "__frame__" in value:
        g = _stored(group, value["__frame__"])
        columns = json.loads(g.attrs["columns"])
        data = {}
        for i, name in enumerate(columns):
            item = g[f"c{i}"]
            if isinstance(item, h5py.Group):
                data[name] = pd.Categorical.from_codes(
                    _read_array(item["codes"], checked),
                    categories=_read_array(item["categories"], checked),
                    ordered=bool(item.attrs["ordered"]))
            else:
                data[name] = _read_array(item, checked)
        return pd.DataFrame(data, index=_read_array(g["index"], checked), columns=columns or None)
    if "__items__" in value:
        return {_hashable(_decode(k, group, checked)): _decode(v, group, checked)
                for k, v in value["__items__"]}
    if "__tuple__" in value:
        return tuple(_decode(v, group, checked) for v in value["__tuple__"])
    if "__model__" in value:
        name = MODELS.get(value["__model__"])
        if name is None:
            raise ProjectError(f"{group.file.filename}: {group.name} names the class "
                               f"{str(value['__model__'])[:80]!r}, which a project may not "
                               "hold (damaged or hostile file; nothing was run)")
        from napari.utils.colormaps import colormap

        fields = _decode(value["fields"], group, checked)
        if not isinstance(fields, dict):
            raise ProjectError(f"{group.file.filename}: {group.name} has a damaged {name}")
        return getattr(colormap, name)(**fields)
    return {k: _decode(v, group, checked) for k, v in value.items()}


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
    _seal(group)


#: Attributes covered by a group's ``attrs_sha256``.
_SEALED = ("layer_type", "name", "state", "data_parts", "source_path", "source_sha256",
           "data_sha256", "layer", "volume_layer", "item_index", "items", "json")


def _attrs_sha256(group) -> str:
    values = {k: _plain(group.attrs[k]) for k in _SEALED if k in group.attrs}
    return _sha256_text(json.dumps(values, sort_keys=True))


def _seal(group) -> None:
    group.attrs["attrs_sha256"] = _attrs_sha256(group)


def _check_seal(group, checked: bool) -> None:
    if not checked:
        return
    if group.attrs.get("attrs_sha256") != _attrs_sha256(group):
        raise ProjectError(f"{group.file.filename}: {group.name} is damaged (attribute "
                           "checksum mismatch)")


def _write_json(h5: h5py.File, name: str, value) -> None:
    g = h5.create_group(name)
    g.attrs["json"] = json.dumps(value, default=_plain)
    _seal(g)


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
    _seal(group)


# --- reading ----------------------------------------------------------------------------------------

def _check_format(h5: h5py.File, path) -> int:
    if not isinstance(h5.attrs.get("format"), str) or h5.attrs.get("format") != FORMAT:
        raise ProjectError(f"{path} is an HDF5 file but not a napari-aet project")
    try:
        version = int(h5.attrs.get("format_version", -1))
    except (TypeError, ValueError):
        version = -1
    if version not in READABLE_VERSIONS:
        newer = version > FORMAT_VERSION
        raise ProjectError(
            f"{path} is a napari-aet project of format version {version}, "
            + ("newer than this napari-aet reads (up to version "
               f"{FORMAT_VERSION}): upgrade napari-aet to open it" if newer else
               f"which this napari-aet no longer reads (it reads versions "
               f"{', '.join(map(str, READABLE_VERSIONS))})"))
    return version


def _read_layer(group: h5py.Group, project_dir: Path, checked: bool) -> tuple:
    _check_seal(group, checked)
    layer_type = str(group.attrs["layer_type"])
    if layer_type not in LAYER_TYPES:
        raise ProjectError(f"{group.file.filename}: {group.name} has an unknown layer type "
                           f"{layer_type[:40]!r}")
    state = _decode(json.loads(group.attrs["state"]), group, checked)
    import napari.layers

    accepted = inspect.signature(getattr(napari.layers, layer_type.title()).__init__).parameters
    if not isinstance(state, dict) or set(state) - set(accepted):
        extra = sorted(set(state) - set(accepted)) if isinstance(state, dict) else "not a dict"
        raise ProjectError(f"{group.file.filename}: {group.name} has a damaged state ({extra})")
    if "data_parts" in group.attrs:
        data = tuple(_read_array(group[f"data/{i}"], checked)
                     for i in range(int(group.attrs["data_parts"])))
    elif "source_path" in group.attrs:
        data = _read_reference(group, project_dir)
    else:
        data = _read_array(group["data"], checked)
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


def _read_curation(group: h5py.Group, checked: bool) -> tuple[str, CurationState]:
    from napari_aet.core.curation import AtomModel, ReviewItem

    _check_seal(group, checked)
    state = {key.replace("\\", "/"): _read_array(group["model"][key], checked)
             for key in group["model"]}
    model = AtomModel.from_state(state)
    items = []
    for d in json.loads(group.attrs["items"]):
        d["position"] = np.asarray(d["position"], float)
        items.append(ReviewItem(**d))
    return str(group.attrs["layer"]), CurationState(model, items, int(group.attrs["item_index"]),
                                                    str(group.attrs["volume_layer"]))


def _read_json(h5: h5py.File, name: str, checked: bool):
    _check_seal(h5[name], checked)
    value = json.loads(h5[name].attrs["json"])
    if not isinstance(value, dict):
        raise ProjectError(f"{h5.filename}: /{name} is not a JSON object (damaged)")
    return value


def read_info(path) -> dict:
    """The project's attributes and layer list without loading any data."""
    path = Path(path)
    with _open(path) as h5:
        info = _file_info(h5, path)
        try:
            return {**info,
                    "layers": [{"name": str(g.attrs["name"]),
                                "layer_type": str(g.attrs["layer_type"]),
                                "by_reference": "source_path" in g.attrs}
                               for _, g in sorted(h5["layers"].items())],
                    "curation": [str(g.attrs["layer"]) for _, g in sorted(h5["curation"].items())]}
        except Exception as exc:
            raise ProjectError(f"{path}: incomplete or damaged project "
                               f"({type(exc).__name__}: {str(exc)[:200]})") from None


def _file_info(h5: h5py.File, path: Path) -> dict:
    """Format version (checked), save time and software versions of an open project."""
    version = _check_format(h5, path)
    try:
        return {"format_version": version, "created": str(h5.attrs.get("created", "")),
                "software": dict(json.loads(h5.attrs.get("software", "{}")))}
    except (TypeError, ValueError) as exc:
        raise ProjectError(f"{path}: damaged project attributes ({exc})") from None


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

    Raises :class:`ProjectError` (a ``ValueError``) with a message naming the file and the
    problem for a file that is not a project, from an unreadable format version, damaged or
    hostile (checksums, allow-listed models, layer types and state entries), or whose
    referenced tilt series is missing or changed.
    """
    path = Path(path)
    with _open(path) as h5:
        info = {**_file_info(h5, path), "path": str(path)}
        checked = info["format_version"] >= 2
        try:
            layers = [_read_layer(g, path.parent, checked)
                      for _, g in sorted(h5["layers"].items())]
            curation = dict(_read_curation(g, checked) for _, g in sorted(h5["curation"].items()))
            analysis = _read_json(h5, "analysis", checked)
            parameters = _read_json(h5, "parameters", checked)
        except ProjectError:
            raise
        except Exception as exc:  # anything a damaged file can raise, as one clear message
            raise ProjectError(f"{path}: incomplete or damaged project "
                               f"({type(exc).__name__}: {str(exc)[:200]})") from None
    return Project(layers, curation, analysis, parameters, info)


def is_project(path) -> bool:
    """True when ``path`` is an HDF5 file with the project format attribute."""
    try:
        with h5py.File(path, "r") as h5:
            return h5.attrs.get("format") == FORMAT
    except (OSError, ValueError):
        return False
