import subprocess
import sys
from pathlib import Path

import npe2
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
