"""Structure analysis of atom models: PDF, bond-orientational order, Voronoi density, voids,
oxidation, phases.

:func:`analyse_all` runs the chosen analyses in order as a generator (``Progress`` records, then the
:class:`AnalysisResult` as its return value), so the widget, the command line and scripts
share one code path. Each analysis is a function registered in :mod:`.registry`;
:data:`ANALYSES` and the steps derive from it.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from napari_aet.core.analysis.registry import REGISTRY, AnalysisRun
from napari_aet.core.atoms import Atoms
from napari_aet.core.jobs import run_to_completion
from napari_aet.core.parameters import parameter
from napari_aet.core.progress import Progress

#: The analyses a caller can choose, in run order (from :data:`REGISTRY`).
ANALYSES = tuple(name for name, a in REGISTRY.items() if not a.with_volume)
#: Zr-Zr nearest-neighbour distance (A) of cubic ZrO2 (a = 5.09 A): the material of the
#: built-in void, oxidation and metal-density thresholds.
ZRO2_NEAREST_A = 5.09 / 2**0.5


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

    def scaled_to_nearest(self, nearest_A: float) -> AnalysisParameters:
        """The void, oxygen-site and metal-density thresholds scaled from cubic ZrO2's to a
        material with nearest-neighbour distance ``nearest_A`` (Angstrom): ``r_void_A`` x s,
        the void and oxygen volume bands x s^3, ``rho_metal_min`` / s^3, s = ``nearest_A`` /
        :data:`ZRO2_NEAREST_A` (the rule of the Pt and PdPt presets)."""
        if not nearest_A > 0:
            raise ValueError(f"the nearest-neighbour distance must be positive; got {nearest_A}")
        s = float(nearest_A) / ZRO2_NEAREST_A
        return self.updated(r_void_A=self.r_void_A * s,
                            vacancy_min_A3=self.vacancy_min_A3 * s**3,
                            vacancy_max_A3=self.vacancy_max_A3 * s**3,
                            nanopore_max_A3=self.nanopore_max_A3 * s**3,
                            oxygen_volume_A3=self.oxygen_volume_A3 * s**3,
                            rho_metal_min=self.rho_metal_min / s**3)


def preset_thresholds(name: str) -> tuple[AnalysisParameters, str, bool]:
    """The thresholds of material preset ``name``, where they come from (a phrase) and
    whether they are still to be scaled to the atoms' PDF.

    A preset with an ``[analysis]`` table gives its values; one without but with a top-level
    ``nearest_neighbour_A`` gives ZrO2's scaled to that distance
    (:meth:`AnalysisParameters.scaled_to_nearest`); one with neither (generic) gives ZrO2's,
    to be scaled to the atoms' PDF with :func:`thresholds_from_pdf` (True).
    """
    from napari_aet.core.presets import load_preset

    preset = load_preset(name)
    if "analysis" in preset:
        return AnalysisParameters.from_preset(name), f"{preset['name']} [analysis] table", False
    nearest = preset.get("nearest_neighbour_A")
    if nearest:
        return (AnalysisParameters().scaled_to_nearest(nearest),
                f"ZrO2's scaled to {preset['name']}'s nearest neighbour {nearest:.2f} A "
                f"(no [analysis] table)", False)
    return AnalysisParameters(), (f"ZrO2's scaled to the first PDF peak of the atoms "
                                  f"({preset['name']} has no [analysis] table)"), True


def preset_analyses(name: str) -> tuple[str, ...]:
    """The analyses that suit material preset ``name``: its top-level ``analyses`` list
    (in run order), else every analysis (:data:`ANALYSES`).

    Bond-orientational order (normalised to fcc), metal/oxide phases and oxidation describe
    close-packed metals and their oxides; a covalent network such as amorphous Si reads as
    "ordered", so its preset leaves them out.
    """
    from napari_aet.core.presets import load_preset

    preset = load_preset(name)
    chosen = preset.get("analyses")
    if chosen is None:
        return ANALYSES
    unknown = sorted(set(chosen) - set(ANALYSES))
    if unknown:
        raise ValueError(f"preset {preset['name']!r}: unknown analyses {unknown}; known: "
                         f"{', '.join(ANALYSES)}")
    return tuple(a for a in ANALYSES if a in chosen)


def _atoms_pdf(atoms: Atoms, params: AnalysisParameters):
    """The PDF of the analysed atoms with ``params``' PDF settings (as the 'pdf' analysis)."""
    from napari_aet.core.analysis.pdf import pair_distribution

    positions = atoms.positions[check_input(atoms, params)]
    return pair_distribution(positions, params.pdf_r_max_A, params.pdf_bin_A,
                             params.pdf_smoothing_A, alpha_A=params.alpha_A or params.first_shell_A)


def thresholds_from_pdf(atoms: Atoms, params: AnalysisParameters, pdf=None
                        ) -> tuple[AnalysisParameters, float]:
    """``params`` scaled (:meth:`AnalysisParameters.scaled_to_nearest`) to the first peak of
    the PDF of the analysed atoms (``pdf``, computed when not given); returns them and that
    peak (Angstrom)."""
    pdf = _atoms_pdf(atoms, params) if pdf is None else pdf
    if len(pdf.peaks_A) == 0:
        raise ValueError("no peak in the PDF of the atoms: choose a material preset")
    nearest = float(pdf.peaks_A[0])
    return params.scaled_to_nearest(nearest), nearest


def _resolve_preset(atoms: Atoms, preset: str | None, overrides: dict | None):
    """``(params, source, pdf)``: :func:`analysis_parameters` and the PDF it computed (None
    unless the thresholds were scaled to it)."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if preset is None:
        return AnalysisParameters().updated(**overrides), "built-in (ZrO2's)", None
    params, source, scaled_to_pdf = preset_thresholds(preset)
    params = params.updated(**overrides)
    pdf = None
    if scaled_to_pdf:
        pdf = _atoms_pdf(atoms, params)
        params, nearest = thresholds_from_pdf(atoms, params, pdf)
        params = params.updated(**overrides)
        source = f"{source}: {nearest:.2f} A"
    return params, source, pdf


def analysis_parameters(atoms: Atoms, preset: str | None, overrides: dict | None = None
                        ) -> tuple[AnalysisParameters, str]:
    """The thresholds of material ``preset`` for these atoms, then ``overrides`` (None values
    ignored), and where they come from (a phrase for the status line and the run record).

    The one resolution every front-end uses: a preset's ``[analysis]`` table; else ZrO2's
    scaled to the preset's ``nearest_neighbour_A``; else (generic) to the atoms' first PDF
    peak (:func:`preset_thresholds`, :func:`thresholds_from_pdf`). No preset (None): the
    built-in defaults (ZrO2's).
    """
    params, source, _ = _resolve_preset(atoms, preset, overrides)
    return params, source


def analyse_with_preset(atoms: Atoms, preset: str | None, overrides: dict | None = None,
                        analyses=ANALYSES, volume_shape=None, pixel_size_A=None
                        ) -> Generator[Progress, None, AnalysisResult]:
    """:func:`analyse_all` with :func:`analysis_parameters` of ``preset``; the result's
    ``summary["thresholds_source"]`` says where the thresholds came from. A PDF computed to
    scale the thresholds is the one the analysis reports (not computed twice)."""
    params, source, pdf = _resolve_preset(atoms, preset, overrides)
    result = yield from analyse_all(atoms, params, analyses, volume_shape, pixel_size_A,
                                    pdf=pdf)
    result.summary["thresholds_source"] = source
    return result


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
        todo.update(REGISTRY[a].needs)
    return [name for name, a in REGISTRY.items()
            if name in todo or (a.with_volume and with_volume and set(a.needs) <= todo)]


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
                analyses=ANALYSES, volume_shape=None, pixel_size_A: float | None = None,
                pdf=None) -> Generator[Progress, None, AnalysisResult]:
    """Run the chosen structure analyses on an atom model.

    Parameters
    ----------
    atoms : the atom model (positions (z, y, x) in Angstrom).
    params : thresholds (defaults: Zr/ZrO2 values of METHODS.md).
    analyses : any of :data:`ANALYSES`; 'phases' adds 'order' and 'voronoi'.
    volume_shape, pixel_size_A : when given (and 'phases' is run), a phase Labels volume of
        that shape goes to ``result.phase_volume``; voxel ``i`` sits at ``i * pixel_size_A``.
    pdf : a PDF of the same atoms already computed with ``params``' PDF settings, used
        instead of computing it again.

    Yields
    ------
    Progress ``(step="analyse", done=1-based step count, total, stage=analysis, message)``.

    Returns
    -------
    AnalysisResult

    Notes
    -----
    The PDF runs first, also when not asked for but the first-shell cutoff is (its first
    valley); the particle region and first-shell neighbour pairs every later analysis uses
    follow; then each step of :func:`analysis_steps` runs its :data:`REGISTRY` entry.
    """
    from napari_aet.core.analysis._geometry import validate_positions

    params = params or AnalysisParameters()
    steps = analysis_steps(analyses, volume_shape is not None)
    total = len(steps) + 1
    sel = _check_atoms(atoms, params)
    positions = validate_positions(atoms.positions[sel])
    n_all, n = len(atoms), len(positions)
    summary = {"n_atoms": n_all, "n_analysed": n,
               "elements_analysed": sorted(set(atoms.elements[sel].tolist()))}
    result = AnalysisResult({}, sel, params, summary)
    run = AnalysisRun(result, sel, positions, n_all, volume_shape, pixel_size_A, pdf=pdf)
    step = 0

    def progress(name, message):
        nonlocal step
        step += 1
        return Progress("analyse", step, total, stage=name, message=message)

    yield progress("setup", f"{n} atoms")
    t0 = time.perf_counter()
    message = None
    if "pdf" in steps or params.first_shell_A is None:
        message = REGISTRY["pdf"].run(run)
    run.timings_s["pdf"] = time.perf_counter() - t0
    run.summary["first_shell_A"] = round(float(run.first_shell_A), 3)
    if "pdf" in steps:
        yield progress("pdf", message)
    run.neighbourhood()
    for name in steps:
        if name == "pdf":
            continue
        t0 = time.perf_counter()
        message = REGISTRY[name].run(run)
        run.timings_s[name] = time.perf_counter() - t0
        yield progress(name, message)
    run.summary["timings_s"] = {k: round(v, 3) for k, v in run.timings_s.items()}
    return result


def run_analysis(atoms: Atoms, params: AnalysisParameters | None = None, analyses=ANALYSES,
                 volume_shape=None, pixel_size_A=None, progress=None) -> AnalysisResult:
    """Run :func:`analyse_all` to the end; ``progress(Progress)`` is called at each step."""
    return run_to_completion(analyse_all(atoms, params, analyses, volume_shape, pixel_size_A),
                             progress)
