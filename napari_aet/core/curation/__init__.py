"""Manual correction of traced atoms, in four rooms.

- :mod:`.model`: :class:`AtomModel`, the editable atom table with unlimited undo/redo;
- :mod:`.snapping`: a click or a view ray to the sub-voxel intensity maximum, nearest atoms;
- :mod:`.review`: :class:`ReviewItem` and :func:`review_queue`, a registry of small checks,
  with its settings :class:`ReviewParameters`;
- :mod:`.session`: :class:`CurationSession`, what a curating hand does (add at a click, pick,
  move, relabel, walk the review queue), the science behind the Curate widget.
"""

from napari_aet.core.curation.model import PROVENANCE, AtomModel
from napari_aet.core.curation.review import (
    MARGIN_FEATURES,
    RESIDUAL_FEATURES,
    REVIEW_CHECKS,
    REVIEW_SETTINGS,
    ReviewContext,
    ReviewItem,
    ReviewParameters,
    review_queue,
    review_table,
)
from napari_aet.core.curation.session import CurationSession, NoEditError
from napari_aet.core.curation.snapping import (
    brightest_along_ray,
    local_maxima,
    nearest_atom,
    nearest_to_ray,
    refine_positions,
    sample_volume,
    snap_to_maximum,
)

__all__ = [
    "MARGIN_FEATURES",
    "PROVENANCE",
    "RESIDUAL_FEATURES",
    "REVIEW_CHECKS",
    "REVIEW_SETTINGS",
    "AtomModel",
    "CurationSession",
    "NoEditError",
    "ReviewContext",
    "ReviewItem",
    "ReviewParameters",
    "brightest_along_ray",
    "local_maxima",
    "nearest_atom",
    "nearest_to_ray",
    "refine_positions",
    "review_queue",
    "review_table",
    "sample_volume",
    "snap_to_maximum",
]
