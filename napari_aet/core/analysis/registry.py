"""The structure analyses as a registry: one small function per analysis.

Each :class:`Analysis` names what it needs (analyses that must run before it) and a function
that takes the :class:`AnalysisRun` (positions, thresholds, the shared particle region and
first-shell pairs, the result being filled), writes its columns, summary entries and result
attributes, and returns the progress message. :data:`REGISTRY` keeps the run order;
``napari_aet.core.analysis.ANALYSES`` and :func:`~napari_aet.core.analysis.analyse_all`
derive from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Analysis:
    """One registered analysis.

    ``needs``: analyses run before it (added to the steps when it is chosen);
    ``with_volume``: runs only when a volume grid is given (not a user choice);
    ``run(AnalysisRun) -> str``: fills the result, returns the progress message.
    """

    name: str
    needs: tuple[str, ...]
    run: Callable[[AnalysisRun], str]
    with_volume: bool = False


#: Every analysis by name, in run order.
REGISTRY: dict[str, Analysis] = {}


def register(name: str, needs: tuple[str, ...] = (), with_volume: bool = False):
    """Decorator: add ``run`` to :data:`REGISTRY` as analysis ``name`` (after those before)."""
    def add(run: Callable[[AnalysisRun], str]) -> Callable[[AnalysisRun], str]:
        REGISTRY[name] = Analysis(name, tuple(needs), run, with_volume)
        return run
    return add


@dataclass
class AnalysisRun:
    """The state one :func:`~napari_aet.core.analysis.analyse_all` call shares between analyses.

    ``positions`` (n, 3) Angstrom are the analysed atoms, ``sel`` their indices among all
    ``n_all`` input atoms; ``first_shell_A`` is the neighbour cutoff (Angstrom) once known;
    ``region``, ``surface`` and ``pairs`` (first-shell neighbour pairs) come from
    :meth:`neighbourhood`; ``boo``, ``rho_n`` and ``phase`` are kept for the analyses after them.
    """

    result: object
    sel: np.ndarray
    positions: np.ndarray
    n_all: int
    volume_shape: tuple | None = None
    pixel_size_A: float | None = None
    first_shell_A: float | None = None
    region: object = None
    surface: np.ndarray | None = None
    pairs: np.ndarray | None = None
    boo: np.ndarray | None = None
    rho_n: np.ndarray | None = None
    phase: np.ndarray | None = None
    pdf: object = None  # a PDF of these atoms already computed with params' PDF settings

    def __post_init__(self):
        self.first_shell_A = self.params.first_shell_A

    @property
    def params(self):
        return self.result.params

    @property
    def table(self) -> dict:
        return self.result.table

    @property
    def summary(self) -> dict:
        return self.result.summary

    @property
    def timings_s(self) -> dict:
        return self.result.timings_s

    @property
    def n(self) -> int:
        return len(self.positions)

    def column(self, values, fill=np.nan, dtype=float) -> np.ndarray:
        """A per-input-atom column: ``values`` at the analysed atoms, ``fill`` elsewhere."""
        full = np.full(self.n_all, fill, dtype=dtype)
        full[self.sel] = values
        return full

    def neighbourhood(self) -> None:
        """Particle region (alpha shape), surface atoms, first-shell pairs and coordination."""
        from napari_aet.core.analysis._geometry import particle_region
        from napari_aet.core.analysis.order import neighbor_pairs

        t0 = time.perf_counter()
        alpha = self.params.alpha_A or self.first_shell_A
        self.region = self.result.region = particle_region(self.positions, alpha)
        self.summary["particle_volume_A3"] = round(self.region.volume_A3, 1)
        self.surface = self.region.surface_atoms()
        self.table["surface"] = self.column(self.surface, False, bool)
        self.timings_s["region"] = time.perf_counter() - t0
        self.pairs = neighbor_pairs(self.positions, self.first_shell_A)
        self.table["coordination"] = self.column(
            np.bincount(self.pairs.ravel(), minlength=self.n), -1, int)


@register("pdf")
def pair_distribution(run: AnalysisRun) -> str:
    """Finite-particle PDF; its first valley is the first-shell cutoff unless one is given."""
    from napari_aet.core.analysis.pdf import pair_distribution as pdf_of

    p = run.params
    pdf = run.pdf if run.pdf is not None else pdf_of(
        run.positions, p.pdf_r_max_A, p.pdf_bin_A, p.pdf_smoothing_A,
        alpha_A=p.alpha_A or p.first_shell_A)
    run.result.pdf = pdf
    run.summary["pdf_peaks_A"] = [round(float(r), 3) for r in pdf.peaks_A[:6]]
    run.summary["pdf_first_valley_A"] = round(pdf.first_valley_A, 3)
    if run.first_shell_A is None:
        if not np.isfinite(pdf.first_valley_A):
            raise ValueError("no first valley in the PDF; give the first-shell cutoff")
        run.first_shell_A = pdf.first_valley_A
    return f"first valley {run.first_shell_A:.2f} A"


@register("order")
def order(run: AnalysisRun) -> str:
    """Averaged Q4, Q6 and BOO over first-shell neighbours; ``ordered`` above the threshold."""
    from napari_aet.core.analysis.order import bond_orientational_order

    o = bond_orientational_order(run.positions, run.first_shell_A, run.params.boo_threshold,
                                 pairs=run.pairs)
    run.boo = o["boo"]
    for name in ("q4", "q6", "boo"):
        run.table[name] = run.column(o[name])
    run.table["ordered"] = run.column(o["ordered"], False, bool)
    run.summary["boo_mean"] = round(float(np.nanmean(run.boo)), 4)
    run.summary["ordered_fraction"] = round(float(np.mean(o["ordered"])), 4)
    return f"ordered fraction {run.summary['ordered_fraction']:.2f}"


@register("structure")
def structure(run: AnalysisRun) -> str:
    """Adaptive common-neighbour structure type of each atom."""
    from napari_aet.core.analysis.structure import structure_types

    st = structure_types(run.positions)
    run.table["structure"] = run.column(st, "", "<U11")
    kinds, counts = np.unique(st, return_counts=True)
    run.summary["structure_fractions"] = {str(k): round(c / run.n, 4)
                                          for k, c in zip(kinds, counts)}
    return ", ".join(f"{k} {c}" for k, c in zip(kinds, counts))


@register("voronoi")
def voronoi(run: AnalysisRun) -> str:
    """Voronoi cell volumes (A^3), number density rho_N (A^-3) and Voronoi bonds."""
    from napari_aet.core.analysis.voronoi import voronoi_cells

    vor = voronoi_cells(run.positions, run.first_shell_A, run.region,
                        run.params.min_face_fraction)
    run.rho_n = rho = vor.rho_n
    run.table["voronoi_volume_A3"] = run.column(vor.volume_A3)
    run.table["rho_n"] = run.column(rho)
    run.table["n_voronoi_bonds"] = run.column(np.bincount(vor.bonds.ravel(), minlength=run.n),
                                              -1, int)
    interior = ~run.surface & np.isfinite(rho)
    run.summary["rho_n_interior_median"] = (float(np.median(rho[interior])) if interior.any()
                                            else None)
    run.summary["voronoi_open_cells"] = int(np.isnan(vor.volume_A3).sum())
    return "Voronoi cells"


@register("voids")
def voids(run: AnalysisRun) -> str:
    """Voids (vacancies, nano-pores, pores) from tetrahedra with large circumspheres."""
    from napari_aet.core.analysis.voids import find_voids

    p = run.params
    vr = find_voids(run.positions, p.r_void_A, region=run.region,
                    vacancy_A3=(p.vacancy_min_A3, p.vacancy_max_A3),
                    nanopore_max_A3=p.nanopore_max_A3)
    for v in vr.voids:  # report in the caller's indexing
        v.lining = run.sel[v.lining]
    run.result.voids = vr
    counts = {k: vr.count(k) for k in ("vacancy", "nano-pore", "pore", "interstitial")}
    run.summary["voids"] = counts
    run.summary["void_volume_A3"] = round(vr.total_volume_A3(), 1)
    run.summary["porosity"] = round(vr.porosity, 5)
    run.summary["surface_pockets"] = vr.n_surface_pockets
    return ", ".join(f"{v} {k}" for k, v in counts.items())


@register("oxidation")
def oxidation(run: AnalysisRun) -> str:
    """Degree of oxidation per metal atom and O/metal from the metal tetrahedra."""
    from napari_aet.core.analysis.oxidation import degree_of_oxidation

    oxr = degree_of_oxidation(run.positions, run.params.max_distortion,
                              run.params.oxygen_volume_A3, region=run.region)
    run.result.oxidation = oxr
    run.table["oxidation"] = run.column(oxr.degree)
    run.table["n_oxygen_sites"] = run.column(oxr.n_oxygen, -1, int)
    run.summary["o_per_metal"] = round(oxr.o_per_metal, 4)
    return f"O/metal {oxr.o_per_metal:.2f}"


@register("phases", needs=("order", "voronoi"))
def phases(run: AnalysisRun) -> str:
    """Phase of each atom, signed distance from the metal core, core shells and profiles."""
    from napari_aet.core.analysis import phases as ph

    p = run.params
    phase = ph.assign_phases(run.boo, run.rho_n, run.pairs, p.boo_threshold, p.rho_metal_min)
    run.table["phase"] = run.column(phase, "", "<U17")
    dist = ph.core_distance(run.positions, phase, run.pairs)
    run.table["core_distance_A"] = run.column(dist)
    run.table["shell"] = run.column(ph.core_shell(dist, p.shell_width_A), -1, int)
    kinds, counts = np.unique(phase, return_counts=True)
    run.summary["phase_counts"] = {str(k): int(c) for k, c in zip(kinds, counts)}
    values = {"rho_n": run.rho_n, "boo": run.boo}
    if run.result.oxidation is not None:
        values["oxidation"] = run.result.oxidation.degree
    void_d = None
    if run.result.voids is not None:
        void_d = ph.vacancy_core_distance(run.positions, dist, run.result.voids)
    for name in ph.PHASES:
        values[f"fraction_{name}"] = (phase == name).astype(float)
    run.result.profiles = ph.profiles(dist, values, p.profile_bin_A, void_d)
    run.phase = phase
    return ", ".join(f"{k} {c}" for k, c in zip(kinds, counts))


@register("phase_volume", needs=("phases",), with_volume=True)
def phase_volume(run: AnalysisRun) -> str:
    """Labels volume of phases on the volume grid (voxel ``i`` at ``i * pixel_size_A``)."""
    from napari_aet.core.analysis.phases import phase_label_volume

    if not run.pixel_size_A:
        raise ValueError("a phase volume needs the volume's pixel size in Angstrom")
    run.result.phase_volume = phase_label_volume(
        run.positions, run.phase, tuple(run.volume_shape), run.pixel_size_A,
        0.5 * run.first_shell_A, run.region)
    return "phase labels volume"
