"""napari-aet: atomic electron tomography in napari.

Pure science lives in :mod:`napari_aet.core` (no Qt, no napari), file formats in
:mod:`napari_aet.io`, the shared layer conventions in :mod:`napari_aet.layers`, the dock
widgets in :mod:`napari_aet.widgets` and the ``napari-aet`` command in :mod:`napari_aet.cli`.
"""

__version__ = "0.1.0"
