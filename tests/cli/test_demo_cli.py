import subprocess
import sys

from napari_aet.cli.demo import dock_all_widgets
from napari_aet.widgets._base import StepWidget


def test_dock_all_widgets_docks_every_manifest_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    docked = dock_all_widgets(viewer)
    assert list(docked) == ["Align tilt series", "Reconstruct", "Trace atoms", "Curate atoms",
                            "Analyse structure", "Project"]
    steps = [widget for name, (_, widget) in docked.items() if name != "Project"]
    assert all(isinstance(widget, StepWidget) for widget in steps)


def test_demo_command_opens_sample_and_widgets(tmp_path):
    shot = tmp_path / "demo.png"
    result = subprocess.run([sys.executable, "-m", "napari_aet.cli", "demo", "--sample", "silica",
                             "--screenshot", str(shot)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    from imageio.v3 import imread

    image = imread(shot)
    assert image.shape[0] > 500 and image.shape[1] > 1000
    assert image[..., :3].std() > 10  # a real window, not a blank frame
