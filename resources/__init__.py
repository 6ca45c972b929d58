"""Shipped resources: material presets, icons and small examples (installed as napari_aet.resources)."""
from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parent
