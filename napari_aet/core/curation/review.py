"""The review queue: the atoms and places of a model that deserve a human look.

Each check is one small function in :data:`REVIEW_CHECKS` that reads a
:class:`ReviewContext` (positions, neighbour tree, smoothed volume, intensities at the atoms,
non-atom level, class centres) and yields :class:`ReviewItem` s; :func:`review_queue` runs
them in order, keeps the highest-scoring item per atom and ranks the rest. Its settings are
described once in :class:`ReviewParameters` (the Curate widget's rows, ``curate-check``'s
options and the project entries come from it).

Positions are in Angstrom in the frame of the volume: voxel ``i`` sits at ``i * pixel_size_A``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from napari_aet.core.atoms import Atoms
from napari_aet.core.curation.snapping import (
    check_volume,
    local_maxima,
    refine_positions,
    sample_volume,
)
from napari_aet.core.parameters import parameter, parameter_map
from napari_aet.core.trace import TraceParameters

#: Feature names recognised as a classification margin or confidence (0 = ambiguous, 1 = sure).
MARGIN_FEATURES = ("class_margin", "margin", "class_confidence", "confidence")
#: Feature names recognised as a fit residual (larger = worse).
RESIDUAL_FEATURES = ("fit_residual", "residual", "fit_error")

_D_MIN = parameter_map(TraceParameters)["min_distance_A"]


@dataclass
class ReviewParameters:
    """Settings of :func:`review_queue` (lengths in Angstrom).

    None ("auto" in the widget) where the value comes from the atoms and the volume. The
    minimum distance has the default and range of :attr:`TraceParameters.min_distance_A`;
    the Curate widget and ``curate-check`` take the trace's or the preset's value.
    """

    d_min_A: float = parameter(_D_MIN.default, unit="A", min=_D_MIN.min, max=_D_MIN.max,
                               label="minimum distance",
                               help="d_min: the weaker of two atoms this close is a close pair; "
                                    "a bright maximum with no atom this close is a missed atom")
    non_atom_level: float | None = parameter(
        None, label="non-atom level",
        help="volume value below which nothing is an atom (the volume's units); none = "
             "half the median intensity at atoms of the weakest element")
    isolation_A: float | None = parameter(
        None, unit="A", min=0.1, max=50.0, label="isolation distance",
        help="an atom with no neighbour this close is isolated; none = 2 x the median "
             "nearest-neighbour distance")
    smooth_sigma_A: float = parameter(
        0.35, unit="A", min=0.0, max=5.0,
        help="Gaussian smoothing of the volume before intensities and maxima are read: "
             "voxel noise makes neither weak nor missed atoms (0 = off)")
    border_A: float = parameter(
        2.0, unit="A", min=0.0, max=50.0,
        help="no missed atom this close to a face of the volume (reconstruction edge "
             "artefacts)")
    support_A: float | None = parameter(
        None, unit="A", min=0.1, max=50.0, label="support distance",
        help="a missed atom lies this close to an atom of the model: noise outside the "
             "particle is not an atom; none = 1.25 x the median nearest-neighbour distance")


@dataclass
class ReviewItem:
    """A place that deserves a human look.

    ``kind``: ``close_pair``, ``weak_atom``, ``wrong_class``, ``ambiguous_class``,
    ``poor_fit``, ``isolated`` or ``missed_atom``; ``position`` (z, y, x) Angstrom;
    ``atom_index``: row in the atoms given (None for a place without an atom);
    ``score`` in [0, 1], higher = more suspicious; ``suggested_action`` such as
    ``"remove"``, ``"add O"``, ``"relabel to Si"``, ``"check"``.
    """

    kind: str
    position: np.ndarray
    atom_index: int | None
    score: float
    suggested_action: str
    detail: str = ""
    atom_id: int | None = None
    partner_index: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A stable key for marking the item reviewed."""
        if self.atom_id is not None:
            return f"{self.kind}:atom{self.atom_id}"
        if self.atom_index is not None:
            return f"{self.kind}:row{self.atom_index}"
        z, y, x = np.round(np.asarray(self.position, float), 1)
        return f"{self.kind}:{z:.1f},{y:.1f},{x:.1f}"


#: The :class:`ReviewParameters` set as such (the minimum distance comes with the atoms:
#: the trace's or the preset's).
REVIEW_SETTINGS = tuple(name for name in parameter_map(ReviewParameters) if name != "d_min_A")


@dataclass
class ReviewContext:
    """What every check reads, computed once per queue (see :func:`review_queue`).

    ``volume`` is the smoothed reconstruction (None without one); ``intensity`` the volume
    at each atom; ``level`` the non-atom level; ``class_centres`` the median intensity per
    element with at least 3 atoms; ``weak_ref`` the intensity a weak-atom score is relative
    to. Distances are in Angstrom.
    """

    atoms: Atoms
    positions: np.ndarray
    elements: np.ndarray
    tree: cKDTree | None
    d_min_A: float
    volume: np.ndarray | None = None
    pixel_size_A: float | None = None
    intensity: np.ndarray | None = None
    level: float | None = None
    class_centres: dict = field(default_factory=dict)
    weak_ref: float | None = None
    isolation_A: float | None = None
    margin_feature: str | None = None
    residual_feature: str | None = None
    border_A: float = ReviewParameters.border_A
    support_A: float | None = None

    @property
    def n(self) -> int:
        return len(self.positions)


ReviewCheck = Callable[[ReviewContext], Iterator[ReviewItem]]

#: The checks of :func:`review_queue`, run in this order (name -> check).
REVIEW_CHECKS: dict[str, ReviewCheck] = {}


def _check(fn: ReviewCheck) -> ReviewCheck:
    REVIEW_CHECKS[fn.__name__] = fn
    return fn


@_check
def close_pairs(ctx: ReviewContext) -> Iterator[ReviewItem]:
    """Pairs closer than d_min: the weaker atom of each pair (score 0.6-1, closer = higher)."""
    pos = ctx.positions
    if ctx.n < 2:
        return
    pairs = ctx.tree.query_pairs(ctx.d_min_A, output_type="ndarray")
    if not len(pairs):
        return
    dist = np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=1)
    if ctx.intensity is not None:
        weak_first = ctx.intensity[pairs[:, 0]] < ctx.intensity[pairs[:, 1]]
    elif "intensity" in ctx.atoms.features:
        f = np.asarray(ctx.atoms.features["intensity"], float)
        weak_first = f[pairs[:, 0]] < f[pairs[:, 1]]
    else:
        weak_first = np.zeros(len(pairs), bool)  # the later row
    weak = np.where(weak_first, pairs[:, 0], pairs[:, 1])
    other = np.where(weak_first, pairs[:, 1], pairs[:, 0])
    score = 0.6 + 0.4 * (1 - dist / ctx.d_min_A)
    for w, o, d, s in zip(weak.tolist(), other.tolist(), dist.tolist(), score.tolist()):
        yield ReviewItem("close_pair", pos[w].copy(), w, s, "remove",
                         f"{d:.2f} A from atom {o} (d_min {ctx.d_min_A:g} A)", partner_index=o)


@_check
def weak_atoms(ctx: ReviewContext) -> Iterator[ReviewItem]:
    """Atoms where the volume is below the non-atom level (score 1 - I / I_ref, 0.5-1)."""
    if ctx.intensity is None or not ctx.n:
        return
    intensity = ctx.intensity
    for i in np.flatnonzero(intensity < ctx.level).tolist():
        s = float(np.clip(1 - intensity[i] / ctx.weak_ref, 0.5, 1.0))
        yield ReviewItem("weak_atom", ctx.positions[i].copy(), i, s, "remove",
                         f"intensity {intensity[i]:.3g} below the non-atom level {ctx.level:.3g}")


@_check
def class_from_intensity(ctx: ReviewContext) -> Iterator[ReviewItem]:
    """Atoms whose intensity is nearer another element's (``wrong_class``, 0.5-1) or nearly
    as near (``ambiguous_class``, 0.25-0.5), from the log-intensity margin."""
    if ctx.intensity is None or not ctx.n:
        return
    good = {e: c for e, c in ctx.class_centres.items() if c > 0}
    if len(good) < 2:
        return
    n, intensity, elements = ctx.n, ctx.intensity, ctx.elements
    names = list(good)
    logc = np.log(np.array([good[e] for e in names]))
    logi = np.log(np.maximum(intensity, 1e-12 * max(good.values())))
    dist = np.abs(logi[:, None] - logc[None, :])  # (n, k)
    known = np.isin(elements, names)
    own_k = np.array([names.index(e) if e in good else 0 for e in elements])
    d_own = dist[np.arange(n), own_k]
    d_other = np.where(np.arange(len(names))[None] == own_k[:, None], np.inf, dist)
    k_other = np.argmin(d_other, axis=1)
    d_oth = d_other[np.arange(n), k_other]
    margin = (d_oth - d_own) / np.maximum(d_oth + d_own, 1e-12)
    flag = known & (margin < 0.5) & (intensity >= ctx.level)
    for i in np.flatnonzero(flag).tolist():
        m = float(margin[i])
        pos = ctx.positions[i].copy()
        if m < 0:
            other = names[k_other[i]]
            yield ReviewItem("wrong_class", pos, i, 0.5 - 0.5 * m, f"relabel to {other}",
                             f"intensity {intensity[i]:.3g} is nearer {other} "
                             f"({good[other]:.3g}) than {elements[i]}")
        else:
            yield ReviewItem("ambiguous_class", pos, i, 0.5 - 0.5 * m, "check class",
                             f"class margin {m:.2f}")


def _feature(ctx: ReviewContext, name: str | None, candidates) -> tuple[str | None, np.ndarray | None]:
    """The per-atom feature ``name`` (or the first of ``candidates`` the atoms have) as floats;
    ``(None, None)`` when none is there. A named feature the atoms lack is an error."""
    feats = ctx.atoms.features
    name = name or next((f for f in candidates if f in feats), None)
    if name is None:
        return None, None
    if name not in feats:
        raise ValueError(f"no feature {name!r} in the atoms (have {sorted(feats)})")
    return name, np.asarray(feats[name], float)


@_check
def class_margin(ctx: ReviewContext) -> Iterator[ReviewItem]:
    """Atoms whose class margin / confidence feature is below 0.5 (score 1 - margin)."""
    mf, m = _feature(ctx, ctx.margin_feature, MARGIN_FEATURES)
    if m is None:
        return
    # one species: the only class boundary is the one between atoms and non-atoms
    action, near = (("check it is an atom", " (atom / non-atom boundary)")
                    if len(np.unique(ctx.elements)) == 1 else ("check class", ""))
    for i in np.flatnonzero(np.isfinite(m) & (m < 0.5)).tolist():
        yield ReviewItem("ambiguous_class", ctx.positions[i].copy(), i,
                         float(1 - np.clip(m[i], 0, 1)), action, f"{mf} {m[i]:.2f}{near}")


@_check
def poor_fit(ctx: ReviewContext) -> Iterator[ReviewItem]:
    """Atoms whose fit residual has a robust z-score above 3 (score 0.4-0.9)."""
    rf, r = _feature(ctx, ctx.residual_feature, RESIDUAL_FEATURES)
    if r is None:
        return
    ok = np.isfinite(r)
    if ok.sum() < 5:
        return
    med = np.median(r[ok])
    mad = 1.4826 * np.median(np.abs(r[ok] - med)) or 1e-12
    z = (r - med) / mad
    for i in np.flatnonzero(ok & (z > 3)).tolist():
        yield ReviewItem("poor_fit", ctx.positions[i].copy(), i,
                         float(np.clip(0.4 + z[i] / 20, 0.4, 0.9)), "check position",
                         f"{rf} {r[i]:.3g} (robust z {z[i]:.1f})")


@_check
def isolated_atoms(ctx: ReviewContext) -> Iterator[ReviewItem]:
    """Atoms with no neighbour within the isolation distance (score 0.35-0.7)."""
    if ctx.n <= 2:
        return
    dnn = ctx.tree.query(ctx.positions, k=2)[0][:, 1]
    thr = ctx.isolation_A or 2.0 * float(np.median(dnn))
    for i in np.flatnonzero(dnn > thr).tolist():
        s = 0.35 + 0.35 * float(np.clip(dnn[i] / thr - 1, 0, 1))
        yield ReviewItem("isolated", ctx.positions[i].copy(), i, s, "remove",
                         f"nearest neighbour {dnn[i]:.2f} A (> {thr:.2f} A)")


@_check
def missed_atoms(ctx: ReviewContext) -> Iterator[ReviewItem]:
    """Bright local maxima with no atom within d_min, inside the support and away from the
    faces of the volume; one per blob (score (I - level) / (I_ref - level))."""
    volume, level, px, d_min_A = ctx.volume, ctx.level, ctx.pixel_size_A, ctx.d_min_A
    if volume is None or level is None:
        return
    peaks, _ = local_maxima(volume, level, px)
    if not len(peaks):
        return
    pk_int = sample_volume(volume, peaks, px)
    edge = np.asarray(volume.shape) - 1
    inside = np.all((peaks >= ctx.border_A) & (peaks <= edge * px - ctx.border_A), 1)
    if ctx.n:
        dist, _ = ctx.tree.query(peaks, k=1)
        support_A = ctx.support_A
        if support_A is None and ctx.n > 1:
            support_A = 1.25 * float(np.median(ctx.tree.query(ctx.positions, k=2)[0][:, 1]))
        near = dist <= support_A if support_A is not None else True
        keep = (dist > d_min_A) & (pk_int > level) & inside & near
    else:
        keep = (pk_int > level) & inside
    peaks, pk_int = peaks[keep], pk_int[keep]
    # one candidate per blob: drop the weaker of candidates closer than d_min
    if len(peaks) > 1:
        pairs = cKDTree(peaks).query_pairs(d_min_A, output_type="ndarray")
        if len(pairs):
            drop = np.where(pk_int[pairs[:, 0]] < pk_int[pairs[:, 1]], pairs[:, 0], pairs[:, 1])
            keep = np.ones(len(peaks), bool)
            keep[drop] = False
            peaks, pk_int = peaks[keep], pk_int[keep]
    if len(peaks):
        peaks = refine_positions(volume, peaks, px)
    centres = ctx.class_centres
    ref_hi = min(centres.values()) if centres else max(pk_int.max(initial=level), level)
    for p, v in zip(peaks, pk_int.tolist()):
        s = float(np.clip((v - level) / max(ref_hi - level, 1e-12), 0.05, 1.0))
        guess = (min(centres, key=lambda e: abs(np.log(max(v, 1e-30)) - np.log(centres[e])))
                 if centres and all(c > 0 for c in centres.values()) else None)
        action = f"add {guess}" if guess else "add"
        yield ReviewItem("missed_atom", p.copy(), None, s, action,
                         f"peak {v:.3g} with no atom within {d_min_A:g} A")


def review_queue(atoms: Atoms, volume=None, pixel_size_A: float | None = None, *,
                 d_min_A: float = ReviewParameters.d_min_A,
                 non_atom_level: float | None = ReviewParameters.non_atom_level,
                 isolation_A: float | None = ReviewParameters.isolation_A,
                 margin_feature: str | None = None, residual_feature: str | None = None,
                 ids=None, reviewed=(),
                 smooth_sigma_A: float = ReviewParameters.smooth_sigma_A,
                 border_A: float = ReviewParameters.border_A,
                 support_A: float | None = ReviewParameters.support_A) -> list[ReviewItem]:
    """Rank the atoms and places of a model that deserve a human look, most suspicious first.

    The settings ``d_min_A`` ... ``support_A`` are the fields of :class:`ReviewParameters`
    (defaults, units and ranges there): ``review_queue(atoms, volume, px, **asdict(params))``.

    Parameters
    ----------
    atoms : the model (positions (z, y, x) Angstrom in the volume's frame).
    volume : (nz, ny, nx) reconstruction, optional; enables weak-atom, class and
        missed-atom checks.
    pixel_size_A : voxel size of ``volume`` (Angstrom).
    d_min_A : minimum distance between atoms (Angstrom); closer pairs are flagged and a
        bright local maximum with no atom within ``d_min_A`` is a missed-atom candidate.
    non_atom_level : volume value below which nothing is an atom (None: half the median
        intensity at atoms of the weakest element).
    isolation_A : an atom with no neighbour within this distance is isolated (None:
        twice the median nearest-neighbour distance).
    margin_feature, residual_feature : feature names holding a class margin/confidence
        (0 ambiguous .. 1 sure) and a fit residual; found among
        :data:`MARGIN_FEATURES` / :data:`RESIDUAL_FEATURES` when not given.
    ids : stable atom ids per row (filled into :attr:`ReviewItem.atom_id`).
    reviewed : keys of items already dealt with; they are left out.
    smooth_sigma_A : the volume is smoothed by a Gaussian of this width (Angstrom) before
        intensities and maxima are read: voxel-scale noise of a low-dose reconstruction
        makes neither weak atoms nor missed ones (0: as it is).
    border_A : places within this distance (Angstrom) of a face of the volume
        (reconstruction edge artefacts) are never missed-atom candidates.
    support_A : a missed-atom candidate must lie within this distance (Angstrom) of an atom
        of the model (out-of-support noise is not an atom; None: 1.25 x the median
        nearest-neighbour distance; with no atoms, everywhere).

    Scores are in [0, 1]: ``close_pair`` 0.6-1 (closer = higher), ``weak_atom`` 1 - I/I_ref,
    ``wrong_class`` 0.5-1 and ``ambiguous_class`` 0.25-0.5 from the log-intensity margin
    between the atom's element and the nearest other element, ``missed_atom``
    (I - level) / (I_ref - level), ``poor_fit`` from the robust z-score of the residual,
    ``isolated`` 0.35-0.7. One item per atom (the highest score).
    """
    if d_min_A <= 0:
        raise ValueError(f"minimum distance must be positive (Angstrom); got {d_min_A}")
    pos = np.asarray(atoms.positions, float)
    n = len(pos)
    ctx = ReviewContext(atoms, pos, np.asarray(atoms.elements).astype(str),
                        cKDTree(pos) if n else None, d_min_A, isolation_A=isolation_A,
                        margin_feature=margin_feature, residual_feature=residual_feature,
                        border_A=border_A, support_A=support_A, level=non_atom_level)
    if volume is not None:
        volume = check_volume(volume, pixel_size_A)
        if smooth_sigma_A < 0 or border_A < 0:
            raise ValueError("smooth_sigma_A and border_A must be >= 0 Angstrom")
        if smooth_sigma_A > 0:
            volume = ndimage.gaussian_filter(np.asarray(volume, np.float32),
                                             smooth_sigma_A / pixel_size_A, mode="nearest")
        ctx.volume, ctx.pixel_size_A = volume, pixel_size_A
        ctx.intensity = sample_volume(volume, pos, pixel_size_A) if n else np.zeros(0)
    if ctx.intensity is not None and n:
        uniq, counts = np.unique(ctx.elements, return_counts=True)
        ctx.class_centres = {e: float(np.median(ctx.intensity[ctx.elements == e]))
                             for e, c in zip(uniq, counts) if c >= 3}
        ref = (min(ctx.class_centres.values()) if ctx.class_centres
               else float(np.median(ctx.intensity)))
        if ctx.level is None:
            ctx.level = 0.5 * ref
        ctx.weak_ref = max(ref, ctx.level * 1.0001) if ref > 0 else ctx.level + 1e-12

    places: list[ReviewItem] = []
    best_for_atom: dict[int, ReviewItem] = {}  # one item per atom: the highest score
    for check in REVIEW_CHECKS.values():
        for item in check(ctx):
            if item.atom_index is None:
                places.append(item)
                continue
            old = best_for_atom.get(item.atom_index)
            if old is None or item.score > old.score:
                best_for_atom[item.atom_index] = item
    items = places + list(best_for_atom.values())
    if ids is not None:
        ids = np.asarray(ids)
        for it in items:
            if it.atom_index is not None:
                it.atom_id = int(ids[it.atom_index])
    reviewed = set(reviewed)
    if reviewed:
        items = [it for it in items if it.key not in reviewed]
    items.sort(key=lambda it: (-it.score, it.kind, tuple(np.round(it.position, 3))))
    return items


def review_table(items: list[ReviewItem]) -> list[dict]:
    """Rows for a table: rank, kind, x, y, z (Angstrom), atom_index, score, suggested_action."""
    rows = []
    for rank, it in enumerate(items, start=1):
        z, y, x = (float(v) for v in it.position)
        rows.append({"rank": rank, "kind": it.kind, "x": x, "y": y, "z": z,
                     "atom_index": "" if it.atom_index is None else int(it.atom_index),
                     "score": round(float(it.score), 6), "suggested_action": it.suggested_action})
    return rows
