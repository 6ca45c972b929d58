import subprocess
import sys
from pathlib import Path

import npe2
import numpy as np
import yaml

import napari_aet

MANIFEST = Path(napari_aet.__file__).parent / "napari.yaml"


def test_manifest_validates_with_npe2():
    result = subprocess.run([sys.executable, "-m", "npe2", "validate", str(MANIFEST)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_every_command_imports():
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    for command in manifest.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        mod = __import__(module, fromlist=[attr])
        assert callable(getattr(mod, attr)), command.python_name


def test_manifest_lists_readers_writers_samples_and_widgets():
    spec = yaml.safe_load(MANIFEST.read_text())["contributions"]
    patterns = {p for r in spec["readers"] for p in r["filename_patterns"]}
    assert {"*.mrc", "*.st", "*.ali", "*.rec", "*.tif", "*.tiff", "*.npy", "*.npz", "*.h5", "*.emd",
            "*.mat", "*.xyz", "*.aet.h5"} <= patterns
    assert {s["key"] for s in spec["sample_data"]} == {"silica", "zr", "silica_atoms", "zr_atoms"}
    assert len(spec["widgets"]) == 6
    file_menu = {m["command"] for m in spec["menus"]["napari/file/io_utilities"]}
    assert file_menu == {"napari-aet.open_project_menu", "napari-aet.save_project_menu"}


def test_points_layer_saves_as_mat_through_napari(tmp_path):
    """File > Save Selected Layers as .mat finds this plugin's writer (issue 15)."""
    from napari.layers import Points
    from npe2 import PluginManager

    from napari_aet.core.atoms import Atoms
    from napari_aet.io.coordinates import read_atoms
    from napari_aet.layers import atoms_tuple

    pm = PluginManager()
    pm.register(npe2.PluginManifest.from_file(MANIFEST))
    pm.activate("napari-aet")
    atoms = Atoms(np.array([[1.0, 2.0, 3.0], [4.5, 5.5, 6.5], [7.0, 8.0, 9.25]]),
                  ["Zr", "O", "Zr"], {"intensity": np.array([3.0, 1.0, 2.5])})
    data, kwargs, _ = atoms_tuple(atoms, 0.4, name="atoms")
    layer = Points(data, **kwargs)
    path = str(tmp_path / "atoms.mat")
    writer, _ = pm.get_writer(path, layer_types=["points"])  # what napari's Save asks
    assert writer is not None and writer.command == "napari-aet.write_atoms"
    assert writer.exec(args=(path, *layer.as_layer_data_tuple()[:2]), _registry=pm.commands) \
        == [path]
    back = read_atoms(path)
    np.testing.assert_allclose(back.positions, atoms.positions, atol=1e-6)
    assert back.elements.tolist() == ["Zr", "O", "Zr"]
