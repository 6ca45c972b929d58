"""Run configuration: a TOML (or run.json) file checked completely before any work starts.

A configuration has top-level settings, one table per step and one ``[[dataset]]`` entry per
data set (a data set may override any step table with a sub-table, e.g.
``[dataset.reconstruct]``)::

    output = "results"                 # folder; relative paths are relative to this file
    scheduler = "local"                # optional: reconstruct on Dask ("local" or an address)

    [align]
    projection_matching_rounds = 2

    [reconstruct]
    method = "resire"
    iterations = 200

    [[dataset]]
    name = "silica"
    tilt_series = "data/tilt_series.mrc"
    angles = "data/angles.tlt"
    pixel_size_A = 0.35                # or "35 pm", "0.035 nm"
    preset = "SiO2"
    truth = "data/truth_atoms.xyz"     # optional: score the traced atoms against known ones

A key's suffix names its unit: ``_A`` Angstrom, ``_A3`` cubic Angstrom, ``_deg`` degrees,
``_px`` pixels. A number is taken in that unit; a string with a unit is converted
(``"0.35 nm"`` -> 3.5 A) and a string with a unit of the wrong kind is an error. Every
problem (unknown key, missing file, wrong type, wrong unit, implausible value) is collected
and reported together by :class:`ConfigError`.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from napari_aet.core.align import AlignParameters
from napari_aet.core.analysis import ANALYSES, AnalysisParameters
from napari_aet.core.parameters import UNIT_SUFFIXES, Parameter, parameters
from napari_aet.core.preprocess import BACKGROUND_MODES, PreprocessParameters
from napari_aet.core.reconstruct import ReconstructParameters
from napari_aet.core.scoring import ScoreParameters
from napari_aet.core.trace import TraceParameters

STEPS = ("preprocess", "align", "reconstruct", "trace", "analysis", "export", "score")
EXPORT_FORMATS = ("xyz", "extxyz", "csv", "mat", "cif", "pdb", "lmp")

_LENGTH = {"a": 1.0, "å": 1.0, "angstrom": 1.0, "pm": 0.01, "nm": 10.0}
_VOLUME = {"a3": 1.0, "a^3": 1.0, "å3": 1.0, "å^3": 1.0, "nm3": 1000.0, "nm^3": 1000.0}
_ANGLE = {"deg": 1.0, "degree": 1.0, "degrees": 1.0, "°": 1.0, "rad": 57.29577951308232,
          "mrad": 0.05729577951308232}
_UNITS = {"_A": ("a length", _LENGTH), "_A3": ("a volume", _VOLUME), "_deg": ("an angle", _ANGLE)}


class ConfigError(ValueError):
    """Every problem found in a configuration, one per line."""

    def __init__(self, source, problems: list[str]):
        self.problems = list(problems)
        head = f"{source}: {len(problems)} problem{'s' if len(problems) > 1 else ''} in the configuration"
        super().__init__(head + "\n" + "\n".join(f"  - {p}" for p in problems))


# --- the schema: key -> (type, default, check) ------------------------------------------------

def _plausible_length(lo, hi, what):
    def check(v):
        if not lo <= v <= hi:
            return (f"{v:g} A is not a plausible {what} ({lo:g}-{hi:g} A); give another unit "
                    f"if this is not Angstrom (e.g. \"{v:g} pm\" or \"{v:g} nm\")")
        return None
    return check


def _entry(p: Parameter, overrides: bool = False) -> tuple:
    """The schema entry of a step parameter: its type (or None: with ``overrides`` the
    preset decides), default and range check (lengths with the hint to give a unit)."""
    types = (p.type, type(None)) if p.optional or overrides else p.type
    default = None if overrides else copy.deepcopy(p.default)
    suffix = UNIT_SUFFIXES.get(p.unit)
    if p.unit == "A" and p.min is not None and p.max is not None:
        check = _plausible_length(p.min, p.max, p.name.removesuffix(suffix).replace("_", " "))
    else:
        check = p.check
    return types, default, check


def _step_table(cls, overrides: bool = False) -> dict:
    """Schema entries of every field of a step's parameter dataclass."""
    return {p.name: _entry(p, overrides) for p in parameters(cls)}


SCHEMA: dict[str, dict] = {
    "": {  # top level
        "output": (str, "results", None),
        "scheduler": ((str, type(None)), None, None),
        "embed_tilt_series": (bool, True, None),
        "project": (bool, True, None),
    },
    "preprocess": {
        **_step_table(PreprocessParameters),
        # true and false as "on" and "off" (configurations written before the modes)
        "background": ((bool, str), PreprocessParameters.background,
                       lambda v: None if v in (True, False, *BACKGROUND_MODES)
                       else 'must be true, false or "auto" (or "on", "off")'),
    },
    "align": {"enabled": (bool, True, None), **_step_table(AlignParameters)},
    "reconstruct": _step_table(ReconstructParameters),
    "trace": {
        "preset": ((str, type(None)), None, None),
        "elements": ((list, str, type(None)), None, None),
        **_step_table(TraceParameters, overrides=True),
    },
    "analysis": {
        "enabled": (bool, True, None),
        "analyses": (list, list(ANALYSES), None),
        "figures": (bool, True, None),
        **_step_table(AnalysisParameters, overrides=True),
    },
    "export": {
        "formats": (list, ["xyz", "extxyz", "csv", "mat"], None),
        "figures": (bool, True, None),
        "aligned_series": (bool, True, None),
    },
    "score": _step_table(ScoreParameters),
}

DATASET_KEYS = {
    "name": (str, None, None),
    "tilt_series": (str, None, None),
    "angles": ((str, type(None)), None, None),
    "pixel_size_A": ((float, type(None)), None, _plausible_length(0.05, 5, "pixel size")),
    "preset": (str, "generic", None),
    "truth": ((str, type(None)), None, None),
}


@dataclass
class Dataset:
    """One data set of a run, with its fully resolved step parameters."""

    name: str
    tilt_series: Path
    angles: Path | None
    pixel_size_A: float | None
    preset: str
    truth: Path | None
    steps: dict = field(default_factory=dict)   # step -> dict of parameters


@dataclass
class RunConfig:
    """A validated run: top-level settings and the data sets in order."""

    output: Path
    scheduler: str | None
    embed_tilt_series: bool
    project: bool
    datasets: list[Dataset]
    source: str = ""

    def to_dict(self) -> dict:
        """The resolved configuration (absolute paths, every default filled in) as JSON."""
        return {
            "output": str(self.output), "scheduler": self.scheduler,
            "embed_tilt_series": self.embed_tilt_series, "project": self.project,
            "dataset": [{"name": d.name, "tilt_series": str(d.tilt_series),
                         "angles": str(d.angles) if d.angles else None,
                         "pixel_size_A": d.pixel_size_A, "preset": d.preset,
                         "truth": str(d.truth) if d.truth else None, **copy.deepcopy(d.steps)}
                        for d in self.datasets],
        }


# --- checking ------------------------------------------------------------------------------------

def _unit_value(key: str, value, problems: list[str], where: str):
    """Convert a ``"number unit"`` string by the key's unit suffix; numbers pass through."""
    if not isinstance(value, str):
        return value
    for suffix, (kind, table) in sorted(_UNITS.items(), key=lambda kv: -len(kv[0])):
        if key.endswith(suffix):
            m = re.fullmatch(r"\s*([-+0-9.eE]+)\s*(\S+)\s*", value)
            if not m:
                problems.append(f"{where}{key} = {value!r}: expected a number or \"number unit\"")
                return None
            unit = m.group(2).lower()
            if unit not in table:
                problems.append(f"{where}{key} = {value!r}: {m.group(2)!r} is not {kind} unit "
                                f"(use {', '.join(sorted({u for u in table if u.isascii()}))})")
                return None
            try:
                return float(m.group(1)) * table[unit]
            except ValueError:
                problems.append(f"{where}{key} = {value!r}: {m.group(1)!r} is not a number")
                return None
    return value


def _check_table(table: dict, schema: dict, where: str, problems: list[str],
                 allow: tuple = ()) -> dict:
    """Values of ``table`` checked against ``schema`` (unknown keys reported, units converted)."""
    out = {}
    for key, value in table.items():
        if key in allow:
            continue
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema) + list(allow), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"unknown key {where}{key}{hint}")
            continue
        types, _, check = schema[key]
        types = types if isinstance(types, tuple) else (types,)
        value = _unit_value(key, value, problems, where)
        if value is None and table[key] is not None:
            continue  # unit problem already reported
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join("none" if t is type(None) else t.__name__ for t in types)
            problems.append(f"{where}{key} = {value!r}: expected {names}")
            continue
        if check is not None and value is not None:
            message = check(value)
            if message:
                problems.append(f"{where}{key} = {value!r}: {message}")
                continue
        out[key] = value
    return out


def _defaults(section: str) -> dict:
    return {k: copy.deepcopy(default) for k, (_, default, _) in SCHEMA[section].items()}


def _check_lists(step: str, params: dict, where: str, problems: list[str]):
    if step == "analysis":
        bad = [a for a in params.get("analyses", []) if a not in ANALYSES]
        if bad:
            problems.append(f"{where}analysis.analyses: unknown {', '.join(map(str, bad))} "
                            f"(known: {', '.join(ANALYSES)})")
    if step == "export":
        bad = [f for f in params.get("formats", []) if f not in EXPORT_FORMATS]
        if bad:
            problems.append(f"{where}export.formats: unknown {', '.join(map(str, bad))} "
                            f"(known: {', '.join(EXPORT_FORMATS)})")


def _resolve(path_text: str, base: Path) -> Path:
    path = Path(path_text).expanduser()
    return path if path.is_absolute() else (base / path)


def parse_config(raw: dict, base: Path, source: str = "configuration") -> RunConfig:
    """Check a configuration dict and resolve it; raises :class:`ConfigError` listing every problem."""
    from napari_aet.core.presets import load_preset

    problems: list[str] = []
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the configuration must be a table"])
    top = {k: v for k, v in raw.items() if k not in STEPS and k != "dataset"}
    settings = {**_defaults(""), **_check_table(top, SCHEMA[""], "", problems)}
    global_steps = {}
    for step in STEPS:
        table = raw.get(step, {})
        if not isinstance(table, dict):
            problems.append(f"[{step}] must be a table")
            table = {}
        global_steps[step] = {**_defaults(step), **_check_table(table, SCHEMA[step], f"{step}.",
                                                                problems)}
        _check_lists(step, global_steps[step], "", problems)
    entries = raw.get("dataset", [])
    if isinstance(entries, dict):
        entries = [entries]
    if not entries:
        problems.append("no data set: add at least one [[dataset]] with tilt_series and angles")
    datasets, names = [], set()
    for k, entry in enumerate(entries):
        where = f"dataset[{k}]."
        if not isinstance(entry, dict):
            problems.append(f"dataset[{k}] must be a table")
            continue
        plain = _check_table(entry, DATASET_KEYS, where, problems, allow=STEPS)
        name = plain.get("name") or (Path(plain["tilt_series"]).stem if plain.get("tilt_series")
                                     else f"dataset{k + 1}")
        if not re.fullmatch(r"[\w.-]+", name):
            problems.append(f"{where}name = {name!r}: use letters, digits, '.', '-' or '_' "
                            "(it names the output folder)")
        if name in names:
            problems.append(f"{where}name = {name!r}: two data sets have this name")
        names.add(name)
        steps = copy.deepcopy(global_steps)
        for step in STEPS:
            if step in entry:
                if not isinstance(entry[step], dict):
                    problems.append(f"{where}{step} must be a table")
                    continue
                steps[step].update(_check_table(entry[step], SCHEMA[step], f"{where}{step}.",
                                                problems))
                _check_lists(step, steps[step], where, problems)
        files = {}
        for key in ("tilt_series", "angles", "truth"):
            if plain.get(key):
                path = _resolve(plain[key], base)
                if not path.is_file():
                    problems.append(f"{where}{key}: file {path} does not exist")
                files[key] = path
        if "tilt_series" not in plain:
            problems.append(f"{where}tilt_series: missing (the tilt series file)")
        preset = plain.get("preset") or steps["trace"].get("preset") or "generic"
        try:
            load_preset(preset)
        except ValueError as exc:
            problems.append(f"{where}preset: {exc}")
        if steps["reconstruct"]["gpu"] and settings["scheduler"]:
            problems.append(f"{where}reconstruct.gpu and scheduler cannot be combined")
        if steps["reconstruct"]["refine_angles_cycles"] and settings["scheduler"]:
            problems.append(f"{where}reconstruct.refine_angles_cycles and scheduler cannot be "
                            "combined (angle refinement runs in one process)")
        if steps["reconstruct"]["extended_object"] and steps["reconstruct"]["method"] == "wbp":
            problems.append(f"{where}reconstruct.extended_object needs method resire or sirt")
        datasets.append(Dataset(name, files.get("tilt_series"), files.get("angles"),
                                plain.get("pixel_size_A"), preset, files.get("truth"), steps))
    if problems:
        raise ConfigError(source, problems)
    return RunConfig(_resolve(settings["output"], base), settings["scheduler"],
                     settings["embed_tilt_series"], settings["project"], datasets, source)


def load_config(path) -> RunConfig:
    """Read and check a ``.toml`` configuration, or the ``config`` of a previous ``run.json``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, [f"configuration file {path} does not exist"])
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
            raw = raw.get("config", raw)
        else:
            raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(path, [f"not valid {path.suffix[1:].upper() or 'TOML'}: {exc}"]) from None
    return parse_config(raw, path.parent.resolve(), str(path))


def check_inputs(config: RunConfig) -> None:
    """Open every input (headers, angle counts, pixel size, truth atoms) before any work.

    Fills in what the files say when the configuration did not: a data set's pixel size
    from the file header and its angles file from beside the tilt series. Raises
    :class:`ConfigError` listing every data set whose files do not fit together.
    """
    from napari_aet.io.coordinates import read_atoms
    from napari_aet.io.tilt_series import find_angles_beside, read_angles, read_stack

    problems = []
    for d in config.datasets:
        where = f"dataset {d.name!r}: "
        try:
            stack = read_stack(d.tilt_series, d.pixel_size_A, require_pixel_size=False)
        except (OSError, ValueError) as exc:
            problems.append(where + str(exc).splitlines()[0])
            continue
        if stack.pixel_size_A is None:
            problems.append(where + f"{d.tilt_series.name} has no pixel size: set pixel_size_A")
        if d.pixel_size_A is None:
            d.pixel_size_A = stack.pixel_size_A
        n = stack.data.shape[0]
        if d.angles is None and stack.angles_deg is None:
            d.angles = find_angles_beside(d.tilt_series)
            if d.angles is None:
                problems.append(where + "no angles: set angles (a .tlt, .txt, .csv, .npy or .mat file)")
                continue
        if d.angles is not None:  # angles inside the stack were checked by read_stack
            try:
                read_angles(d.angles, n_images=n)
            except (OSError, ValueError) as exc:
                problems.append(where + str(exc).splitlines()[0])
                continue
        if d.truth is not None:
            try:
                read_atoms(d.truth)
            except (OSError, ValueError) as exc:
                problems.append(where + str(exc).splitlines()[0])
    if problems:
        raise ConfigError(config.source or "configuration", problems)


def simple_config(tilt_series, angles, pixel_size_A, preset, output, scheduler=None,
                  truth=None, iterations=None) -> RunConfig:
    """The configuration of ``napari-aet run TILT --angles ... -o DIR`` (one data set)."""
    name = re.sub(r"[^\w.-]+", "_", Path(output).resolve().name) or Path(tilt_series).stem
    raw = {"output": str(output), "dataset": [{
        "name": name, "tilt_series": str(tilt_series), "preset": preset or "generic"}]}
    if scheduler:
        raw["scheduler"] = scheduler
    entry = raw["dataset"][0]
    if angles:
        entry["angles"] = str(angles)
    if pixel_size_A is not None:
        entry["pixel_size_A"] = pixel_size_A
    if truth:
        entry["truth"] = str(truth)
    if iterations is not None:
        raw["reconstruct"] = {"iterations": iterations}
    return parse_config(raw, Path.cwd(), "command line")
