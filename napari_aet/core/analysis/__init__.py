"""Structure analysis of atom models: PDF, bond-orientational order, Voronoi density, voids,
oxidation, phases.

:func:`analyse_all` runs the chosen analyses in order as a generator (progress dicts, then the
:class:`AnalysisResult` as its return value), so the widget, the command line and scripts
share one code path.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from napari_aet.core.atoms import Atoms
from napari_aet.core.jobs import run_to_completion
from napari_aet.core.parameters import parameter

ANALYSES = ("pdf", "order", "structure", "voronoi", "voids", "oxidation", "phases")
_NEEDS = {"phases": ("order", "voronoi"), "voids": (), "oxidation": ()}


@dataclass
class AnalysisParameters:
    """Every threshold of the structure analysis (lengths in Angstrom, volumes in A^3).

    ``first_shell_A`` None means the first valley of the PDF; ``alpha_A`` None means the
    first-shell cutoff. ``elements`` restricts the analysis to those species (e.g. ``["Zr"]``
    when oxygen positions are not measured); None analyses every atom.
    """

    first_shell_A: float | None = parameter(None, unit="A", min=1.0, max=10.0, label="first shell",
                                            help="first-shell cutoff; none = the PDF's first valley")
    alpha_A: float | None = parameter(None, unit="A", min=0.5, max=20.0,
                                      help="alpha radius of the particle region; none = the "
                                           "first-shell cutoff")
    r_void_A: float = parameter(3.19, unit="A", min=0.5, max=10.0, label="r_void",
                                help="circumsphere radius above which a tetrahedron is void")
    vacancy_min_A3: float = parameter(45.0, unit="A3", min=0.1, max=1e4,
                                      help="smallest vacancy volume")
    vacancy_max_A3: float = parameter(125.0, unit="A3", min=0.1, max=1e4,
                                      help="largest vacancy volume")
    nanopore_max_A3: float = parameter(4500.0, unit="A3", min=0.1, max=1e7,
                                       help="largest nano-pore volume")
    boo_threshold: float = parameter(0.534, min=0.001, max=1.0,
                                     help="normalised BOO below which an atom is disordered")
    max_distortion: float = parameter(0.255, min=0.001, max=1.0,
                                      help="tetrahedron distortion above which no oxygen fits")
    oxygen_volume_A3: float = parameter(4.68, unit="A3", min=0.01, max=100.0,
                                        help="smallest tetrahedron holding an oxygen")
    rho_metal_min: float = parameter(0.035, min=0.001, max=1.0,
                                     help="first-shell mean rho_N separating metal from oxide "
                                          "(1/A^3)")
    min_face_fraction: float = parameter(0.01, min=0.0001, max=1.0,
                                         help="Voronoi faces below this share of the cell area "
                                              "are dropped")
    pdf_r_max_A: float = parameter(12.0, unit="A", min=1.0, max=100.0,
                                   help="largest PDF distance")
    pdf_bin_A: float = parameter(0.02, unit="A", min=0.001, max=1.0, help="PDF bin width")
    pdf_smoothing_A: float = parameter(0.05, unit="A", min=0.001, max=1.0,
                                       help="Gaussian smoothing of the PDF")
    shell_width_A: float = parameter(5.0, unit="A", min=0.1, max=50.0,
                                     help="width of the interface shells around the core")
    profile_bin_A: float = parameter(2.0, unit="A", min=0.1, max=20.0,
                                     help="bin width of the profiles")
    elements: list[str] | None = parameter(None, help="analyse only these species; none = all")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def updated(self, **overrides) -> AnalysisParameters:
        """A copy with the given (non-None) fields replaced; unknown names raise ValueError."""
        unknown = set(overrides) - set(self.names())
        if unknown:
            raise ValueError(f"unknown analysis parameter(s): {', '.join(sorted(unknown))}")
        values = asdict(self)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return AnalysisParameters(**values)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> AnalysisParameters:
        """Parameters from the ``[analysis]`` table of a material preset, then ``overrides``."""
        try:
            from napari_aet.core.presets import load_preset
        except ImportError as exc:  # pragma: no cover - presets module ships with the package
            raise ValueError(f"material presets are not available ({exc})") from exc
        preset = load_preset(name)
        table = dict(preset.get("analysis", {}) if isinstance(preset, dict) else
                     getattr(preset, "analysis", {}) or {})
        unknown = set(table) - set(cls.names())
        if unknown:
            raise ValueError(f"preset {name!r}: unknown analysis key(s) {', '.join(sorted(unknown))}")
        return cls().updated(**table).updated(**overrides)


@dataclass
class AnalysisResult:
    """Everything :func:`analyse_all` measured.

    ``table`` has one array per quantity with one row per input atom (input order); atoms not
    analysed (other species) hold NaN / ''. ``analysed`` indexes the analysed atoms.
    """

    table: dict[str, np.ndarray]
    analysed: np.ndarray
    params: AnalysisParameters
    summary: dict
    pdf: object = None
    voids: object = None
    oxidation: object = None
    profiles: dict = field(default_factory=dict)
    region: object = None
    phase_volume: np.ndarray | None = None
    timings_s: dict = field(default_factory=dict)


def analysis_steps(analyses=ANALYSES, with_volume: bool = False) -> list[str]:
    """The steps :func:`analyse_all` will run (dependencies added), in order; the generator
    yields once for 'setup' and once per step."""
    unknown = set(analyses) - set(ANALYSES)
    if unknown:
        raise ValueError(f"unknown analysis {', '.join(sorted(unknown))}; choose from {ANALYSES}")
    todo = set(analyses)
    for a in list(todo):
        todo.update(_NEEDS.get(a, ()))
    steps = [a for a in ANALYSES if a in todo]
    if with_volume and "phases" in todo:
        steps.append("phase_volume")
    return steps


def _check_atoms(atoms: Atoms, params: AnalysisParameters) -> np.ndarray:
    if params.elements:
        wanted = {str(e) for e in params.elements}
        missing = wanted - set(np.unique(atoms.elements).tolist())
        if missing == wanted:
            raise ValueError(f"no atoms of element(s) {', '.join(sorted(wanted))} in the model "
                             f"(it has {', '.join(sorted(atoms.counts()))})")
        return np.flatnonzero(np.isin(atoms.elements, list(wanted)))
    return np.arange(len(atoms))


def check_input(atoms: Atoms, params: AnalysisParameters | None = None) -> np.ndarray:
    """Validate the atoms to be analysed (species, count, NaN, duplicates); returns their indices."""
    from napari_aet.core.analysis._geometry import validate_positions

    sel = _check_atoms(atoms, params or AnalysisParameters())
    validate_positions(atoms.positions[sel])
    return sel


def analyse_all(atoms: Atoms, params: AnalysisParameters | None = None,
                analyses=ANALYSES, volume_shape=None, pixel_size_A: float | None = None
                ) -> Generator[dict, None, AnalysisResult]:
    """Run the chosen structure analyses on an atom model.

    Parameters
    ----------
    atoms : the atom model (positions (z, y, x) in Angstrom).
    params : thresholds (defaults: Zr/ZrO2 values of METHODS.md).
    analyses : any of :data:`ANALYSES`; 'phases' adds 'order' and 'voronoi'.
    volume_shape, pixel_size_A : when given (and 'phases' is run), a phase Labels volume of
        that shape goes to ``result.phase_volume``; voxel ``i`` sits at ``i * pixel_size_A``.

    Yields
    ------
    dict with ``iteration`` (1-based step count), ``total``, ``step`` and ``message``.

    Returns
    -------
    AnalysisResult
    """
    from napari_aet.core.analysis import oxidation as ox
    from napari_aet.core.analysis import pdf as pdf_mod
    from napari_aet.core.analysis import phases as ph
    from napari_aet.core.analysis._geometry import particle_region, validate_positions
    from napari_aet.core.analysis.order import bond_orientational_order, neighbor_pairs
    from napari_aet.core.analysis.structure import structure_types
    from napari_aet.core.analysis.voids import find_voids
    from napari_aet.core.analysis.voronoi import voronoi_cells

    params = params or AnalysisParameters()
    steps = analysis_steps(analyses, volume_shape is not None)
    todo = set(steps)
    total = len(steps) + 1
    sel = _check_atoms(atoms, params)
    positions = validate_positions(atoms.positions[sel])
    n_all, n = len(atoms), len(positions)
    table: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    summary: dict = {"n_atoms": n_all, "n_analysed": n,
                     "elements_analysed": sorted(set(atoms.elements[sel].tolist()))}

    def column(values, fill=np.nan, dtype=float):
        full = np.full(n_all, fill, dtype=dtype)
        full[sel] = values
        return full

    step = 0
    result = AnalysisResult(table, sel, params, summary, timings_s=timings)

    def progress(name, message):
        nonlocal step
        step += 1
        return {"iteration": step, "total": total, "step": name, "message": message}

    yield progress("setup", f"{n} atoms")
    t0 = time.perf_counter()
    first_shell = params.first_shell_A
    pdf = None
    if "pdf" in todo or first_shell is None:
        pdf = pdf_mod.pair_distribution(positions, params.pdf_r_max_A, params.pdf_bin_A,
                                        params.pdf_smoothing_A,
                                        alpha_A=params.alpha_A or first_shell)
        result.pdf = pdf
        summary["pdf_peaks_A"] = [round(float(p), 3) for p in pdf.peaks_A[:6]]
        summary["pdf_first_valley_A"] = round(pdf.first_valley_A, 3)
        if first_shell is None:
            if not np.isfinite(pdf.first_valley_A):
                raise ValueError("no first valley in the PDF; give the first-shell cutoff")
            first_shell = pdf.first_valley_A
    timings["pdf"] = time.perf_counter() - t0
    summary["first_shell_A"] = round(float(first_shell), 3)
    if "pdf" in steps:
        yield progress("pdf", f"first valley {first_shell:.2f} A")
    t0 = time.perf_counter()
    alpha = params.alpha_A or first_shell
    region = particle_region(positions, alpha)
    result.region = region
    summary["particle_volume_A3"] = round(region.volume_A3, 1)
    surface = region.surface_atoms()
    table["surface"] = column(surface, False, bool)
    timings["region"] = time.perf_counter() - t0
    pairs = neighbor_pairs(positions, first_shell)
    table["coordination"] = column(np.bincount(pairs.ravel(), minlength=n), -1, int)

    boo = rho = None
    if "order" in todo:
        t0 = time.perf_counter()
        o = bond_orientational_order(positions, first_shell, params.boo_threshold, pairs=pairs)
        boo = o["boo"]
        table["q4"], table["q6"], table["boo"] = column(o["q4"]), column(o["q6"]), column(boo)
        table["ordered"] = column(o["ordered"], False, bool)
        summary["boo_mean"] = round(float(np.nanmean(boo)), 4)
        summary["ordered_fraction"] = round(float(np.mean(o["ordered"])), 4)
        timings["order"] = time.perf_counter() - t0
        yield progress("order", f"ordered fraction {summary['ordered_fraction']:.2f}")
    if "structure" in todo:
        t0 = time.perf_counter()
        st = structure_types(positions)
        table["structure"] = column(st, "", "<U11")
        kinds, counts = np.unique(st, return_counts=True)
        summary["structure_fractions"] = {str(k): round(c / n, 4) for k, c in zip(kinds, counts)}
        timings["structure"] = time.perf_counter() - t0
        yield progress("structure", ", ".join(f"{k} {c}" for k, c in zip(kinds, counts)))
    if "voronoi" in todo:
        t0 = time.perf_counter()
        vor = voronoi_cells(positions, first_shell, region, params.min_face_fraction)
        rho = vor.rho_n
        table["voronoi_volume_A3"] = column(vor.volume_A3)
        table["rho_n"] = column(rho)
        table["n_voronoi_bonds"] = column(np.bincount(vor.bonds.ravel(), minlength=n), -1, int)
        interior = ~surface & np.isfinite(rho)
        summary["rho_n_interior_median"] = float(np.median(rho[interior])) if interior.any() else None
        summary["voronoi_open_cells"] = int(np.isnan(vor.volume_A3).sum())
        timings["voronoi"] = time.perf_counter() - t0
        yield progress("voronoi", "Voronoi cells")
    if "voids" in todo:
        t0 = time.perf_counter()
        vr = find_voids(positions, params.r_void_A, region=region,
                        vacancy_A3=(params.vacancy_min_A3, params.vacancy_max_A3),
                        nanopore_max_A3=params.nanopore_max_A3)
        for v in vr.voids:  # report in the caller's indexing
            v.lining = sel[v.lining]
        result.voids = vr
        summary["voids"] = {k: vr.count(k) for k in ("vacancy", "nano-pore", "pore", "interstitial")}
        summary["void_volume_A3"] = round(vr.total_volume_A3(), 1)
        summary["porosity"] = round(vr.porosity, 5)
        summary["surface_pockets"] = vr.n_surface_pockets
        timings["voids"] = time.perf_counter() - t0
        yield progress("voids", ", ".join(f"{v} {k}" for k, v in summary["voids"].items()))
    if "oxidation" in todo:
        t0 = time.perf_counter()
        oxr = ox.degree_of_oxidation(positions, params.max_distortion, params.oxygen_volume_A3,
                                     region=region)
        result.oxidation = oxr
        table["oxidation"] = column(oxr.degree)
        table["n_oxygen_sites"] = column(oxr.n_oxygen, -1, int)
        summary["o_per_metal"] = round(oxr.o_per_metal, 4)
        timings["oxidation"] = time.perf_counter() - t0
        yield progress("oxidation", f"O/metal {oxr.o_per_metal:.2f}")
    if "phases" in todo:
        t0 = time.perf_counter()
        phase = ph.assign_phases(boo, rho, pairs, params.boo_threshold, params.rho_metal_min)
        table["phase"] = column(phase, "", "<U17")
        dist = ph.core_distance(positions, phase, pairs)
        table["core_distance_A"] = column(dist)
        shell = np.where(np.isfinite(dist),
                         np.where(dist <= 0, 0, 1 + np.floor(np.nan_to_num(dist) / params.shell_width_A)),
                         -1).astype(int)
        table["shell"] = column(shell, -1, int)
        kinds, counts = np.unique(phase, return_counts=True)
        summary["phase_counts"] = {str(k): int(c) for k, c in zip(kinds, counts)}
        values = {"rho_n": rho, "boo": boo}
        if result.oxidation is not None:
            values["oxidation"] = result.oxidation.degree
        void_d = None
        if result.voids is not None:
            from scipy.spatial import cKDTree

            vac = np.array([v.center for v in result.voids.voids if v.kind == "vacancy"]).reshape(-1, 3)
            nearest = cKDTree(positions).query(vac)[1] if len(vac) else np.zeros(0, int)
            void_d = dist[nearest]  # a vacancy sits at the core distance of its nearest atom
        for name in ph.PHASES:
            values[f"fraction_{name}"] = (phase == name).astype(float)
        result.profiles = ph.profiles(dist, values, params.profile_bin_A, void_d)
        timings["phases"] = time.perf_counter() - t0
        yield progress("phases", ", ".join(f"{k} {c}" for k, c in zip(kinds, counts)))
        if volume_shape is not None:
            if not pixel_size_A:
                raise ValueError("a phase volume needs the volume's pixel size in Angstrom")
            t0 = time.perf_counter()
            result.phase_volume = ph.phase_label_volume(positions, phase, tuple(volume_shape),
                                                        pixel_size_A, 0.5 * first_shell, region)
            timings["phase_volume"] = time.perf_counter() - t0
            yield progress("phase_volume", "phase labels volume")
    summary["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    return result


def run_analysis(atoms: Atoms, params: AnalysisParameters | None = None, analyses=ANALYSES,
                 volume_shape=None, pixel_size_A=None, progress=None) -> AnalysisResult:
    """Run :func:`analyse_all` to the end; ``progress(dict)`` is called at each step."""
    return run_to_completion(analyse_all(atoms, params, analyses, volume_shape, pixel_size_A),
                             progress)
