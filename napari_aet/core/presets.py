"""Material presets: default parameters per material, shipped as TOML in ``resources/presets``.

A preset file holds top-level ``name``, ``description`` and ``elements`` (expected species,
brightest first or in any order), and one table per step (``[trace]``, ``[analysis]``, ...).
All lengths are in Angstrom. Names are matched case-insensitively (``"sio2"`` finds ``SiO2``).
"""

from __future__ import annotations

import importlib.resources
import tomllib


def _preset_dir():
    return importlib.resources.files("napari_aet.resources") / "presets"


def preset_names() -> list[str]:
    """Names of the shipped presets (file stems), sorted case-insensitively."""
    names = [p.name[:-5] for p in _preset_dir().iterdir() if p.name.endswith(".toml")]
    return sorted(names, key=str.lower)


def load_preset(name: str) -> dict:
    """The preset ``name`` as a dict (a fresh copy; safe to modify).

    Raises
    ------
    ValueError
        When no preset has that name; the message lists the known names.
    """
    known = preset_names()
    by_lower = {n.lower(): n for n in known}
    key = str(name).strip().lower()
    if key not in by_lower:
        raise ValueError(f"unknown material preset {name!r}; known presets: {', '.join(known)}")
    path = _preset_dir() / f"{by_lower[key]}.toml"
    try:
        preset = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"preset file {by_lower[key]}.toml is not valid TOML: {exc}") from exc
    preset.setdefault("name", by_lower[key])
    return preset
