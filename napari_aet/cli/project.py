"""Inspect, open or export a napari-aet project file (.aet.h5).

  napari-aet project info PROJECT            layers, curation sessions, versions
  napari-aet project open PROJECT            napari with the project restored and the
                                             widgets docked (curation resumes)
  napari-aet project export PROJECT -o DIR   every atoms layer as .xyz/.extxyz/.csv/.mat and
                                             every volume as .mrc (curated models included)
"""

from __future__ import annotations

import re
from pathlib import Path

from napari_aet.cli import CLIError

COMMAND = "project"


def add_arguments(parser):
    parser.add_argument("action", choices=["info", "open", "export"])
    parser.add_argument("project", metavar="PROJECT", help="project file (.aet.h5)")
    parser.add_argument("-o", "--output", default=None, metavar="DIR",
                        help="export: output folder")
    parser.add_argument("--formats", default="xyz,extxyz,csv,mat", metavar="LIST",
                        help="export: atom formats (default xyz,extxyz,csv,mat)")
    parser.add_argument("--screenshot", default=None, metavar="PNG",
                        help="open: save a screenshot of the window and exit")


def _info(path: Path) -> int:
    from napari_aet.io.project import read_info

    info = read_info(path)
    print(f"{path}: napari-aet project, format {info['format_version']}, saved {info['created']} "
          f"with napari-aet {info['software'].get('napari_aet', '?')}")
    for layer in info["layers"]:
        ref = " (tilt series by reference)" if layer["by_reference"] else ""
        print(f"  {layer['layer_type']:8s} {layer['name']}{ref}")
    for name in info["curation"]:
        print(f"  curation session on {name!r}")
    return 0


def _export(path: Path, output, formats) -> int:
    import numpy as np
    from napari.layers import Layer

    from napari_aet import layers as L
    from napari_aet.io.coordinates import write_atoms
    from napari_aet.io.project import load_project
    from napari_aet.io.tilt_series import write_mrc

    if not output:
        raise CLIError("export needs the output folder: -o DIR")
    formats = [f.strip().lstrip(".") for f in formats.split(",") if f.strip()]
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    project = load_project(path)
    written = []
    for data, state, layer_type in project.layers:
        layer = Layer.create(data, state, layer_type)
        stem = re.sub(r"[^\w.-]+", "_", layer.name).strip("_") or layer_type
        kind = L.kind_of(layer)
        if kind == "atoms" and layer_type == "points":
            atoms = L.atoms_from_layer(layer)
            for fmt in formats:
                target = out / f"{stem}.{fmt}"
                px = L.aet_meta(layer).get("pixel_size_A")
                write_atoms(target, atoms, **({"pixel_size_A": px} if fmt == "mat" and px else {}))
                written.append(target)
        elif kind in ("volume", "tilt_series") and layer_type == "image":
            target = out / f"{stem}.mrc"
            write_mrc(target, np.asarray(layer.data), L.pixel_size_of(layer))
            written.append(target)
    for target in written:
        print(target)
    return 0


def _open(path: Path, screenshot) -> int:
    import napari

    from napari_aet.cli.demo import dock_all_widgets
    from napari_aet.widgets.project import open_in_viewer

    viewer = napari.Viewer(title=f"napari-aet: {path.name}")
    viewer.window.resize(1500, 950)
    dock_all_widgets(viewer)
    try:
        project = open_in_viewer(viewer, path)
    except Exception:
        viewer.close()
        raise
    from napari_aet.widgets._base import StepWidget

    widgets = {type(w).__name__: w for w in StepWidget.instances(viewer)}
    if "CurateWidget" in widgets and project.curation:
        widgets["CurateWidget"].parent().raise_()
    if screenshot:
        from qtpy.QtWidgets import QApplication

        QApplication.processEvents()
        viewer.screenshot(screenshot, canvas_only=False)
        viewer.close()
        return 0
    napari.run()
    return 0


def run(args) -> int:
    path = Path(args.project)
    if not path.is_file():
        raise CLIError(f"project file {path} does not exist")
    if args.action == "info":
        return _info(path)
    if args.action == "export":
        return _export(path, args.output, args.formats)
    return _open(path, args.screenshot)
