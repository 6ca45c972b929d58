"""Tables, figures and report content of a structure analysis (shared by the widget, the
command and the pipeline).

Figures are plain matplotlib ``Figure`` objects (no pyplot, no Qt), so the widget can dock
them in a canvas and the command can save them. Nothing here writes files: the report's text
(:func:`report_files`) and figures are written by :mod:`napari_aet.io.analysis_report`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from napari_aet.core.analysis.phases import PHASE_COLORS, PHASES
from napari_aet.core.analysis.voids import VOID_CLASSES, VOID_COLORS
from napari_aet.core.atoms import Atoms

#: Per-atom columns first in the csv (after x, y, z, element), when present.
MAIN_COLUMNS = ("q4", "q6", "boo", "structure", "rho_n", "oxidation", "phase")


def atoms_table(atoms: Atoms, result) -> dict[str, np.ndarray]:
    """Per-atom table in input order: x, y, z (Angstrom), element, then every quantity."""
    table = {"x": atoms.positions[:, 2], "y": atoms.positions[:, 1], "z": atoms.positions[:, 0],
             "element": atoms.elements.astype(str)}
    names = [c for c in MAIN_COLUMNS if c in result.table]
    names += [c for c in result.table if c not in names]
    for name in names:
        table[name] = result.table[name]
    return table


def _format(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (float, np.floating)):
        return "" if not np.isfinite(value) else f"{value:.6g}"
    return str(value)


def csv_text(table: dict[str, np.ndarray]) -> str:
    """Columns as csv text: a header line, then one line per row (NaN as empty fields)."""
    names = list(table)
    n = len(next(iter(table.values()))) if table else 0
    cols = [np.asarray(table[k]) for k in names]
    lines = [",".join(names)] + [",".join(_format(c[i]) for c in cols) for i in range(n)]
    return "\n".join(lines) + "\n"


def json_ready(value):
    """``value`` with numpy arrays and scalars as plain Python, non-finite floats as None and
    paths as strings, ready for ``json.dumps`` (summary.json, run.json)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_ready(v) for v in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


def summary_dict(result) -> dict:
    """JSON-friendly summary with the parameters used."""
    from dataclasses import asdict

    out = dict(result.summary)
    out["parameters"] = asdict(result.params)
    return json_ready(out)


# --- figures ---------------------------------------------------------------------------------

def _figure(size=(4.8, 3.4)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def figure_pdf(result):
    """g(r) with its peaks and the first-valley (first-shell) marker."""
    fig, ax = _figure()
    pdf = result.pdf
    if pdf is None:
        ax.text(0.5, 0.5, "PDF not computed", ha="center", transform=ax.transAxes)
        return fig
    ax.plot(pdf.r_A, pdf.g, color="#1f77b4", lw=1.2)
    ax.axhline(1.0, color="0.6", lw=0.6, ls=":")
    cut = result.summary.get("first_shell_A")
    if pdf.first_valley_A == pdf.first_valley_A:
        ax.axvline(pdf.first_valley_A, color="#d62728", ls="--", lw=1,
                   label=f"first valley {pdf.first_valley_A:.2f} A")
    if cut is not None and abs(cut - pdf.first_valley_A) > 0.02:
        ax.axvline(cut, color="#ff7f0e", ls="-.", lw=1, label=f"first-shell cutoff {cut:.2f} A")
    for p in pdf.peaks_A[:4]:
        ax.annotate(f"{p:.2f}", (p, np.interp(p, pdf.r_A, pdf.g)), textcoords="offset points",
                    xytext=(0, 4), ha="center", fontsize=7)
    ax.set_xlabel("r (Angstrom)")
    ax.set_ylabel("g(r)")
    ax.set_title("Pair distribution (finite-particle corrected)", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return fig


def figure_q4q6(result):
    """Averaged local Q4 against Q6 per atom, coloured by phase, with reference points."""
    from napari_aet.core.analysis.order import Q4_FCC, Q6_FCC, REFERENCE_Q

    fig, ax = _figure()
    t = result.table
    if "q4" not in t:
        ax.text(0.5, 0.5, "order not computed", ha="center", transform=ax.transAxes)
        return fig
    sel = result.analysed
    phase = t.get("phase", np.full(len(t["q4"]), ""))[sel]
    for name in [""] + list(PHASES)[::-1]:  # metal (smallest) drawn last
        m = phase == name
        if m.any():
            ax.scatter(t["q4"][sel][m], t["q6"][sel][m], s=3, alpha=0.5, lw=0,
                       color=PHASE_COLORS[name], label=name.replace("_", " ") or "atoms")
    for name, (q4, q6) in REFERENCE_Q.items():
        ax.plot(q4, q6, "k+", ms=7)
        ax.annotate(name[:3], (q4, q6), textcoords="offset points", xytext=(3, 3), fontsize=7)
    theta = np.linspace(0, np.pi / 2, 100)
    r = result.params.boo_threshold * np.hypot(Q4_FCC, Q6_FCC)
    ax.plot(r * np.cos(theta), r * np.sin(theta), "k--", lw=0.8,
            label=f"BOO = {result.params.boo_threshold}")
    ax.set_xlim(0, 0.3)
    ax.set_ylim(0, 0.7)
    ax.set_xlabel("averaged Q4")
    ax.set_ylabel("averaged Q6")
    ax.set_title("Bond-orientational order", fontsize=9)
    ax.legend(fontsize=7, frameon=False, markerscale=3, loc="lower right")
    return fig


def figure_voids(result):
    """Histogram of void volumes (log scale) with the class bands."""
    fig, ax = _figure()
    vr = result.voids
    p = result.params
    bands = {"interstitial": (1.0, p.vacancy_min_A3), "vacancy": (p.vacancy_min_A3, p.vacancy_max_A3),
             "nano-pore": (p.vacancy_max_A3, p.nanopore_max_A3), "pore": (p.nanopore_max_A3, 1e6)}
    for name, (lo, hi) in bands.items():
        ax.axvspan(lo, hi, color=VOID_COLORS[name], alpha=0.15, lw=0)
    vols = np.array([v.volume_A3 for v in vr.voids]) if vr is not None else np.zeros(0)
    if len(vols):
        hi = max(vols.max() * 1.5, p.nanopore_max_A3 * 1.2)
        bins = np.logspace(0, np.log10(hi), 40)
        ax.hist(vols, bins=bins, color="0.25")
        ax.set_xlim(1, hi)
    ax.set_xscale("log")
    counts = ", ".join(f"{k} {vr.count(k)}" for k in VOID_CLASSES[1:]) if vr is not None else ""
    ax.set_title(f"Void volumes ({counts})", fontsize=9)
    ax.set_xlabel("void volume (A^3)")
    ax.set_ylabel("voids")
    return fig


def figure_profiles(result):
    """rho_N, degree of oxidation and vacancy density against distance from the core surface."""
    fig, ax = _figure((4.8, 3.6))
    prof = result.profiles or {}
    if len(prof.get("distance_A", [])) == 0:
        ax.text(0.5, 0.5, "no metal core found: no profiles", ha="center", transform=ax.transAxes)
        return fig
    d = prof["distance_A"]
    ax.plot(d, prof["rho_n"] * 1e2, "o-", ms=3, color="#1f77b4", label="rho_N (1e-2 A^-3)")
    if "oxidation" in prof:
        ax.plot(d, prof["oxidation"] * 10, "s-", ms=3, color="#d62728", label="oxidation x 10")
    if "vacancies_per_1000_atoms" in prof:
        ax.bar(d, prof["vacancies_per_1000_atoms"], width=0.8 * (d[1] - d[0]) if len(d) > 1 else 1,
               color="#ffd60a", alpha=0.6, label="vacancies / 1000 atoms")
    ax.axvline(0, color="0.4", lw=0.8, ls=":")
    ax.set_xlabel("distance from core surface (Angstrom)")
    ax.set_title("Profiles from the metal core", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return fig


FIGURES = {"pdf": figure_pdf, "q4_q6": figure_q4q6, "void_volumes": figure_voids,
           "profiles": figure_profiles}


def report_files(atoms: Atoms, result) -> dict[str, str]:
    """The report's text files by name: ``atoms.csv`` (:func:`atoms_table`), ``voids.csv``
    and ``profiles.csv`` (when computed) and ``summary.json`` (:func:`summary_dict`)."""
    files = {"atoms.csv": csv_text(atoms_table(atoms, result))}
    if result.voids is not None:
        files["voids.csv"] = csv_text(result.voids.table())
    if result.profiles:
        files["profiles.csv"] = csv_text(dict(result.profiles))
    files["summary.json"] = json.dumps(summary_dict(result), indent=2)
    return files
